package stepup

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
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

// Concurrent verifications allowed at once, per user and tier and per
// client: every attempt is counted before it is verified, so these bound
// the work (a password hash costs tens of milliseconds) rather than the
// number of guesses.
const (
	MaxConcurrentPerUser   = 2
	MaxConcurrentPerClient = 4
)

// Errors of Reserve.
var (
	// ErrRateLimited: the user or the client has used up its attempts.
	ErrRateLimited = errors.New("too many failed attempts")
	// ErrBusy: too many attempts of this user or client are being verified
	// right now.
	ErrBusy = errors.New("too many attempts at once")
)

// Limiter applies Limits using counters in the store, so they hold across
// instances that share a store. An attempt is counted before it is
// verified (Reserve) and settled by its result, so that parallel requests
// cannot all slip under a limit that only failures already verified count
// against.
type Limiter struct {
	limits Limits
	store  Store

	mu       sync.Mutex
	inflight map[string]int // verifications under way, by user and client key
}

// NewLimiter returns a limiter.
func NewLimiter(l Limits, st Store) *Limiter {
	l.defaults()
	return &Limiter{limits: l, store: st, inflight: map[string]int{}}
}

func userKey(tier, user string) string { return keyLimit + "u:" + tier + ":" + user }

// clientKey counts an IPv4 client by its address and an IPv6 client by its
// /64: one host is routinely given a whole /64, so that counting addresses
// would give it billions of budgets.
func clientKey(ip string) string { return keyLimit + "c:" + clientPrefix(ip) }

func clientPrefix(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip // IPv4 (or not an address at all): as it is
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if addr.Is4In6() {
		return addr.Unmap().String()
	}
	p, err := addr.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

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
// client are currently refused. An empty user checks the client alone. It
// only reads: an attempt to verify must Reserve instead.
func (l *Limiter) Blocked(ctx context.Context, tier, user, clientIP string) bool {
	if l.count(ctx, clientKey(clientIP)) >= l.limits.PerClient {
		return true
	}
	return user != "" && l.count(ctx, userKey(tier, user)) >= l.limits.PerUser
}

// Reservation is one attempt counted before its verification.
type Reservation struct {
	l                *Limiter
	tier, user, ip   string
	countUser        bool
	userSlot, ipSlot string
	settled          bool
}

// Reserve counts an attempt at scope by user from clientIP before it is
// verified, and refuses it (ErrRateLimited) when that goes over a limit, or
// (ErrBusy) when too many of the user's or the client's attempts are being
// verified at this moment. countUser false counts the client only (for
// methods that lock users out themselves); the user's concurrency is
// bounded all the same. A store failure refuses the attempt. The
// reservation must be settled with the attempt's result.
func (l *Limiter) Reserve(ctx context.Context, tier, user, clientIP string, countUser bool) (*Reservation, error) {
	rs := &Reservation{l: l, tier: tier, user: user, ip: clientIP, countUser: countUser && user != ""}
	if !l.enter(userKey(tier, user), user != "", clientKey(clientIP)) {
		return nil, ErrBusy
	}
	rs.ipSlot = clientKey(clientIP)
	if user != "" {
		rs.userSlot = userKey(tier, user)
	}
	n, err := l.store.Incr(ctx, clientKey(clientIP), l.limits.Window)
	if err != nil || n > int64(l.limits.PerClient) {
		l.leave(rs.userSlot, rs.ipSlot)
		return nil, ErrRateLimited
	}
	if rs.countUser {
		n, err := l.store.Incr(ctx, userKey(tier, user), l.limits.Window)
		if err != nil || n > int64(l.limits.PerUser) {
			l.leave(rs.userSlot, rs.ipSlot)
			return nil, ErrRateLimited
		}
	}
	return rs, nil
}

// Settle records the attempt's result: a failure stays counted; a success
// clears the user's failures and gives the client its attempt back; an
// attempt that could not be decided (a back end down, another round
// needed) is not counted at all. Settling twice does nothing.
func (rs *Reservation) Settle(ctx context.Context, result Result) {
	if rs == nil || rs.settled {
		return
	}
	rs.settled = true
	l := rs.l
	defer l.leave(rs.userSlot, rs.ipSlot)
	if result == Rejected {
		return
	}
	l.refund(ctx, clientKey(rs.ip))
	if !rs.countUser {
		return
	}
	if result == Accepted {
		_ = l.store.Delete(ctx, userKey(rs.tier, rs.user))
		return
	}
	l.refund(ctx, userKey(rs.tier, rs.user))
}

// refund gives one counted attempt back. A window that ended meanwhile has
// no counter left to take it from: the one a decrement would create is
// removed rather than left below zero.
func (l *Limiter) refund(ctx context.Context, key string) {
	if n, err := l.store.Add(ctx, key, -1, l.limits.Window); err == nil && n < 0 {
		_ = l.store.Delete(ctx, key)
	}
}

// enter takes a verification slot for the user (when withUser) and the
// client, or none when either is at its bound.
func (l *Limiter) enter(user string, withUser bool, client string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (withUser && l.inflight[user] >= MaxConcurrentPerUser) || l.inflight[client] >= MaxConcurrentPerClient {
		return false
	}
	if withUser {
		l.inflight[user]++
	}
	l.inflight[client]++
	return true
}

func (l *Limiter) leave(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if k == "" {
			continue
		}
		if l.inflight[k] <= 1 {
			delete(l.inflight, k)
		} else {
			l.inflight[k]--
		}
	}
}

// Spend counts one unit of the client's budget (such as requests kept for
// replay) and reports whether it was within the budget. Counting first
// means parallel requests cannot all pass a check made before any counted.
func (l *Limiter) Spend(ctx context.Context, clientIP string) bool {
	n, err := l.store.Incr(ctx, clientKey(clientIP), l.limits.Window)
	return err == nil && n <= int64(l.limits.PerClient)
}

// Window is the counting window (the longest a block lasts).
func (l *Limiter) Window() time.Duration { return l.limits.Window }
