package readiness_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/readiness"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name     string
		body     readiness.Body
		wantCode int
		wantJSON string
	}{
		{"ready", readiness.New(), http.StatusOK,
			`{"status":"ready","reasons":[]}`},
		{"unavailable", readiness.New("nats not connected", "redis not answering"), http.StatusServiceUnavailable,
			`{"status":"unavailable","reasons":["nats not connected","redis not answering"]}`},
		{"worker 0 ready", readiness.New().OfWorker(0), http.StatusOK,
			`{"status":"ready","reasons":[],"worker":0}`},
		{"worker 3 starting", readiness.New("starting").OfWorker(3), http.StatusServiceUnavailable,
			`{"status":"unavailable","reasons":["starting"],"worker":3}`},
		{"supervisor", readiness.Body{
			Status: readiness.StatusUnavailable, Reasons: []string{"worker 1: nats not connected"},
			Workers: []readiness.Body{readiness.New().OfWorker(0), readiness.New("nats not connected").OfWorker(1)},
		}, http.StatusServiceUnavailable,
			`{"status":"unavailable","reasons":["worker 1: nats not connected"],"workers":[` +
				`{"status":"ready","reasons":[],"worker":0},{"status":"unavailable","reasons":["nats not connected"],"worker":1}]}`},
		{"nil reasons are written as a list", readiness.Body{Status: readiness.StatusReady}, http.StatusOK,
			`{"status":"ready","reasons":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			readiness.Write(rec, tt.body)
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d", rec.Code, tt.wantCode)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tt.wantJSON {
				t.Errorf("body\n%s\nwant\n%s", got, tt.wantJSON)
			}
			h := rec.Header()
			if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v, want JSON and no-store", h)
			}
		})
	}
}

// TestRead: what Write wrote reads back; the HTTP status wins over a
// body that disagrees with it, and a body that does not decode is not
// ready.
func TestRead(t *testing.T) {
	tests := []struct {
		name string
		code int
		body string
		want readiness.Body
	}{
		{"ready", 200, `{"status":"ready","reasons":[],"worker":2}`, readiness.New().OfWorker(2)},
		{"unavailable", 503, `{"status":"unavailable","reasons":["redis subscription not live"],"worker":1}`,
			readiness.New("redis subscription not live").OfWorker(1)},
		{"503 claiming ready", 503, `{"status":"ready","reasons":[]}`, readiness.New("HTTP 503")},
		{"200 with reasons", 200, `{"status":"ready","reasons":["odd"]}`, readiness.New("odd")},
		{"200 without status", 200, `{}`, readiness.New("HTTP 200")},
		{"not JSON", 502, `<html>bad gateway</html>`, readiness.New("unreadable answer: HTTP 502")},
		{"empty 200", 200, ``, readiness.New("unreadable answer: HTTP 200")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.code, Body: io.NopCloser(strings.NewReader(tt.body))}
			got := readiness.Read(resp)
			if !reflect.DeepEqual(got, tt.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tt.want)
				t.Errorf("Read = %s, want %s", g, w)
			}
		})
	}
}

// TestRoundTrip: a body written by one process is read by another as it
// was, over real HTTP.
func TestRoundTrip(t *testing.T) {
	for _, b := range []readiness.Body{readiness.New(), readiness.New("shutting down").OfWorker(0)} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { readiness.Write(w, b) }))
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		got := readiness.Read(resp)
		resp.Body.Close()
		srv.Close()
		if !reflect.DeepEqual(got, b) || got.Ready() != (len(b.Reasons) == 0) {
			t.Errorf("round trip of %+v = %+v", b, got)
		}
	}
}
