package service

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// scrape reads GET /metrics of a running app.
func (a *app) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := httpClient.Get(a.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the counter, gauge or histogram count of the series of
// name whose labels are exactly labels; ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsCountRequests serves known requests over real NATS and Redis
// and reads the exact counts back from /metrics: by event and result, with
// invented event names folded into _other.
func TestMetricsCountRequests(t *testing.T) {
	ns := testkit.StartNATS(t)
	rs := testkit.StartRedis(t)
	a := startApp(t, ns.Port, rs.Port)
	a.await(t, "/readyz", http.StatusOK, "")
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	for range 3 {
		if e := request(t, nc, proto.Request{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob","text":"hi"}`), User: "alice", Conn: "c1"}); e != nil {
			t.Fatalf("sendMessage: %+v", e)
		}
	}
	request(t, nc, proto.Request{Event: "postUpdated", Args: json.RawMessage(`{"post":1}`), User: "alice"})
	request(t, nc, proto.Request{Event: "nope", User: "alice"})
	request(t, nc, proto.Request{Event: "alsoNope", User: "alice"})

	fams := a.scrape(t)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"switchboard_handlers_requests_total", map[string]string{"event": "sendMessage", "result": "ok"}, 3},
		{"switchboard_handlers_requests_total", map[string]string{"event": "sendMessage", "result": "bad_request"}, 0},
		{"switchboard_handlers_requests_total", map[string]string{"event": "postUpdated", "result": "bad_request"}, 1},
		{"switchboard_handlers_requests_total", map[string]string{"event": "_other", "result": "unknown_event"}, 2},
		{"switchboard_handlers_request_duration_seconds", map[string]string{"event": "sendMessage"}, 3},
		{"switchboard_handlers_request_duration_seconds", map[string]string{"event": "_other"}, 2},
		{"switchboard_handlers_nats_connected", nil, 1},
		{"switchboard_handlers_redis_connected", nil, 1},
		{"switchboard_handlers_ready", nil, 1},
	} {
		got, ok := value(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %g (present %v), want %g", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(fams, "switchboard_handlers_requests_total", map[string]string{"event": "nope", "result": "unknown_event"}); ok {
		t.Error("an invented event name became a label value")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if v, ok := value(fams, name, nil); !ok || v <= 0 {
			t.Errorf("%s = %g (present %v), want > 0", name, v, ok)
		}
	}
}
