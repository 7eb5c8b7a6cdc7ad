package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestDispatchAPIIdempotencyKey: handlers-svc serves the dispatch API's
// Idempotency-Key (docs/protocol.md section 7): a call retried with the
// same key is answered the first one's positions and reaches the user's
// devices once, and the replay is counted.
func TestDispatchAPIIdempotencyKey(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}})
	bob := s.Dial("bob")
	post := func(body string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+s.HandlersAddr+"/v1/dispatch", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Idempotency-Key", `"order-7"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Idempotent-Replayed")
	}
	body := `{"event":"paid","args":{"order":7},"users":["bob"]}`
	s1, b1, r1 := post(body)
	s2, b2, r2 := post(body)
	if s1 != http.StatusOK || s2 != http.StatusOK || b1 != b2 || r1 != "" || r2 != "true" {
		t.Fatalf("first %d %s (replayed %q), retry %d %s (replayed %q): want the same 200, the retry replayed", s1, b1, r1, s2, b2, r2)
	}
	// The channel is ordered: once a later dispatch has arrived, a second
	// "paid" would have arrived before it.
	if status, b := postDispatch(t, s, apiKey, `{"event":"marker","users":["bob"]}`); status != http.StatusOK {
		t.Fatalf("marker: %d %s", status, b)
	}
	bob.ExpectEvent(wait, "marker")
	n := 0
	for _, f := range bob.Frames() {
		if f.Event == "paid" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("bob got paid %d times, want once", n)
	}
	if got := testkit.MustReadMetrics(t, "http://"+s.HandlersAddr+"/metrics").Sum("switchboard_handlers_dispatch_api_replays_total"); got != 1 {
		t.Fatalf("switchboard_handlers_dispatch_api_replays_total = %v, want 1", got)
	}
}

// TestEmitRepeatedWithIdemRunsOnce: an emit sent again with its idem,
// on another socket of the user on another worker (as a client does
// after losing its socket mid-emit), gets the first one's answer, and
// the handler's message reaches its recipient once (docs/protocol.md
// section 2, "Idempotent emits").
func TestEmitRepeatedWithIdemRunsOnce(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	first, second := s.DialOn("alice", 0), s.DialOn("alice", 1)
	bob := s.Dial("bob")
	send := func(c *testkit.Client, ref, text, idem string) proto.Frame {
		t.Helper()
		env := map[string]any{"event": "sendMessage", "args": map[string]any{"to": "bob", "text": text}, "ref": ref}
		if idem != "" {
			env["idem"] = idem
		}
		frame, _ := json.Marshal(env)
		c.SendRaw(websocket.TextMessage, frame)
		f := c.ExpectRef(wait, ref)
		if f.Event != proto.EventAck {
			t.Fatalf("%s answered %+v (%s), want an ack", ref, f, f.Args)
		}
		return f
	}
	a1 := send(first, "r1", "once", "0f8fad5b-d9cb-469f")
	a2 := send(second, "r2", "once", "0f8fad5b-d9cb-469f")
	if string(a1.Args) != string(a2.Args) || len(a1.Args) == 0 {
		t.Fatalf("first %+v, repeat %+v: want the same ack, the message's id", a1, a2)
	}
	// Another message after it: bob's stream is ordered, so a second
	// "once" would have come before it.
	send(first, "r3", "marker", "")
	bob.Expect(wait, "the marker", func(f proto.Frame) bool { return f.Event == "message" && decodeMessage(t, f).Text == "marker" })
	n := 0
	for _, f := range bob.Frames() {
		if f.Event == "message" && decodeMessage(t, f).Text == "once" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("bob got the message %d times, want once", n)
	}
	if got := testkit.MustReadMetrics(t, "http://"+s.HandlersAddr+"/metrics").Sum("switchboard_handlers_requests_replayed_total"); got != 1 {
		t.Fatalf("switchboard_handlers_requests_replayed_total = %v, want 1", got)
	}
}
