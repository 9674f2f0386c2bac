package stepup

import (
	"sync"
	"testing"
	"time"
)

func TestWallClockFollowsTimeNow(t *testing.T) {
	var c WallClock
	for i := 0; i < 2000; i++ {
		before := time.Now()
		got := c.Now()
		after := time.Now()
		// Within what NTP may slew in the resync interval of either side.
		const slack = time.Millisecond
		if got.Before(before.Add(-slack)) || got.After(after.Add(slack)) {
			t.Fatalf("WallClock.Now() = %v, outside [%v, %v]", got, before, after)
		}
		if got.Sub(before) < -slack || after.Sub(got) < -slack {
			t.Fatal("monotonic readings disagree")
		}
		if i%500 == 0 {
			time.Sleep(wallResync / 4) // cross a resync now and then
		}
	}
}

func TestWallClockTimesCarryAMonotonicReading(t *testing.T) {
	var c WallClock
	c.Now() // the first call reads the wall clock; the second extends it
	got := c.Now()
	if got == got.Round(0) { // Round(0) strips only the monotonic reading
		t.Fatal("no monotonic reading: time.Since would read the wall clock")
	}
}

func TestWallClockIsSafeForConcurrentUse(t *testing.T) {
	var c WallClock
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := c.Now()
			for i := 0; i < 10000; i++ {
				now := c.Now()
				if now.Before(prev.Add(-time.Millisecond)) {
					t.Errorf("time went back %v", prev.Sub(now))
					return
				}
				prev = now
			}
		}()
	}
	wg.Wait()
}

func TestWallClockReadDoesNotAllocate(t *testing.T) {
	var c WallClock
	c.Now()
	if n := testing.AllocsPerRun(1000, func() { c.Now() }); n != 0 {
		t.Fatalf("Now allocates %v times", n)
	}
}

func BenchmarkWallClock(b *testing.B) {
	var c WallClock
	b.Run("time.Now", func(b *testing.B) {
		for b.Loop() {
			_ = time.Now()
		}
	})
	b.Run("WallClock.Now", func(b *testing.B) {
		for b.Loop() {
			_ = c.Now()
		}
	})
}
