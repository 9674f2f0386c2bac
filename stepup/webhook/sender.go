package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Defaults of Config.
const (
	DefaultTimeout    = 15 * time.Second // the specification recommends 15 to 30 s
	DefaultAttempts   = 5
	DefaultQueueSize  = 1000
	DefaultWorkers    = 2
	DefaultBackoff    = 5 * time.Second
	DefaultMaxBackoff = 5 * time.Minute
	DefaultGrace      = 2 * time.Second

	// dropWarnEvery spaces the warnings about a full queue: an outage can
	// drop thousands of notifications, and one line says how many.
	dropWarnEvery = 10 * time.Second
	// userAgent names the sender to the receiver's logs.
	userAgent = "caddy-stepup-webhook/1"
)

// Sentinel errors of Notify; the notification is not sent.
var (
	ErrQueueFull = errors.New("webhook queue full: notification dropped")
	ErrClosed    = errors.New("webhook sender stopped: notification dropped")
)

// Config configures a Sender. Zero values take the defaults above.
type Config struct {
	// URL receives the POSTs (http or https).
	URL string
	// Key is the HMAC key (see ParseSecret).
	Key []byte
	// Timeout of one attempt, connection to response headers and body.
	Timeout time.Duration
	// Attempts per message, the first one included.
	Attempts int
	// QueueSize bounds the messages waiting; when it is full a new one is
	// dropped, never waited for.
	QueueSize int
	// Workers deliver in parallel; a slow receiver holds up as many
	// messages as there are workers.
	Workers int
	// Backoff is the delay before the second attempt; it doubles for each
	// attempt after that, up to MaxBackoff, each delay jittered between
	// half and one and a half times itself. MaxBackoff also caps a
	// receiver's Retry-After.
	Backoff, MaxBackoff time.Duration
	// Grace is how long Close (or the end of the context given to Start)
	// lets the workers go on delivering what is queued.
	Grace time.Duration
	// Client sends the requests; by default one of the Sender's own that
	// follows no redirects (the specification counts a 3xx as a failure).
	Client *http.Client
	// Logger gets a warning per message given up and per burst of drops.
	Logger *zap.Logger
	// Now is the clock of webhook-timestamp. Default: time.Now.
	Now func() time.Time
}

// Sender queues notifications and delivers them as signed webhooks. It is
// a stepup.Notifier.
type Sender struct {
	cfg    Config
	target *url.URL
	queue  chan message
	log    *zap.Logger

	stop     chan struct{} // closed when the workers stop taking new work
	stopOnce sync.Once
	drainCtx context.Context // ends Grace after stop: in-flight attempts end with it
	endDrain context.CancelFunc
	workers  sync.WaitGroup

	dropped, delivered, failed atomic.Int64
	lastDropWarn               atomic.Int64 // unix nanoseconds
}

// message is one notification to deliver: its id and body stay the same
// across attempts.
type message struct {
	id, event string
	body      []byte
}

// Start checks cfg, fills its defaults and starts the workers. They stop
// on Close or when ctx ends, in both cases after delivering what they can
// of the queue within Grace.
func Start(ctx context.Context, cfg Config) (*Sender, error) {
	target, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook url: %w", err)
	}
	if (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want http:// or https:// and a host", cfg.URL)
	}
	if len(cfg.Key) == 0 {
		return nil, ErrEmptySecret
	}
	if cfg.Attempts < 0 || cfg.QueueSize < 0 || cfg.Workers < 0 || cfg.Timeout < 0 ||
		cfg.Backoff < 0 || cfg.MaxBackoff < 0 || cfg.Grace < 0 {
		return nil, errors.New("webhook: negative attempts, queue size, workers or duration")
	}
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.Attempts, DefaultAttempts)
	setDefault(&cfg.QueueSize, DefaultQueueSize)
	setDefault(&cfg.Workers, DefaultWorkers)
	setDefault(&cfg.Backoff, DefaultBackoff)
	setDefault(&cfg.MaxBackoff, DefaultMaxBackoff)
	setDefault(&cfg.Grace, DefaultGrace)
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sender{
		cfg:    cfg,
		target: target,
		queue:  make(chan message, cfg.QueueSize),
		log:    cfg.Logger.With(zap.String("url", target.Redacted())),
		stop:   make(chan struct{}),
	}
	s.drainCtx, s.endDrain = context.WithCancel(context.Background())
	for range cfg.Workers {
		s.workers.Go(s.work)
	}
	s.workers.Go(func() {
		select {
		case <-ctx.Done():
			s.shutdown()
		case <-s.stop:
		}
	})
	return s, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Notify queues n and returns at once. It never waits: with the queue
