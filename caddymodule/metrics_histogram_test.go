package caddymodule

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The decision duration histogram is our own for speed: a scrape must see
// what the client library's histogram with the same buckets would report,
// bucket by bucket, including observations that fall exactly on a bound.
func TestDurationHistogramReportsWhatTheLibrarysHistogramWould(t *testing.T) {
	desc := prometheus.NewDesc("test_duration_seconds", "help", nil, nil)
	ours := newDurationHistogram(desc, decisionBuckets)
	lib := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "test_duration_seconds", Help: "help", Buckets: decisionBuckets})
	var ds []time.Duration
	for _, b := range decisionBuckets {
		at := time.Duration(math.Round(b * 1e9))
		ds = append(ds, at-1, at, at+1)
	}
	ds = append(ds, 0, time.Nanosecond, 700*time.Nanosecond, 3*time.Second, time.Hour)
	for _, d := range ds {
		ours.ObserveDuration(d)
		lib.Observe(d.Seconds())
	}
	got, want := collectHistogram(t, ours), collectHistogram(t, lib)
	if got.GetSampleCount() != want.GetSampleCount() || got.GetSampleCount() != uint64(len(ds)) {
		t.Fatalf("count %d, the library's %d, observed %d", got.GetSampleCount(), want.GetSampleCount(), len(ds))
	}
	if math.Abs(got.GetSampleSum()-want.GetSampleSum()) > 1e-9*want.GetSampleSum() {
		t.Errorf("sum %v, the library's %v", got.GetSampleSum(), want.GetSampleSum())
	}
	if len(got.Bucket) != len(want.Bucket) {
		t.Fatalf("%d buckets, the library's %d", len(got.Bucket), len(want.Bucket))
	}
	for i, b := range want.Bucket {
		g := got.Bucket[i]
		if g.GetUpperBound() != b.GetUpperBound() || g.GetCumulativeCount() != b.GetCumulativeCount() {
			t.Errorf("bucket le=%v: %d, the library's le=%v: %d", g.GetUpperBound(), g.GetCumulativeCount(), b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
}

// Observations from many goroutines are all counted (run with -race).
func TestDurationHistogramCountsConcurrentObservations(t *testing.T) {
	h := newDurationHistogram(prometheus.NewDesc("test_concurrent_seconds", "help", nil, nil), decisionBuckets)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				h.ObserveDuration(time.Duration(i) * time.Microsecond)
				if i%250 == 0 {
					collectHistogram(t, h) // scrapes race the observations
				}
			}
		}()
	}
	wg.Wait()
	m := collectHistogram(t, h)
	if m.GetSampleCount() != 8000 {
		t.Errorf("count %d, want 8000", m.GetSampleCount())
	}
	if want := 8 * 499500e-6; math.Abs(m.GetSampleSum()-want) > 1e-9 {
		t.Errorf("sum %v, want %v", m.GetSampleSum(), want)
	}
}

func collectHistogram(t *testing.T, c prometheus.Collector) *dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Histogram == nil {
		t.Fatal("not a histogram")
	}
	return m.Histogram
}
