package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// awaitMetrics polls the gateway's /metrics until cond holds for a page,
// and returns that page. Counters are bumped right after the frame they
// count is queued, so a client may see the frame a moment before.
func awaitMetrics(t *testing.T, s *testkit.Stack, what string, cond func(testkit.Samples) bool) testkit.Samples {
	t.Helper()
	var last testkit.Samples
	testkit.Eventually(t, wait, what, func() bool {
		last = s.Metrics()
		return cond(last)
	})
	return last
}

func perWorkerIs(got map[int]float64, want map[int]float64) bool {
	for w, v := range want {
		if got[w] != v {
			return false
		}
	}
	return true
}

// TestMetricsCoverEveryWorker: the supervisor's /metrics carries the Go,
// process and socket series of each worker, labelled with its index, and
// its own worker_up and restart series.
func TestMetricsCoverEveryWorker(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	a0, a1, b1 := s.DialOn("alice", 0), s.DialOn("alice", 1), s.DialOn("bob", 1)
	_, _, _ = a0, a1, b1

	m := awaitMetrics(t, s, "connections_open is 1 on worker 0 and 2 on worker 1", func(m testkit.Samples) bool {
		return perWorkerIs(m.PerWorker("switchboard_gateway_connections_open"), map[int]float64{0: 1, 1: 2})
	})
	for w := range 2 {
		ws := strconv.Itoa(w)
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "switchboard_gateway_connections_open"} {
			v, ok := m.Get(name, "worker", ws)
			if !ok {
				t.Errorf("no single %s{worker=%q} series", name, ws)
				continue
			}
			if name != "switchboard_gateway_connections_open" && v <= 0 {
				t.Errorf("%s{worker=%q} = %g, want > 0", name, ws, v)
			}
		}
		if v, ok := m.Get("switchboard_gateway_worker_up", "worker", ws); !ok || v != 1 {
			t.Errorf("worker_up{worker=%q} = %g (present %v), want 1", ws, v, ok)
		}
		for _, name := range []string{"switchboard_gateway_nats_connected", "switchboard_gateway_redis_subscribed"} {
			if v, ok := m.Get(name, "worker", ws); !ok || v != 1 {
				t.Errorf("%s{worker=%q} = %g (present %v), want 1", name, ws, v, ok)
			}
		}
	}
	if v, ok := m.Get("switchboard_gateway_worker_restarts_total"); !ok || v != 0 {
		t.Errorf("worker_restarts_total = %g (present %v), want 0", v, ok)
	}
	// No series leaks a user id.
	for _, smp := range m {
		for k, v := range smp.Labels {
			if v == "alice" || v == "bob" {
				t.Errorf("series %s has a user id in label %s", smp, k)
			}
		}
	}
}

