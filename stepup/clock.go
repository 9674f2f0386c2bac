package stepup

import (
	"sync/atomic"
	"time"
)

// WallClock tells the time for every request at the cost of one read of
// the monotonic clock. time.Now reads the wall clock and the monotonic one;
// on virtual machines (kvm-clock) the wall-clock read is the dearer, and
// every request needs the time (for its session's freshness, and for the
// duration of the decision). WallClock reads the wall clock once a second
// and adds the monotonic time elapsed since, so a time it gives differs
// from time.Now by what NTP slews in a second (well under a millisecond),
// and a step of the wall clock (NTP, a VM restored from a snapshot) shows
// within a second. Its times carry a monotonic reading, as time.Now's do.
type WallClock struct {
	base atomic.Pointer[time.Time]
}

// wallResync is how long a wall-clock reading is extended on the
// monotonic clock before the wall clock is read again.
const wallResync = time.Second

// Now returns the current time.
func (c *WallClock) Now() time.Time {
	if b := c.base.Load(); b != nil {
		if d := time.Since(*b); d >= 0 && d < wallResync {
			return b.Add(d)
		}
	}
	t := time.Now()
	c.base.Store(&t)
	return t
}
