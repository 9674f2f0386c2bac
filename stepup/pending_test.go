package stepup

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

func TestPendingLimitsDefaultsOnlyWhatIsUnset(t *testing.T) {
	var zero PendingLimits
	zero.defaults()
	want := PendingLimits{MaxBody: 64 << 10, PerSession: 5, TTL: 10 * time.Minute, PerClient: 50, MaxTotal: 64 << 20}
	if zero != want {
		t.Errorf("defaults %+v, want %+v", zero, want)
	}
	negative := PendingLimits{MaxBody: -1, PerSession: -1, TTL: -1, PerClient: -1, MaxTotal: -1}
	negative.defaults()
	if negative != want {
		t.Errorf("negative limits defaulted to %+v, want %+v", negative, want)
	}
	given := PendingLimits{MaxBody: 1, PerSession: 1, TTL: time.Second, PerClient: 1, MaxTotal: 1}
	kept := given
	kept.defaults()
	if kept != given {
		t.Errorf("configured limits replaced: %+v, want %+v", kept, given)
	}
}

var missingOTP = &Missing{Set: "admin", Tier: "otp"}

func keepRequest(t testing.TB, e *Engine, s *Session, method, target, body string) (*PendingRequest, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return e.Keep(context.Background(), s, r, missingOTP)
}

func TestKeepStoresTheRequestForItsUser(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	alice := &Session{Owner: "owner-a", User: "alice"}
	p, err := e.Keep(ctx, alice, httptest.NewRequest(http.MethodPost, "/admin/x?y=1", strings.NewReader("a=1&b=2")), &Missing{Set: "wire", Tier: "otp", PerRequest: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.PeekPending(ctx, alice, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "alice" || got.Method != "POST" || got.URI != "/admin/x?y=1" || string(got.Body) != "a=1&b=2" ||
		got.Tier != "otp" || got.Set != "wire" || !got.Fresh || !got.Created.Equal(c.Now()) {
		t.Fatalf("kept %+v", got)
	}
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/admin/y", nil),
		{Method: http.MethodGet, URL: mustURL(t, "/admin/z"), Header: http.Header{}},
	} {
		p, err := e.Keep(ctx, alice, r, missingOTP)
		if err != nil || len(p.Body) != 0 {
			t.Fatalf("a bodiless request: %+v %v", p, err)
		}
	}
}

func TestKeepBoundsTheBody(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{MaxBody: 8})
	alice := &Session{Owner: "owner-a", User: "alice"}
	p, err := keepRequest(t, e, alice, http.MethodPost, "/x", "12345678")
	if err != nil || string(p.Body) != "12345678" {
		t.Fatalf("a body of exactly MaxBody: %+v %v", p, err)
	}
	if _, err := keepRequest(t, e, alice, http.MethodPost, "/x", "123456789"); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("a body over MaxBody: %v", err)
	}
	r := httptest.NewRequest(http.MethodPost, "/x", nil)
	r.Body = io.NopCloser(failingReader{})
	if _, err := e.Keep(context.Background(), alice, r, missingOTP); err == nil {
		t.Fatal("a body that fails to read was kept")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// All clients together keep at most MaxTotal body bytes per window; a
// request without a body is not refused for it.
func TestKeepCapsTheBytesKeptByEveryone(t *testing.T) {
	c := newClock()
	e, st := newTestEngine(t, c, PendingLimits{MaxTotal: 10, TTL: 10 * time.Minute})
	alice := &Session{Owner: "owner-a", User: "alice"}
	bob := &Session{Owner: "owner-b", User: "bob"}
	start := c.Now()
	if _, err := keepRequest(t, e, alice, http.MethodPost, "/x", "1234"); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second) // the same window
	if _, err := keepRequest(t, e, bob, http.MethodPost, "/x", "123456"); err != nil {
		t.Fatalf("exactly MaxTotal bytes refused: %v", err)
	}
	if _, err := keepRequest(t, e, bob, http.MethodPost, "/x", "1"); !errors.Is(err, ErrKeptBytesFull) {
		t.Fatalf("a byte over MaxTotal: %v", err)
	}
	if _, err := keepRequest(t, e, bob, http.MethodGet, "/x", ""); err != nil {
		t.Fatalf("a bodiless request refused for the byte cap: %v", err)
	}
	// The counter lives two windows, not longer.
	key := e.totalKey(start)
	c.Advance(2*e.Pending.TTL - time.Second - time.Nanosecond)
	if _, err := st.Get(context.Background(), key); err != nil {
		t.Fatalf("the byte counter went early: %v", err)
	}
	c.Advance(time.Nanosecond)
	if _, err := st.Get(context.Background(), key); err == nil {
		t.Fatal("the byte counter outlived two windows")
	}
	if _, err := keepRequest(t, e, bob, http.MethodPost, "/x", "123456"); err != nil {
		t.Fatalf("a later window refused: %v", err)
	}
}

// per_session counts what waits: a request taken frees its place.
func TestKeepCountsWhatWaitsPerOwner(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{PerSession: 2})
	ctx := context.Background()
	alice := &Session{Owner: "owner-a", User: "alice"}
	first, err := keepRequest(t, e, alice, http.MethodGet, "/1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keepRequest(t, e, alice, http.MethodGet, "/2", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := keepRequest(t, e, alice, http.MethodGet, "/3", ""); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("a third request for two places: %v", err)
	}
	if _, err := keepRequest(t, e, &Session{Owner: "owner-b", User: "alice"}, http.MethodGet, "/3", ""); err != nil {
		t.Fatalf("another owner's places are its own: %v", err)
	}
	if _, err := e.TakePending(ctx, alice, first.ID); err != nil {
		t.Fatal(err)
	}
	third, err := keepRequest(t, e, alice, http.MethodGet, "/3", "")
	if err != nil {
		t.Fatalf("a taken request did not free its place: %v", err)
	}
	if third.Slot != first.Slot {
		t.Fatalf("the freed place %d was not reused (got %d)", first.Slot, third.Slot)
	}
	// Places expire with their requests.
	c.Advance(e.Pending.TTL)
	for i := 0; i < 2; i++ {
		if _, err := keepRequest(t, e, alice, http.MethodGet, "/4", ""); err != nil {
			t.Fatalf("places outlived their requests: %v", err)
		}
	}
}