// TestMetricsCountTraffic sends known traffic and reads the exact counts
// back: envelopes by event and result, handler round trips, dispatches and
// deliveries per worker, opened and closed sockets by reason.
func TestMetricsCountTraffic(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	alice0, alice1, bob1 := s.DialOn("alice", 0), s.DialOn("alice", 1), s.DialOn("bob", 1)
	before := awaitMetrics(t, s, "the three sockets are counted open", func(m testkit.Samples) bool {
		return perWorkerIs(m.PerWorker("switchboard_gateway_connections_open"), map[int]float64{0: 1, 1: 2})
	})

	const sent = 3
	for i := range sent {
		ref := fmt.Sprintf("m%d", i)
		alice0.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, ref)
		if f := alice0.ExpectRef(wait, ref); f.Event != proto.EventAck {
			t.Fatalf("sendMessage %s: got %s %s", ref, f.Event, f.Args)
		}
	}
	alice0.Send("sendMessage", map[string]any{"to": "bob", "text": ""}, "bad")
	if f := alice0.ExpectRef(wait, "bad"); f.Event != proto.EventError {
		t.Fatalf("empty text: got %s", f.Event)
	}
	alice0.Send("noSuchEvent", nil, "unk")
	if f := alice0.ExpectRef(wait, "unk"); f.Event != proto.EventError {
		t.Fatalf("unknown event: got %s", f.Event)
	}
	alice0.SendRaw(websocket.TextMessage, []byte(`{"event":"sendMessage","ref":"inv"`))
	alice0.Expect(wait, "bad_request for the broken frame", func(f proto.Frame) bool {
		return f.Event == proto.EventError && f.Ref == ""
	})
	// A binary frame is answered by the socket itself, not the forwarder,
	// and is counted all the same.
	alice0.SendRaw(websocket.BinaryMessage, []byte(`{"event":"sendMessage"}`))
	alice0.Expect(wait, "bad_request for the binary frame", func(f proto.Frame) bool {
		return f.Event == proto.EventError && f.Ref == ""
	})
	for range sent {
		bob1.ExpectEvent(wait, "message")
		alice1.ExpectEvent(wait, "message_sent")
	}

	w0 := []string{"worker", "0"}
	w0Dispatches := 2.0
	if testkit.FanoutMode() == "per_user" {
		w0Dispatches = 1
	}
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"switchboard_gateway_envelopes_received_total", append([]string{"event", "sendMessage", "result", "ok"}, w0...), sent},
		{"switchboard_gateway_envelopes_received_total", append([]string{"event", "sendMessage", "result", "bad_request"}, w0...), 1},
		{"switchboard_gateway_envelopes_received_total", append([]string{"event", "_other", "result", "unknown_event"}, w0...), 1},
		{"switchboard_gateway_envelopes_received_total", append([]string{"event", "_invalid", "result", "bad_request"}, w0...), 2},
		// Every reply is timed, whatever its event: 3 acks, the
		// bad_request from the handler and the unknown_event.
		{"switchboard_gateway_handler_duration_seconds_count", w0, sent + 2},
		// Every worker receives both dispatches of each message; in
		// per_user mode worker 0, which holds no socket of bob, only
		// alice's message_sent.
		{"switchboard_gateway_dispatches_total", w0, w0Dispatches * sent},
		{"switchboard_gateway_dispatches_total", []string{"worker", "1"}, 2 * sent},
		// Worker 0 holds alice0 (message_sent); worker 1 holds bob1
		// (message) and alice1 (message_sent).
		{"switchboard_gateway_deliveries_total", w0, sent},
		{"switchboard_gateway_deliveries_total", []string{"worker", "1"}, 2 * sent},
		{"switchboard_gateway_deliveries_dropped_total", nil, 0},
		{"switchboard_gateway_slow_consumer_closes_total", nil, 0},
	}
	m := awaitMetrics(t, s, "every frame is counted", func(m testkit.Samples) bool {
		for _, w := range want {
			if m.Sum(w.name, w.labels...) != w.value {
				return false
			}
		}
		return true
	})
	for _, w := range want {
		if got := m.Sum(w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %g, want %g", w.name, w.labels, got, w.value)
		}
	}
	if n := len(m.Match("switchboard_gateway_envelopes_received_total", "event", "noSuchEvent")); n != 0 {
		t.Errorf("an event without a handler got its own label value (%d series)", n)
	}

	// bob closes normally, alice's worker-0 socket just drops.
	bob1.CloseNormally()
	alice0.Close()
	closed := func(m testkit.Samples, reason string, w int) float64 {
		return m.Sum("switchboard_gateway_connections_closed_total", "reason", reason, "worker", strconv.Itoa(w))
	}
	after := awaitMetrics(t, s, "both closes are counted", func(m testkit.Samples) bool {
		return closed(m, "client", 1) == closed(before, "client", 1)+1 &&
			closed(m, "lost", 0) == closed(before, "lost", 0)+1 &&
			perWorkerIs(m.PerWorker("switchboard_gateway_connections_open"), map[int]float64{0: 0, 1: 1})
	})
	opened := after.Sum("switchboard_gateway_connections_opened_total")
	allClosed := after.Sum("switchboard_gateway_connections_closed_total")
	if open := after.Sum("switchboard_gateway_connections_open"); opened-allClosed != open {
		t.Errorf("opened %g - closed %g = %g, but %g are open", opened, allClosed, opened-allClosed, open)
	}
}

