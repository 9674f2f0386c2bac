package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	err    error // of verifySpec
}

// receiver is a real local HTTP server that verifies every request as a
// Standard Webhooks receiver would and answers with status(n) for the
// n-th request (from 1).
type receiver struct {
	*httptest.Server
	got chan delivery
}

func newReceiver(t *testing.T, status func(n int, w http.ResponseWriter) int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan delivery, 100)}
	var mu sync.Mutex
	n := 0
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.got <- delivery{header: req.Header.Clone(), body: body, err: verifySpec(testSecret, req.Header, body, time.Now())}
		mu.Lock()
		n++
		code := status(n, w)
		mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		if d.err != nil {
			t.Fatalf("receiver: %v", d.err)
		}
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery")
		return delivery{}
	}
}

func start(t *testing.T, cfg Config) *Sender {
	t.Helper()
	if cfg.Key == nil {
		key, err := ParseSecret(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Key = key
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eventually polls cond; the sender works in the background.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

func TestDeliveredSignedAsTheSpecificationSays(t *testing.T) {
	rcv := newReceiver(t, func(int, http.ResponseWriter) int { return http.StatusNoContent })
	s := start(t, Config{URL: rcv.URL + "/hook?x=1"})
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	n := stepup.Notification{Event: "requested", ID: "ap_42", At: at,
		Data: map[string]any{"url": "https://gw.example/_stepup/approvals/ap_42", "requester": "bob"}}
	if err := s.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	d := rcv.next(t)
	if ct, ua := d.header.Get("Content-Type"), d.header.Get("User-Agent"); ct != "application/json" || ua != userAgent {
		t.Errorf("Content-Type %q, User-Agent %q", ct, ua)
	}
	var p struct {
		Type, Timestamp string
		Data            map[string]any
	}
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "approval.requested" || p.Timestamp != "2026-05-01T09:00:00Z" || p.Data["id"] != "ap_42" || p.Data["requester"] != "bob" {
		t.Errorf("payload %s", d.body)
	}
	// The independent verifier refuses a tampered body and a wrong secret.
	tampered := []byte(string(d.body[:len(d.body)-2]) + " }")
	if verifySpec(testSecret, d.header, tampered, time.Now()) == nil {
		t.Error("tampered body verified")
	}
	if verifySpec("whsec_"+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", d.header, d.body, time.Now()) == nil {
		t.Error("wrong secret verified")
	}
	eventually(t, "counted as delivered", func() bool { delivered, _, _ := s.Stats(); return delivered == 1 })
}

func TestRetriedAfterServerErrorsWithTheSameID(t *testing.T) {
	rcv := newReceiver(t, func(n int, _ http.ResponseWriter) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := start(t, Config{URL: rcv.URL})
	if err := s.Notify(context.Background(), stepup.Notification{Event: "decided", ID: "ap_1"}); err != nil {
		t.Fatal(err)
	}
	first, second, third := rcv.next(t), rcv.next(t), rcv.next(t)
	id := first.header.Get(HeaderID)
	if second.header.Get(HeaderID) != id || third.header.Get(HeaderID) != id || string(third.body) != string(first.body) {
		t.Fatalf("ids %q %q %q", id, second.header.Get(HeaderID), third.header.Get(HeaderID))
	}
	eventually(t, "delivered once", func() bool { delivered, failed, _ := s.Stats(); return delivered == 1 && failed == 0 })
	select {
	case d := <-rcv.got:
		t.Fatalf("a fourth request after success: %s", d.header.Get(HeaderID))
	case <-time.After(50 * time.Millisecond):
	}
	// Each message has its own id.
	if err := s.Notify(context.Background(), stepup.Notification{Event: "used", ID: "ap_1"}); err != nil {
		t.Fatal(err)
	}
	if rcv.next(t).header.Get(HeaderID) == id {
		t.Error("a second message reused the first one's webhook-id")
	}
}

func TestAttemptsPerStatus(t *testing.T) {
	for _, tc := range []struct {
		status   int
		requests int // with Attempts 3
	}{
		{http.StatusBadRequest, 1},
		{http.StatusUnauthorized, 1},
		{http.StatusNotFound, 1},
		{http.StatusGone, 1},
		{http.StatusFound, 1}, // a redirect is a failure, not followed
		{http.StatusRequestTimeout, 3},
		{http.StatusTooManyRequests, 3},
		{http.StatusBadGateway, 3},
		{http.StatusServiceUnavailable, 3},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			rcv := newReceiver(t, func(_ int, w http.ResponseWriter) int {
				w.Header().Set("Location", "/elsewhere")
				return tc.status
			})
			s := start(t, Config{URL: rcv.URL, Attempts: 3})
			if err := s.Notify(context.Background(), stepup.Notification{Event: "expired", ID: "ap"}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "given up", func() bool { _, failed, _ := s.Stats(); return failed == 1 })
			if got := len(rcv.got); got != tc.requests {
				t.Fatalf("%d requests, want %d", got, tc.requests)
			}
		})
	}
}

// With a backoff of an hour, only the receiver's Retry-After of one second
// lets the second attempt come while the test waits.
func TestRetryAfterHonoured(t *testing.T) {
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s := start(t, Config{URL: rcv.URL, Backoff: time.Hour, MaxBackoff: time.Hour})
	if err := s.Notify(context.Background(), stepup.Notification{Event: "requested", ID: "ap"}); err != nil {
		t.Fatal(err)
	}
	rcv.next(t)
	rcv.next(t)
	eventually(t, "delivered", func() bool { delivered, _, _ := s.Stats(); return delivered == 1 })
}

func TestDeadEndpointNeverBlocksNotify(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := start(t, Config{URL: "http://" + addr + "/", QueueSize: 10, Attempts: 2})
	for range 100 {
		if err := s.Notify(context.Background(), stepup.Notification{Event: "requested", ID: "ap"}); err != nil && !errors.Is(err, ErrQueueFull) {
			t.Fatal(err)
		}
	}
	eventually(t, "every message given up or dropped", func() bool {
		_, failed, dropped := s.Stats()
		return failed+dropped == 100
	})
}

// hanging is a receiver that answers nothing until its request ends (or
// the test does).
func hanging(t *testing.T) *httptest.Server {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to the end, so that the server notices the client leave.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv
}

// A hanging receiver holds the workers; Notify still returns at once, and
// what does not fit in the queue is dropped and counted. A Notify that
// waited would hang this test.
func TestHangingEndpointDropsWhatTheQueueCannotHold(t *testing.T) {
	srv := hanging(t)
	const queue, workers, calls = 50, 2, 10000
	s := start(t, Config{URL: srv.URL, QueueSize: queue, Workers: workers, Timeout: time.Hour, Grace: time.Millisecond})
	accepted, full := 0, 0
	for range calls {
		switch err := s.Notify(context.Background(), stepup.Notification{Event: "requested", ID: "ap"}); {
		case err == nil:
			accepted++
		case errors.Is(err, ErrQueueFull):
			full++
		default:
			t.Fatal(err)
		}
	}
	if accepted > queue+workers || accepted+full != calls {
		t.Fatalf("accepted %d, dropped %d of %d with a queue of %d", accepted, full, calls, queue)
	}
	if _, _, dropped := s.Stats(); dropped != int64(full) {
		t.Fatalf("Stats dropped %d, Notify refused %d", dropped, full)
	}
}

func TestCloseStopsTheWorkers(t *testing.T) {
	srv := hanging(t)
	runtime.GC()
	before := runtime.NumGoroutine()
	s, err := Start(context.Background(), Config{URL: srv.URL, Key: []byte("k"), Workers: 4, Timeout: time.Hour, Grace: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		s.Notify(context.Background(), stepup.Notification{Event: "requested", ID: "ap"})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Notify(context.Background(), stepup.Notification{Event: "requested", ID: "ap"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Notify after Close: %v", err)
	}
	s.Close() // twice is fine
	// The server's side of the connections ends a little after the client's.
	eventually(t, "goroutines back to their number before Start", func() bool { return runtime.NumGoroutine() <= before })
}

func TestContextEndStopsTheWorkers(t *testing.T) {
	srv := hanging(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, Config{URL: srv.URL, Key: []byte("k"), Timeout: time.Hour, Grace: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Notify(context.Background(), stepup.Notification{Event: "requested", ID: "ap"})
	cancel()
	done := make(chan struct{})
	go func() { s.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("workers still running after the context ended")
	}
	s.Close()
}

// What is queued when Close comes is still delivered within the grace.
func TestCloseDeliversWhatIsQueued(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	got := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		mu.Lock()
		got++
		mu.Unlock()
	}))
	defer srv.Close()
	s, err := Start(context.Background(), Config{URL: srv.URL, Key: []byte("k"), Workers: 1, Grace: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := s.Notify(context.Background(), stepup.Notification{Event: "used", ID: "ap"}); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	close(release)
	<-closed
	mu.Lock()
	defer mu.Unlock()
	if delivered, _, dropped := s.Stats(); got != 5 || delivered != 5 || dropped != 0 {
		t.Fatalf("received %d, delivered %d, dropped %d", got, delivered, dropped)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "ftp://example.com/", Key: []byte("k")},
		{URL: "https:///nohost", Key: []byte("k")},
		{URL: "example.com/hook", Key: []byte("k")},
		{URL: "https://example.com/", Key: nil},
		{URL: "https://example.com/", Key: []byte("k"), Attempts: -1},
	} {
		if s, err := Start(context.Background(), cfg); err == nil {
			s.Close()
			t.Errorf("Start(%+v) accepted", cfg)
		}
	}
}

func BenchmarkNotify(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	s, err := Start(context.Background(), Config{URL: srv.URL, Key: []byte("k"), QueueSize: 100})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n := stepup.Notification{Event: "requested", ID: "ap_1", At: time.Now(), Data: map[string]any{"user": "bob", "url": "https://gw.example/_stepup/approvals/ap_1"}}
	b.ReportAllocs()
	for b.Loop() {
		s.Notify(context.Background(), n)
	}
}
