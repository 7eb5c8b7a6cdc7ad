package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCloseReason(t *testing.T) {
	g, cl, n := ws.ByGateway, ws.ByClient, ws.ByNetwork
	tests := []struct {
		by     ws.Closer
		code   int
		reason string
		want   string
	}{
		{cl, 1000, "closed by client", ReasonClient},
		{cl, 1001, "closed by client", ReasonClient},
		{n, 1006, "closed by client", ReasonLost}, // an EOF within a frame
		{n, 1006, "connection lost", ReasonLost},
		{g, 1001, "ping timeout", ReasonPingTimeout},
		{g, 1006, "write failed", ReasonWriteFailed},
		{g, proto.ClosePolicy, proto.ReasonSlowConsumer, ReasonSlowConsumer},
		{g, proto.ClosePolicy, proto.ReasonRateLimited, ReasonRateLimited},
		{g, proto.CloseMessageTooBig, "message too big", ReasonTooBig},
		{g, proto.CloseInvalidData, "text frame is not valid UTF-8", ReasonInvalidUTF8},
		{g, proto.CloseGoingAway, "gateway shutting down", ReasonShutdown},
		{g, proto.CloseInternalError, "internal error", ReasonInternalError},
		{g, proto.CloseDisconnected, "banned", ReasonDisconnected},
		{g, proto.CloseDisconnected, "ping timeout", ReasonDisconnected}, // a backend's reason
		// A backend's reason that reads as the gateway's text for the
		// client's close or a lost connection.
		{g, proto.CloseDisconnected, "closed by client", ReasonDisconnected},
		{g, proto.CloseReconnect, "connection lost", ReasonReconnectRequested},
		{cl, proto.CloseDisconnected, "closed by client", ReasonClient}, // the client's own close with the code
		{g, proto.CloseReconnect, proto.ReasonReconnect, ReasonReconnectRequested},
		{g, 0, "", ReasonOther},
		{g, 4000, "something new", ReasonOther},
		{ws.ByNone, 0, "", ReasonOther},
	}
	for _, tt := range tests {
		if got := CloseReason(tt.by, tt.code, tt.reason); got != tt.want {
			t.Errorf("CloseReason(%d, %d, %q) = %q, want %q", tt.by, tt.code, tt.reason, got, tt.want)
		}
	}
}

func envelopes(t *testing.T, m *Worker, event, result string) float64 {
	t.Helper()
	return testutil.ToFloat64(m.envelopes.WithLabelValues(event, result))
}

// TestEnvelopeLabels: an event gets its own label only once a handler has
// answered it with something other than unknown_event; invented names, and
// names past MaxEvents, count as _other; broken frames as _invalid.
func TestEnvelopeLabels(t *testing.T) {
	m := NewWorker()
	m.Envelope("typo", proto.CodeUnknownEvent, time.Millisecond, true)
	m.Envelope("sendMessage", proto.CodeUnavailable, 0, false) // no reply: not confirmed
	m.Envelope("sendMessage", "", time.Millisecond, true)      // confirmed
	m.Envelope("sendMessage", "", time.Millisecond, true)
	m.Envelope("sendMessage", proto.CodeTimeout, 0, false)
	m.Envelope("sendMessage", "custom_code", time.Millisecond, true)
	m.Envelope("", proto.CodeBadRequest, 0, false)

	checks := []struct {
		event, result string
		want          float64
	}{
		{EventOther, string(proto.CodeUnknownEvent), 1},
		{EventOther, string(proto.CodeUnavailable), 1},
		{"sendMessage", "ok", 2},
		{"sendMessage", string(proto.CodeTimeout), 1},
		{"sendMessage", "other", 1},
		{EventInvalid, string(proto.CodeBadRequest), 1},
	}
	for _, c := range checks {
		if got := envelopes(t, m, c.event, c.result); got != c.want {
			t.Errorf("envelopes{event=%q,result=%q} = %g, want %g", c.event, c.result, got, c.want)
		}
	}
	// Every code of an error frame is a result of its own, not "other".
	for _, code := range []proto.Code{proto.CodeBadRequest, proto.CodeUnknownEvent, proto.CodeUnavailable,
		proto.CodeTimeout, proto.CodeHandlerError, proto.CodeRateLimited, proto.CodeForbidden} {
		if results[resultIndex(code)] != string(code) {
			t.Errorf("code %q counts as %q", code, results[resultIndex(code)])
		}
	}
	if n := testutil.CollectAndCount(m.envelopes); n != 3*len(results) {
		t.Errorf("%d envelope series, want %d (sendMessage, _other, _invalid)", n, 3*len(results))
	}

	for i := range MaxEvents + 10 {
		m.Envelope(fmt.Sprintf("ev%d", i), "", time.Millisecond, true)
	}
	n := len(*m.events.Load())
	if n != MaxEvents {
		t.Errorf("%d event names labelled, want the cap %d", n, MaxEvents)
	}
	// The round-trip histogram is one series however many events there are.
	if n := testutil.CollectAndCount(m.rtt); n != 1 {
		t.Errorf("%d round-trip histograms, want 1: no event label", n)
	}
	if got := envelopes(t, m, EventOther, "ok"); got != 10+1 {
		t.Errorf("envelopes{_other,ok} = %g, want the 11 events beyond the cap", got)
	}
}

