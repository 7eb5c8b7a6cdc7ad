package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// TestHandlerServesEverything: /metrics serves the request metrics under
// switchboard_handlers and what the handler families registered.
func TestHandlerServesEverything(t *testing.T) {
	mux := event.NewMux()
	mux.HandleFunc("ok", func(context.Context, *event.Request) error { return nil })
	m := New(mux.Events())
	mux.Use(m.Middleware)
	families := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "team_widgets_total", Help: "Widgets."})
	families.MustRegister(c)
	c.Add(3)
	m.Include(families)
	_ = mux.ServeEvent(context.Background(), eventtest.NewRequest("ok", "u", nil))

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`switchboard_handlers_requests_total{event="ok",result="ok"} 1`,
		`switchboard_handlers_request_duration_seconds_count{event="ok"} 1`,
		`team_widgets_total 3`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
