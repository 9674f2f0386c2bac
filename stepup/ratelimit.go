package stepup

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"
)

// Limits bounds guessing: failed attempts are counted per user (and tier)
// and per client IP in fixed windows; once a count reaches its maximum, no
// further attempt is even verified until the window ends.
type Limits struct {
	// PerUser is the number of failures allowed per user and tier per Window.
	PerUser int
	// PerClient is the number of failures allowed per client IP per Window.
	PerClient int
	// Window is the length of the counting window.
	Window time.Duration
}

func (l *Limits) defaults() {
	if l.PerUser <= 0 {
		l.PerUser = 5
	}
	if l.PerClient <= 0 {
		l.PerClient = 20
	}
	if l.Window <= 0 {
		l.Window = 15 * time.Minute
	}
}

// Limiter applies Limits using counters in the store, so they hold across
// instances that share a store.
type Limiter struct {
	limits Limits
	store  Store
}

// NewLimiter returns a limiter.
func NewLimiter(l Limits, st Store) *Limiter {
	l.defaults()
	return &Limiter{limits: l, store: st}
}

func userKey(tier, user string) string { return keyLimit + "u:" + tier + ":" + user }
func clientKey(ip string) string       { return keyLimit + "c:" + ip }

// count reads a counter; a store failure reads as "over any limit", since
// failing closed is the only safe answer.
func (l *Limiter) count(ctx context.Context, key string) int {
	raw, err := l.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return 0
	}
	if err != nil {
		return math.MaxInt
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil {
		return math.MaxInt
	}
	return n
}

// Blocked reports whether attempts for this user (at this tier) or from this
// client are currently refused. An empty user checks the client alone.
func (l *Limiter) Blocked(ctx context.Context, tier, user, clientIP string) bool {
	if l.count(ctx, clientKey(clientIP)) >= l.limits.PerClient {
		return true
	}
	return user != "" && l.count(ctx, userKey(tier, user)) >= l.limits.PerUser
}

// Failed counts a failed attempt.
func (l *Limiter) Failed(ctx context.Context, tier, user, clientIP string) {
	l.Count(ctx, tier, user, clientIP)
}

// Count counts one use against the limits: a failed attempt, or one unit
// of a budget such as requests kept for replay.
func (l *Limiter) Count(ctx context.Context, tier, user, clientIP string) {
	_, _ = l.store.Incr(ctx, clientKey(clientIP), l.limits.Window)
	if user != "" {
		_, _ = l.store.Incr(ctx, userKey(tier, user), l.limits.Window)
	}
}

// Succeeded clears the user's failures at the tier (the client's count
// stays: one success must not unlock guessing at other accounts).
func (l *Limiter) Succeeded(ctx context.Context, tier, user string) {
	_ = l.store.Delete(ctx, userKey(tier, user))
}

// Window is the counting window (the longest a block lasts).
func (l *Limiter) Window() time.Duration { return l.limits.Window }