// TestHotPathDoesNotAllocate: recording a frame of a known event and a
// delivery costs no allocation.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := NewWorker()
	m.Envelope("sendMessage", "", time.Millisecond, true)
	if a := testing.AllocsPerRun(1000, func() {
		m.Envelope("sendMessage", "", time.Millisecond, true)
		m.Envelope("sendMessage", proto.CodeBadRequest, time.Millisecond, true)
		m.Envelope("never", proto.CodeUnavailable, 0, false)
		m.Delivered(3, 1)
		m.ConnOpened()
		m.ConnClosed(ws.ByClient, 1000, "closed by client")
	}); a != 0 {
		t.Errorf("%.1f allocations per recorded frame and delivery, want 0", a)
	}
}

// serveWorker serves a Worker registry on its socket in dir, as a worker
// process does.
func serveWorker(t *testing.T, dir string, index int, m *Worker) {
	t.Helper()
	ln, err := net.Listen("unix", SocketPath(dir, index))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

func family(fams []*dto.MetricFamily, name string) *dto.MetricFamily {
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	return nil
}

func labels(m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

// TestAggregatorMergesWorkers runs two worker registries on their sockets
// (a third worker is down) and checks that every series comes back once per
// live worker, labelled, with worker_up telling which were read.
func TestAggregatorMergesWorkers(t *testing.T) {
	dir := t.TempDir()
	w0, w1 := NewWorker(), NewWorker()
	w0.Watch(func() int { return 1 }, func() bool { return true }, func() bool { return true })
	w1.Watch(func() int { return 2 }, func() bool { return true }, func() bool { return false })
	w0.ConnOpened()
	w1.Envelope("sendMessage", "", time.Millisecond, true)
	serveWorker(t, dir, 0, w0)
	serveWorker(t, dir, 1, w1)

	a := NewAggregator(dir, 3)
	t.Cleanup(a.Close)
	fams, err := a.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for name, want := range map[string]map[string]float64{
		"switchboard_gateway_connections_open":         {"worker=0": 1, "worker=1": 2},
		"switchboard_gateway_connections_opened_total": {"worker=0": 1, "worker=1": 0},
		"switchboard_gateway_redis_subscribed":         {"worker=0": 1, "worker=1": 0},
		"switchboard_gateway_worker_up":                {"worker=0": 1, "worker=1": 1, "worker=2": 0},
	} {
		f := family(fams, name)
		if f == nil {
			t.Errorf("no %s", name)
			continue
		}
		got := map[string]float64{}
		for _, m := range f.Metric {
			switch {
			case m.Gauge != nil:
				got[labels(m)] = m.Gauge.GetValue()
			case m.Counter != nil:
				got[labels(m)] = m.Counter.GetValue()
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		f := family(fams, name)
		if f == nil || len(f.Metric) != 2 {
			t.Errorf("%s: want one series per live worker, got %v", name, f)
		}
	}
	// The supervisor's own process, under its own names.
	for _, name := range []string{SupervisorPrefix + "go_goroutines", SupervisorPrefix + "process_resident_memory_bytes"} {
		f := family(fams, name)
		if f == nil || len(f.Metric) != 1 || len(f.Metric[0].Label) != 0 {
			t.Errorf("%s: want one series without labels, got %v", name, f)
		}
	}
	ok := family(fams, "switchboard_gateway_envelopes_received_total")
	found := false
	for _, m := range ok.GetMetric() {
		if labels(m) == "event=sendMessage,result=ok,worker=1" && m.Counter.GetValue() == 1 {
			found = true
		}
	}
	if !found {
		t.Error("no envelopes_received_total{event=sendMessage,result=ok,worker=1} 1")
	}
}

// TestAggregatorFollowsContext: a scrape whose context is done reads no
// worker (a worker that hangs does not hold the scrape for ScrapeTimeout
// after the scraper has gone) and still serves the supervisor's series.
func TestAggregatorFollowsContext(t *testing.T) {
	dir := t.TempDir()
	hung := make(chan struct{})
	ln, err := net.Listen("unix", SocketPath(dir, 0))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hung })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(hung); _ = srv.Close(); <-done })

	a := NewAggregator(dir, 1)
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	fams, err := a.GatherContext(ctx)
	if err != nil {
		t.Fatalf("GatherContext: %v", err)
	}
	if d := time.Since(start); d > ScrapeTimeout/2 {
		t.Errorf("GatherContext took %s after its context ended at 100ms", d)
	}
	up := family(fams, "switchboard_gateway_worker_up")
	if up == nil || len(up.Metric) != 1 || up.Metric[0].Gauge.GetValue() != 0 {
		t.Errorf("worker_up = %v, want 0 for the hung worker", up)
	}
	if family(fams, SupervisorPrefix+"go_goroutines") == nil {
		t.Error("the supervisor's own series are missing")
	}
}

// BenchmarkEnvelope records frames of a confirmed event from every core, as
// the forwarder does.
func BenchmarkEnvelope(b *testing.B) {
	m := NewWorker()
	m.Envelope("sendMessage", "", time.Millisecond, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Envelope("sendMessage", "", time.Millisecond, true)
		}
	})
}

// BenchmarkDelivered records one dispatch's deliveries.
func BenchmarkDelivered(b *testing.B) {
	m := NewWorker()
	b.ReportAllocs()
	for b.Loop() {
		m.Delivered(3, 0)
	}
}