// A kept request is seen, sent and discarded only by the user who kept it,
// under the owner it was kept for, and only once.
func TestKeptRequestsAreBoundToTheirUser(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	alice := &Session{Owner: "owner-a", User: "alice"}
	p, err := keepRequest(t, e, alice, http.MethodPost, "/x", "a=1")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Session{
		"no session":                nil,
		"another user, same owner":  {Owner: "owner-a", User: "bob"},
		"a visitor, same owner":     {Owner: "owner-a"},
		"the same user, elsewhere":  {Owner: "owner-b", User: "alice"},
		"another user, other owner": {Owner: "owner-b", User: "bob"},
	} {
		if _, err := e.PeekPending(ctx, s, p.ID); !errors.Is(err, ErrPendingNotFound) {
			t.Errorf("%s: PeekPending = %v", name, err)
		}
		if _, err := e.TakePending(ctx, s, p.ID); !errors.Is(err, ErrPendingNotFound) {
			t.Errorf("%s: TakePending = %v", name, err)
		}
	}
	if !e.PendingWaiting(ctx, &Session{Owner: "owner-a", User: "bob"}, p.ID) {
		t.Error("PendingWaiting does not see a request waiting under the owner")
	}
	for name, ok := range map[string]bool{
		"no session":  e.PendingWaiting(ctx, nil, p.ID),
		"no id":       e.PendingWaiting(ctx, alice, ""),
		"other owner": e.PendingWaiting(ctx, &Session{Owner: "owner-b", User: "alice"}, p.ID),
		"unknown id":  e.PendingWaiting(ctx, alice, "nope"),
	} {
		if ok {
			t.Errorf("PendingWaiting with %s", name)
		}
	}
	if got, err := e.PeekPending(ctx, alice, p.ID); err != nil || got.ID != p.ID {
		t.Fatalf("the user's own request: %+v %v", got, err)
	}
	got, err := e.TakePending(ctx, alice, p.ID)
	if err != nil || string(got.Body) != "a=1" {
		t.Fatalf("TakePending: %+v %v", got, err)
	}
	if _, err := e.TakePending(ctx, alice, p.ID); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("a kept request was taken twice: %v", err)
	}
	if e.PendingWaiting(ctx, alice, p.ID) {
		t.Fatal("a taken request still waits")
	}
	// A visitor's request is the visitor's while still a visitor.
	visitor := &Session{Owner: "owner-v"}
	vp, err := keepRequest(t, e, visitor, http.MethodGet, "/v", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PeekPending(ctx, visitor, vp.ID); err != nil {
		t.Fatalf("the visitor's own request: %v", err)
	}
	// Expired requests are gone.
	c.Advance(e.Pending.TTL)
	if _, err := e.PeekPending(ctx, visitor, vp.ID); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("an expired request: %v", err)
	}
}

