package caddymodule

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/web"
)

// The collectors live as long as the process, so counters keep counting
// across config reloads; each configuration's metrics registry
// (ctx.GetMetricsRegistry, what Caddy's `metrics` handler and the admin
// endpoint's /metrics serve) gets them registered at provision. Labels
// are bounded: tier, method and policy names come from the configuration,
// results and decisions from the fixed lists below. Never a user or path.
var stepupMetrics = struct {
	decisions  *prometheus.CounterVec
	challenges *prometheus.CounterVec
	approvals  *prometheus.CounterVec
	duration   *durationHistogram
	sessions   *sessionsCollector
}{
	decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "stepup", Name: "decisions_total",
		Help: "Requests decided by the stepup handler, by result (allowed, step_up_required, approval_pending, denied, error).",
	}, []string{"result"}),
	challenges: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "stepup", Name: "challenges_total",
		Help: "Step-up attempts by tier, method and result (success, failure, challenge, unavailable, rate_limited).",
	}, []string{"tier", "method", "result"}),
	approvals: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "stepup", Name: "approvals_total",
		Help: "Approval events by policy and decision (requested, approved, denied, refused, expired, used, break_glass).",
	}, []string{"policy", "decision"}),
	duration: newDurationHistogram(prometheus.NewDesc("caddy_stepup_decision_duration_seconds",
		"Time the stepup handler took to decide a request (policy evaluation, approvals included).", nil, nil),
		decisionBuckets),
	sessions: &sessionsCollector{stores: map[*built]stepup.Store{}},
}

// registerMetrics registers the collectors in the configuration's
// registry; the app and every handler of one configuration share it, so a
// collector already there is reused.
func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{stepupMetrics.decisions, stepupMetrics.challenges, stepupMetrics.approvals, stepupMetrics.duration, stepupMetrics.sessions} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// decisionMetrics resolves the decision counters once, so that the
// gateway's hot path does no label lookup.
func decisionMetrics() *web.DecisionMetrics {
	d := stepupMetrics.decisions
	return &web.DecisionMetrics{
		Allowed: d.WithLabelValues("allowed"), StepUpRequired: d.WithLabelValues("step_up_required"),
		ApprovalPending: d.WithLabelValues("approval_pending"), Denied: d.WithLabelValues("denied"),
		Error: d.WithLabelValues("error"), Duration: stepupMetrics.duration,
	}
}

// decisionBuckets are the upper bounds, in seconds, of the decision
// duration histogram's buckets.
var decisionBuckets = []float64{0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05}

// durationHistogram is a Prometheus histogram of durations made for an
// observation on every request: one comparison per bucket passed and two
// atomic additions, on two cache lines. The client library's histogram
// does four atomic operations per observation (one a compare-and-swap loop
// on a float) over more memory and code, which on a busy server's cold
// caches cost several times the counting itself. Collect reports the same
// exposition as the library's histogram with these buckets; a scrape that
// races observations may see the sum and the counts a few observations
// apart, never a count that goes back.
type durationHistogram struct {
	desc   *prometheus.Desc
	upper  []float64       // bucket upper bounds, in seconds
	bounds []time.Duration // the same, as durations
	counts []atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	nanos  atomic.Int64    // sum of the observations
}

func newDurationHistogram(desc *prometheus.Desc, upper []float64) *durationHistogram {
	h := &durationHistogram{desc: desc, upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
	for _, b := range upper {
		h.bounds = append(h.bounds, time.Duration(math.Round(b*1e9)))
	}
	return h
}

// ObserveDuration counts one duration (a negative one as zero).
func (h *durationHistogram) ObserveDuration(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.nanos.Add(int64(d))
}

func (h *durationHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *durationHistogram) Collect(ch chan<- prometheus.Metric) {
	buckets := make(map[float64]uint64, len(h.upper))
	var n uint64
	for i, b := range h.upper {
		n += h.counts[i].Load()
		buckets[b] = n
	}
	n += h.counts[len(h.upper)].Load()
	ch <- prometheus.MustNewConstHistogram(h.desc, n, float64(h.nanos.Load())/1e9, buckets)
}

// sessionsCollector reports caddy_stepup_sessions_active: the sessions in
// the stores of the running engines (stepup.CountSessions), counted when
// scraped, never on the request path. Counting lists every session key,
// which for a million sessions (or a shared Redis, for every instance's
// scrapes) is too dear to do for each scrape: a count that found many is
// reused for sessionsRecount, and scrapes never count at once.
type sessionsCollector struct {
	mu     sync.Mutex
	stores map[*built]stepup.Store
	gen    int // changes of stores

	countMu sync.Mutex // one count at a time
	counted time.Time  // when last counted (zero: never)
	last    int        // what it found
	lastGen int        // for which stores
	now     func() time.Time
}

// sessionsRecount is how long a count of at least sessionsCheapCount is
// reported again instead of counting anew.
const (
	sessionsRecount    = 30 * time.Second
	sessionsCheapCount = 10_000
)

var sessionsDesc = prometheus.NewDesc("caddy_stepup_sessions_active",
	"Sessions in the session store (every instance sharing the store counts them once).", nil, nil)

func (c *sessionsCollector) add(b *built, st stepup.Store) {
	c.mu.Lock()
	c.stores[b] = st
	c.gen++
	c.mu.Unlock()
}

func (c *sessionsCollector) remove(b *built) {
	c.mu.Lock()
	delete(c.stores, b)
	c.gen++
	c.mu.Unlock()
}

func (c *sessionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sessionsDesc }

func (c *sessionsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(c.count()))
}

