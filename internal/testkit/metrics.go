package testkit

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of a /metrics page: histograms and summaries are
// flattened as in the text format (name_bucket with le, name_sum,
// name_count).
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Samples is a parsed /metrics page.
type Samples []Sample

// Match returns the samples of name whose labels include every given pair
// (labels is key, value, key, value...).
func (ss Samples) Match(name string, labels ...string) Samples {
	var out Samples
	for _, s := range ss {
		if s.Name == name && s.has(labels) {
			out = append(out, s)
		}
	}
	return out
}

// Sum adds up the samples Match returns; 0 when there are none.
func (ss Samples) Sum(name string, labels ...string) float64 {
	total := 0.0
	for _, s := range ss.Match(name, labels...) {
		total += s.Value
	}
	return total
}

// Get returns the value of the one sample of name with the given labels,
// and false when there is not exactly one.
func (ss Samples) Get(name string, labels ...string) (float64, bool) {
	m := ss.Match(name, labels...)
	if len(m) != 1 {
		return 0, false
	}
	return m[0].Value, true
}

// PerWorker maps the worker label to the value of the samples of name with
// the given labels, summed per worker.
func (ss Samples) PerWorker(name string, labels ...string) map[int]float64 {
	out := map[int]float64{}
	for _, s := range ss.Match(name, labels...) {
		if w, err := strconv.Atoi(s.Labels["worker"]); err == nil {
			out[w] += s.Value
		}
	}
	return out
}

func (s Sample) has(labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if v, ok := s.Labels[labels[i]]; !ok || v != labels[i+1] {
			return false
		}
	}
	return true
}

// String prints the sample as a line of the text format.
func (s Sample) String() string {
	var b strings.Builder
	b.WriteString(s.Name)
	if len(s.Labels) > 0 {
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(s.Labels)) {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", k, s.Labels[k])
		}
		b.WriteByte('}')
	}
	fmt.Fprintf(&b, " %g", s.Value)
	return b.String()
}

// metricsHTTP reads metrics pages. A read is one attempt whose failure
// fails the test, not a poll, so it waits longer than the readiness
// probes' 2 s: past the gateway supervisor's own bound on a worker's
// registry (metrics.ScrapeTimeout, 3 s), which a busy worker on a loaded
// box can approach while the supervisor still answers in full.
var metricsHTTP = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// ReadMetrics fetches and parses a Prometheus text page.
func ReadMetrics(url string) (Samples, error) {
	resp, err := metricsHTTP.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	var out Samples
	for _, f := range fams {
		out = append(out, flatten(f)...)
	}
	return out, nil
}

// MustReadMetrics is ReadMetrics that fails the test on an error.
func MustReadMetrics(t testing.TB, url string) Samples {
	t.Helper()
	ss, err := ReadMetrics(url)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func flatten(f *dto.MetricFamily) Samples {
	var out Samples
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		add := func(name string, v float64, extra ...string) {
			ls := maps.Clone(labels)
			for i := 0; i+1 < len(extra); i += 2 {
				ls[extra[i]] = extra[i+1]
			}
			out = append(out, Sample{Name: name, Labels: ls, Value: v})
		}
		switch {
		case m.Counter != nil:
			add(f.GetName(), m.Counter.GetValue())
		case m.Gauge != nil:
			add(f.GetName(), m.Gauge.GetValue())
		case m.Untyped != nil:
			add(f.GetName(), m.Untyped.GetValue())
		case m.Histogram != nil:
			h := m.Histogram
			for _, b := range h.Bucket {
				add(f.GetName()+"_bucket", float64(b.GetCumulativeCount()), "le", formatLe(b.GetUpperBound()))
			}
			if n := len(h.Bucket); n == 0 || !math.IsInf(h.Bucket[n-1].GetUpperBound(), 1) {
				add(f.GetName()+"_bucket", float64(h.GetSampleCount()), "le", "+Inf")
			}
			add(f.GetName()+"_sum", h.GetSampleSum())
			add(f.GetName()+"_count", float64(h.GetSampleCount()))
		case m.Summary != nil:
			s := m.Summary
			for _, q := range s.Quantile {
				add(f.GetName(), q.GetValue(), "quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64))
			}
			add(f.GetName()+"_sum", s.GetSampleSum())
			add(f.GetName()+"_count", float64(s.GetSampleCount()))
		}
	}
	return out
}

func formatLe(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