func TestACorruptKeptRecordIsAnErrorNotARequest(t *testing.T) {
	if _, err := decodePending([]byte(`{"id":`), nil); err == nil || errors.Is(err, ErrPendingNotFound) {
		t.Errorf("a corrupt record: %v", err)
	}
	if _, err := decodePending(nil, ErrNotFound); !errors.Is(err, ErrPendingNotFound) {
		t.Errorf("a missing record: %v", err)
	}
	boom := errors.New("store down")
	if _, err := decodePending(nil, boom); !errors.Is(err, boom) {
		t.Errorf("a store failure: %v", err)
	}
	if p, err := decodePending([]byte(`{"id":"x","user":"alice"}`), nil); err != nil || p.ID != "x" || p.User != "alice" {
		t.Errorf("a record: %+v %v", p, err)
	}
}

// A sign-in walk carries the kept request it is for from the visitor's
// session to the new one; nobody else's request moves.
func TestSignInAdoptsOnlyAVisitorsKeptRequest(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{PerSession: 1})
	ctx := context.Background()
	b := &browser{}
	w := httptest.NewRecorder()
	visitor, err := e.Persist(w, b.request(http.MethodGet, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.keep(t, w)
	vp, err := keepRequest(t, e, visitor, http.MethodPost, "/admin/x", "a=1")
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	alice, err := b.complete(t, e, visitor, "login", "alice", vp.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.PeekPending(ctx, alice, vp.ID)
	if err != nil || got.User != "alice" || string(got.Body) != "a=1" {
		t.Fatalf("the visitor's request was not adopted: %+v %v", got, err)
	}
	if e.PendingWaiting(ctx, visitor, vp.ID) {
		t.Fatal("the adopted request still waits under the visitor's owner")
	}
	if _, err := keepRequest(t, e, visitor, http.MethodGet, "/y", ""); err != nil {
		t.Fatalf("adoption did not free the visitor's place: %v", err)
	}
	if _, err := keepRequest(t, e, alice, http.MethodGet, "/y", ""); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("the adopted request holds no place of its new owner: %v", err)
	}
	// It keeps its original expiry.
	c.Advance(e.Pending.TTL - time.Minute)
	if _, err := e.PeekPending(ctx, alice, vp.ID); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("adoption extended the request's life: %v", err)
	}

	// Without a pending id nothing moves.
	b2 := &browser{}
	w = httptest.NewRecorder()
	v2, _ := e.Persist(w, b2.request(http.MethodGet, "/"), nil)
	b2.keep(t, w)
	p2, err := keepRequest(t, e, v2, http.MethodGet, "/z", "")
	if err != nil {
		t.Fatal(err)
	}
	carol, err := b2.complete(t, e, v2, "login", "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PeekPending(ctx, carol, p2.ID); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("a request moved without its walk: %v", err)
	}
}

func TestSignInDoesNotAdoptAnotherUsersRequest(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	b := &browser{}
	bob := signIn(t, e, b, "bob")
	bp, err := keepRequest(t, e, bob, http.MethodPost, "/admin/x", "a=1")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := b.complete(t, e, bob, "login", "alice", bp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PeekPending(ctx, alice, bp.ID); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("alice adopted bob's request: %v", err)
	}
	if !e.PendingWaiting(ctx, bob, bp.ID) {
		t.Fatal("bob's request left his owner")
	}
}