// count returns the sessions in the stores, counted now or, when the last
// count was large and recent and the stores are the same, that count.
func (c *sessionsCollector) count() int {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	c.mu.Lock()
	gen := c.gen
	seen := map[stepup.Store]bool{}
	var stores []stepup.Store
	for _, st := range c.stores {
		if !seen[st] {
			seen[st] = true
			stores = append(stores, st)
		}
	}
	c.mu.Unlock()
	if !c.counted.IsZero() && gen == c.lastGen && c.last >= sessionsCheapCount && now().Sub(c.counted) < sessionsRecount {
		return c.last
	}
	n := 0
	for _, st := range stores {
		if count, err := stepup.CountSessions(context.Background(), st, 1_000_000); err == nil {
			n += count
		}
	}
	c.counted, c.last, c.lastGen = now(), n, gen
	return n
}

// challengeResults and approvalDecisions bound the label values taken
// from audit records.
var challengeResults = map[string]bool{"success": true, "failure": true, "challenge": true, "unavailable": true}

// observe taps the engine's audit trail: every record passes through it,
// so the metrics and Caddy events follow from what the use cases already
// record, with no change to them.
func (b *built) observe(ctx caddy.Context) error {
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	stepupMetrics.sessions.add(b, b.engine.Store)
	var emit func(name string, data map[string]any)
	// Only a configured events app has subscribers (`events { on … }`);
	// a bare context (tests, caddy validate of a part) has no apps at all.
	if app, err := ctx.AppIfConfigured("events"); err == nil {
		if events, ok := app.(*caddyevents.App); ok {
			emit = func(name string, data map[string]any) { events.Emit(ctx, name, data) }
		}
	}
	tiers := map[string]bool{}
	methods := map[string]bool{}
	for _, t := range b.engine.Hierarchy.Names() {
		tiers[t] = true
		for _, m := range b.engine.Alternatives[t] {
			methods[m.Name()] = true
		}
	}
	policies := map[string]bool{}
	if b.approvals != nil {
		for name := range b.approvals.Policies {
			policies[name] = true
		}
	}
	b.engine.Audit.Tap(func(rec stepup.Record) {
		tapRecord(rec, tiers, methods, policies, emit)
	})
	return nil
}

// tapRecord turns one audit record into metrics and events.
func tapRecord(rec stepup.Record, tiers, methods, policies map[string]bool, emit func(string, map[string]any)) {
	bounded := func(v string, known map[string]bool) string {
		if known[v] {
			return v
		}
		return "other"
	}
	event := ""
	switch rec.Event {
	case stepup.EventStepUp:
		result := rec.Result
		if !challengeResults[result] {
			result = "other"
		}
		stepupMetrics.challenges.WithLabelValues(bounded(rec.Tier, tiers), bounded(rec.AuthMethod, methods), result).Inc()
		switch rec.Result {
		case "success":
			event = "stepup.succeeded"
		case "failure":
			event = "stepup.failed"
		}
	case stepup.EventRateLimited:
		if rec.AuthMethod == "" {
			return // a flood of kept requests, not an attempt
		}
		stepupMetrics.challenges.WithLabelValues(bounded(rec.Tier, tiers), bounded(rec.AuthMethod, methods), "rate_limited").Inc()
		event = "stepup.failed"
	case stepup.EventLogOff, stepup.EventRevoke:
		event = "stepup.logoff"
	case stepup.EventLapse:
		event = "stepup.lapsed"
	case stepup.EventApprovalRequested:
		if rec.Result == "pending" {
			stepupMetrics.approvals.WithLabelValues(bounded(rec.Policy, policies), "requested").Inc()
		}
	case stepup.EventApprovalDecided:
		if rec.Result == "approved" || rec.Result == "denied" {
			stepupMetrics.approvals.WithLabelValues(bounded(rec.Policy, policies), rec.Result).Inc()
		}
	case stepup.EventApprovalRefused:
		stepupMetrics.approvals.WithLabelValues(bounded(rec.Policy, policies), "refused").Inc()
	case stepup.EventApprovalExpired:
		stepupMetrics.approvals.WithLabelValues(bounded(rec.Policy, policies), "expired").Inc()
	case stepup.EventApprovalUsed:
		stepupMetrics.approvals.WithLabelValues(bounded(rec.Policy, policies), "used").Inc()
	case stepup.EventBreakGlass:
		if rec.Result == "approved" {
			stepupMetrics.approvals.WithLabelValues(bounded(rec.Policy, policies), "break_glass").Inc()
		}
	}
	if event == "" || emit == nil {
		return
	}
	data := map[string]any{}
	for _, f := range [...]struct{ k, v string }{
		{"user", rec.User}, {"tier", rec.Tier}, {"method", rec.AuthMethod}, {"result", rec.Result},
		{"reason", rec.Reason}, {"client_ip", rec.ClientIP}, {"request_id", rec.RequestID},
		{"session", rec.Session}, {"path", rec.Path},
	} {
		if f.v != "" {
			data[f.k] = f.v
		}
	}
	if rec.Tiers != "" {
		data["tiers"] = strings.Split(rec.Tiers, ",")
	}
	if rec.Event == stepup.EventRevoke {
		data["revoked_by"] = rec.Approver
	}
	emit(event, data)
}