// full, n is dropped (ErrQueueFull). Delivery does not depend on ctx, which
// usually ends with the request that caused the event.
func (s *Sender) Notify(_ context.Context, n stepup.Notification) error {
	if n.At.IsZero() {
		n.At = s.cfg.Now()
	}
	body, err := Payload(n)
	if err != nil {
		return err
	}
	select {
	case <-s.stop:
		return ErrClosed
	default:
	}
	select {
	case s.queue <- message{id: NewMessageID(), event: n.Event, body: body}:
		return nil
	default:
		s.noteDrop(n)
		return ErrQueueFull
	}
}

// noteDrop counts a dropped notification and warns, once per burst.
func (s *Sender) noteDrop(n stepup.Notification) {
	total := s.dropped.Add(1)
	now := time.Now().UnixNano()
	last := s.lastDropWarn.Load()
	if now-last < int64(dropWarnEvery) || !s.lastDropWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("webhook queue full: notifications dropped",
		zap.Int64("dropped_total", total), zap.Int("queue", s.cfg.QueueSize),
		zap.String("event", n.Event), zap.String("approval", n.ID))
}

// Stats counts the messages delivered, given up after their attempts (or
// refused by the receiver), and dropped (queue full, or still queued when
// the grace after a stop ran out).
func (s *Sender) Stats() (delivered, failed, dropped int64) {
	return s.delivered.Load(), s.failed.Load(), s.dropped.Load()
}

// Close stops the workers, lets them deliver what is queued for up to
// Grace, and returns when they have stopped. It is safe to call more than
// once.
func (s *Sender) Close() error {
	s.shutdown()
	s.workers.Wait()
	s.endDrain()
	if t, ok := s.cfg.Client.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

func (s *Sender) shutdown() {
	s.stopOnce.Do(func() {
		close(s.stop)
		time.AfterFunc(s.cfg.Grace, s.endDrain)
	})
}

func (s *Sender) work() {
	for {
		select {
		case m := <-s.queue:
			s.deliver(m)
		case <-s.stop:
			s.drain()
			return
		}
	}
}

// drain delivers what is queued until the queue is empty or the grace has
// run out; what is left then is dropped and counted.
func (s *Sender) drain() {
	abandoned := 0
	for {
		select {
		case m := <-s.queue:
			if s.drainCtx.Err() != nil {
				abandoned++
				continue
			}
			s.deliver(m)
		default:
			if abandoned > 0 {
				s.dropped.Add(int64(abandoned))
				s.log.Warn("webhook sender stopped: queued notifications dropped", zap.Int("dropped", abandoned))
			}
			return
		}
	}
}

// deliver makes up to Attempts attempts to deliver m.
func (s *Sender) deliver(m message) {
	var (
		status int
		err    error
	)
	for attempt := 1; ; attempt++ {
		var retryAfter time.Duration
		status, retryAfter, err = s.attempt(m)
		if err == nil {
			s.delivered.Add(1)
			return
		}
		if !retryable(status) || attempt == s.cfg.Attempts {
			break
		}
		delay := jitter(min(s.cfg.Backoff<<(attempt-1), s.cfg.MaxBackoff))
		if retryAfter > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
			delay = min(retryAfter, s.cfg.MaxBackoff)
		}
		if !s.sleep(delay) {
			break
		}
	}
	s.failed.Add(1)
	s.log.Warn("webhook not delivered", zap.String("webhook_id", m.id), zap.String("event", m.event),
		zap.Int("status", status), zap.Error(err))
}

// attempt POSTs m once, signed at this moment. It answers the response
// status (0 without one), the receiver's Retry-After, and an error unless
// the status is 2xx.
func (s *Sender) attempt(m message) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(s.drainCtx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.target.String(), bytes.NewReader(m.body))
	if err != nil {
		return 0, 0, err
	}
	at := s.cfg.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderID, m.id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(s.cfg.Key, m.id, at, m.body))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	// Read a little of the body so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), at),
		fmt.Errorf("receiver answered %s", resp.Status)
}

// retryable: no response (a network error or timeout), 408, 429 and 5xx are
// worth another attempt; a redirect or another 4xx will answer the same.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// sleep waits d, or less if the grace after a stop runs out first (false).
func (s *Sender) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.drainCtx.Done():
		return false
	}
}

// jitter spreads retries of many messages over [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d)
}

// parseRetryAfter reads Retry-After as seconds or as an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

var _ stepup.Notifier = (*Sender)(nil)