func TestAdoptPendingRules(t *testing.T) {
	c := newClock()
	storeClock := newClock() // the store's clock stands still: only the engine's expiry check applies
	e := newTestEngineOn(t, c, store.NewMemory(0, storeClock.Now), PendingLimits{})
	ctx := context.Background()
	keepFor := func(user string) *PendingRequest {
		p, err := keepRequest(t, e, &Session{Owner: "from", User: user}, http.MethodGet, "/x", "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	moved := func(p *PendingRequest, user string) bool {
		_, err := e.PeekPending(ctx, &Session{Owner: "to", User: user}, p.ID)
		return err == nil
	}

	own := keepFor("alice")
	e.adoptPending(ctx, "from", "to", own.ID, "alice")
	if !moved(own, "alice") {
		t.Error("a user's own request did not follow her")
	}
	other := keepFor("bob")
	e.adoptPending(ctx, "from", "to", other.ID, "alice")
	if moved(other, "alice") || moved(other, "bob") {
		t.Error("another user's request moved")
	}
	e.adoptPending(ctx, "from", "to", "unknown", "alice") // nothing to move: no panic

	visitors := keepFor("")
	c.Advance(e.Pending.TTL) // expired by the engine's clock
	e.adoptPending(ctx, "from", "to", visitors.ID, "alice")
	if moved(visitors, "alice") {
		t.Error("an expired request was adopted")
	}
}

// MarkSteppedUp records the step-up on a request still waiting, for its
// own user only, and never revives one that expired or was sent.
func TestMarkSteppedUpOnlyWhileWaiting(t *testing.T) {
	c := newClock()
	storeClock := newClock()
	st := store.NewMemory(0, storeClock.Now)
	e := newTestEngineOn(t, c, st, PendingLimits{})
	ctx := context.Background()
	alice := &Session{Owner: "owner-a", User: "alice"}
	p, err := keepRequest(t, e, alice, http.MethodGet, "/x", "")
	if err != nil {
		t.Fatal(err)
	}
	at := c.Now().Add(time.Second)
	if err := e.MarkSteppedUp(ctx, &Session{Owner: "owner-a", User: "bob"}, p.ID, at); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("another user marked the request: %v", err)
	}
	if err := e.MarkSteppedUp(ctx, alice, p.ID, at); err != nil {
		t.Fatal(err)
	}
	got, err := e.PeekPending(ctx, alice, p.ID)
	if err != nil || !got.SteppedUp.Equal(at) {
		t.Fatalf("stepped-up mark: %+v %v", got, err)
	}
	if _, err := e.TakePending(ctx, alice, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.MarkSteppedUp(ctx, alice, p.ID, at); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("a sent request was marked: %v", err)
	}
	if _, err := st.Get(ctx, pendingKey(alice.Owner, p.ID)); err == nil {
		t.Fatal("marking brought a sent request back")
	}

	late, err := keepRequest(t, e, alice, http.MethodGet, "/y", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(e.Pending.TTL) // expired by the engine's clock, still in the store
	if err := e.MarkSteppedUp(ctx, alice, late.ID, c.Now()); !errors.Is(err, ErrPendingNotFound) {
		t.Fatalf("an expired request was marked: %v", err)
	}
	if got, err := e.PeekPending(ctx, alice, late.ID); err != nil || !got.SteppedUp.IsZero() {
		t.Fatalf("an expired request was changed: %+v %v", got, err)
	}
}

func TestReplaySendsTheKeptRequest(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
	}{
		{"form", "application/x-www-form-urlencoded", "a=1&b=2"},
		{"no content type", "", ""},
	} {
		p := &PendingRequest{Method: http.MethodPut, URI: "/admin/x?y=1", ContentType: tc.ct, Body: []byte(tc.body)}
		r := httptest.NewRequest(http.MethodPost, "http://app.example/_stepup/resume/1", strings.NewReader("confirm=1"))
		r.Header.Set("Content-Type", "text/plain")
		r.Header.Set("Content-Length", "9")
		if err := p.Replay(r); err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPut || r.URL.Path != "/admin/x" || r.URL.RawQuery != "y=1" || r.RequestURI != "/admin/x?y=1" ||
			r.Header.Get("Content-Type") != tc.ct || r.Header.Get("Content-Length") != "" ||
			string(body) != tc.body || r.ContentLength != int64(len(tc.body)) {
			t.Errorf("%s: replayed %s %s ct %q body %q len %d", tc.name, r.Method, r.URL, r.Header.Get("Content-Type"), body, r.ContentLength)
		}
		again, _ := r.GetBody()
		if b, _ := io.ReadAll(again); string(b) != tc.body {
			t.Errorf("%s: GetBody %q", tc.name, b)
		}
	}
}