// TestMetricsCountClosesAndLimits drives the socket policies through real
// sockets and reads them back: frames refused by the rate limit and the
// 1008 close that follows, a 1009 close for a frame over the max size, and
// a reader too slow for its queue, closed as a slow consumer after
// deliveries to it were dropped.
func TestMetricsCountClosesAndLimits(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{
		// One token per 100s after a burst of 2: timing cannot refill it.
		"GATEWAY_RATE_LIMIT=0.01", "GATEWAY_RATE_BURST=2", "GATEWAY_RATE_CLOSE_AFTER=3",
		"GATEWAY_MAX_FRAME=1024", "GATEWAY_SEND_QUEUE=16", "GATEWAY_SEND_QUEUE_BYTES=131072", // bytes: config.MinSendQueueBytes at least
	}})

	limited := s.Dial("limited")
	for i := range 5 {
		limited.SendRaw(websocket.TextMessage, []byte(fmt.Sprintf(`{"event":"noSuchEvent","ref":"%d"}`, i)))
	}
	for _, ref := range []string{"2", "3"} {
		f := limited.ExpectRef(wait, ref)
		var e proto.Error
		_ = json.Unmarshal(f.Args, &e)
		if f.Event != proto.EventError || e.Code != proto.CodeRateLimited {
			t.Fatalf("frame %s over the limit: got %s %s, want rate_limited", ref, f.Event, f.Args)
		}
	}
	if code := testkit.CloseCode(limited.WaitClosed(wait)); code != proto.ClosePolicy {
		t.Fatalf("abusive socket closed with %d, want 1008", code)
	}

	big := s.Dial("big")
	big.SendRaw(websocket.TextMessage, []byte(`{"event":"x","args":"`+strings.Repeat("a", 2000)+`"}`))
	if code := testkit.CloseCode(big.WaitClosed(wait)); code != proto.CloseMessageTooBig {
		t.Fatalf("oversized frame closed with %d, want 1009", code)
	}

	// A socket that never reads: dispatches for it are published straight
	// to the Redis channel, as handlers-svc does, until its queue overflows.
	slow, _, err := websocket.DefaultDialer.Dial(s.URL(), http.Header{"Authorization": {"Bearer " + s.Token("slow")}})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	rdb := redis.NewClient(&redis.Options{Addr: s.Redis.Addr()})
	defer rdb.Close()
	payload, _ := json.Marshal(map[string]any{"event": "flood", "args": strings.Repeat("x", 8192), "users": []string{"slow"}})
	closes := func(m testkit.Samples) float64 { return m.Sum("switchboard_gateway_slow_consumer_closes_total") }
	for i := 0; closes(s.Metrics()) == 0; i++ {
		if i == 200 {
			t.Fatal("20000 dispatches of 8 KiB did not overflow a socket that never reads")
		}
		for range 100 {
			if err := rdb.Publish(context.Background(), proto.Channel, payload).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}

	m := awaitMetrics(t, s, "the three closes are counted", func(m testkit.Samples) bool {
		return m.Sum("switchboard_gateway_connections_closed_total", "reason", "rate_limited") == 1 &&
			m.Sum("switchboard_gateway_connections_closed_total", "reason", "message_too_big") == 1 &&
			m.Sum("switchboard_gateway_connections_closed_total", "reason", "slow_consumer") == 1
	})
	if got := m.Sum("switchboard_gateway_rate_limited_total"); got != 3 {
		t.Errorf("rate_limited_total = %g, want 3 refused frames", got)
	}
	if got := closes(m); got != 1 {
		t.Errorf("slow_consumer_closes_total = %g, want 1", got)
	}
	if got := m.Sum("switchboard_gateway_deliveries_dropped_total"); got < 1 {
		t.Errorf("deliveries_dropped_total = %g, want at least the frame that overflowed the queue", got)
	}
	if got := m.Sum("switchboard_gateway_envelopes_received_total", "event", "_other", "result", "unknown_event"); got != 2 {
		t.Errorf("envelopes{_other,unknown_event} = %g, want the 2 frames within the burst", got)
	}
	// The 3 refused frames, the last of which closed the socket, are
	// envelopes too: every client frame is counted once.
	if got := m.Sum("switchboard_gateway_envelopes_received_total", "event", "_other", "result", "rate_limited"); got != 3 {
		t.Errorf("envelopes{_other,rate_limited} = %g, want the 3 frames over the limit", got)
	}
}
