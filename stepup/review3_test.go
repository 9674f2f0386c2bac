package stepup

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// Review 3: the admin API's engine side (revocation, enrolment links,
// explain) attacked.

// writeFailing is a store whose writes fail while down is set (a Redis
// that answers reads from a replica but refuses writes, a bbolt file gone
// read-only, a network blip between the read and the delete).
type writeFailing struct {
	Store
	down atomic.Bool
}

func (f *writeFailing) Take(ctx context.Context, key string) ([]byte, error) {
	if f.down.Load() {
		return nil, store.ErrUnavailable
	}
	return f.Store.Take(ctx, key)
}

func (f *writeFailing) Delete(ctx context.Context, key string) error {
	if f.down.Load() {
		return store.ErrUnavailable
	}
	return f.Store.Delete(ctx, key)
}

// An administrator's revocation that the store could not carry out must
// not be reported as done: RevokeSession ignores EndOwner's error, so the
// admin API answers 200 {"revoked": [...]} and audits "session_ended"
// while the session goes on passing (a stolen session the operator
// believes ended).
func TestReview3RevocationTheStoreRefusedIsNotReportedAsDone(t *testing.T) {
	c := newClock()
	st := &writeFailing{Store: store.NewMemory(0, c.Now)}
	e := newTestEngineOn(t, c, st, PendingLimits{})
	b := &browser{}
	s := signIn(t, e, b, "bob")
	if got := b.session(t, e, b.request(http.MethodGet, "/")); got == nil || got.User != "bob" {
		t.Fatalf("bob is not signed in: %+v", got)
	}

	st.down.Store(true)
	_, err := e.RevokeSession(context.Background(), s.Owner, "admin:test")
	st.down.Store(false)

	still := b.session(t, e, b.request(http.MethodGet, "/"))
	if err == nil && still != nil {
		t.Fatalf("RevokeSession reported success, yet the session still loads (user %q): a failed revocation must be an error", still.User)
	}
}

// RevokeUser skips every session it could not read or end and answers
// as if it had ended them all.
func TestReview3RevokeUserReportsSessionsItCouldNotEnd(t *testing.T) {
	c := newClock()
	st := &writeFailing{Store: store.NewMemory(0, c.Now)}
	e := newTestEngineOn(t, c, st, PendingLimits{})
	b := &browser{}
	signIn(t, e, b, "bob")

	st.down.Store(true)
	_, err := e.RevokeUser(context.Background(), "bob", "admin:test")
	st.down.Store(false)

	still := b.session(t, e, b.request(http.MethodGet, "/"))
	if err == nil && still != nil {
		t.Fatal("RevokeUser answered without error, yet bob's session still loads")
	}
}