// A per-request grant is taken once, by its user, for exactly its method
// and URI.
func TestGrantsAreTakenOnceAndOnlyByTheirUser(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	alice := &Session{Owner: "owner-a", User: "alice"}
	since := c.Now().Add(-time.Second)
	grant := func(s *Session, method, uri string) {
		t.Helper()
		if err := e.Grant(ctx, s, method, uri, since); err != nil {
			t.Fatal(err)
		}
	}
	take := func(s *Session, method, uri string) time.Time {
		return e.TakeGrant(ctx, s, httptest.NewRequest(method, uri, nil))
	}

	grant(alice, http.MethodGet, "/wire?to=1")
	for name, got := range map[string]time.Time{
		"another method":      take(alice, http.MethodHead, "/wire?to=1"),
		"another URI":         take(alice, http.MethodGet, "/wire?to=2"),
		"another owner":       take(&Session{Owner: "owner-b", User: "alice"}, http.MethodGet, "/wire?to=1"),
		"another user, taken": take(&Session{Owner: "owner-a", User: "bob"}, http.MethodGet, "/wire?to=1"),
	} {
		if !got.IsZero() {
			t.Errorf("grant taken with %s", name)
		}
	}
	if got := take(alice, http.MethodGet, "/wire?to=1"); !got.IsZero() {
		t.Error("a grant survived another user's attempt to take it")
	}

	grant(alice, http.MethodGet, "/wire?to=1")
	if got := take(alice, http.MethodGet, "/wire?to=1"); !got.Equal(since) {
		t.Fatalf("TakeGrant = %v, want %v", got, since)
	}
	if got := take(alice, http.MethodGet, "/wire?to=1"); !got.IsZero() {
		t.Fatal("a grant was taken twice")
	}

	visitor := &Session{Owner: "owner-v"}
	grant(visitor, http.MethodGet, "/x")
	if got := take(visitor, http.MethodGet, "/x"); !got.IsZero() {
		t.Fatal("a grant without a user was honoured")
	}

	grant(alice, http.MethodGet, "/late")
	c.Advance(e.Pending.TTL)
	if got := take(alice, http.MethodGet, "/late"); !got.IsZero() {
		t.Fatal("an expired grant was honoured")
	}
}

// A round's life is bounded by the pending TTL, and by its own expiry when
// that is sooner.
func TestKeepRoundBoundsTheRoundsLife(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{TTL: 10 * time.Minute})
	ctx := context.Background()
	alice := &Session{Owner: "owner-a", User: "alice"}
	if _, err := e.KeepRound(ctx, alice, nil); err == nil {
		t.Fatal("a challenge without a round was kept")
	}
	for _, tc := range []struct {
		name    string
		expires time.Time
		want    time.Time
	}{
		{"no expiry", time.Time{}, c.Now().Add(10 * time.Minute)},
		{"too far", c.Now().Add(time.Hour), c.Now().Add(10 * time.Minute)},
		{"sooner", c.Now().Add(time.Minute), c.Now().Add(time.Minute)},
	} {
		rd := &Round{Prompt: "p", Expires: tc.expires}
		id, err := e.KeepRound(ctx, alice, rd)
		if err != nil {
			t.Fatal(err)
		}
		if !rd.Expires.Equal(tc.want) || rd.User != "alice" {
			t.Errorf("%s: expires %v user %q, want %v", tc.name, rd.Expires, rd.User, tc.want)
		}
		got, err := e.TakeRound(ctx, alice, id)
		if err != nil || !got.Expires.Equal(tc.want) || got.User != "alice" {
			t.Errorf("%s: taken %+v %v", tc.name, got, err)
		}
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
