package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestInventedEventNamesDoNotBecomeLabels: gateway/internal/metrics
// makes an event name a label of switchboard_gateway_envelopes_received_total
// only once handlers-svc answers it with something other than
// unknown_event, so that clients cannot grow the set by inventing names.
// But handlers-svc answered a request whose idem was already used by
// another request bad_request ("idem was used for another request")
// before it looked the event up, whatever the event: a client sending
// invented names with a reused idem had each confirmed, and could take
// the worker's MaxEvents (128) label slots, after which the real events
// counted as _other. Such replies, given before anything ran, are now
// marked (proto.UnrunHeader), and the gateway confirms no event by them.
func TestInventedEventNamesDoNotBecomeLabels(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1})
	c := s.DialOn("mallory", 0)
	send := func(event, ref string, args map[string]any) proto.Frame {
		t.Helper()
		frame, _ := json.Marshal(map[string]any{"event": event, "ref": ref, "idem": "reused-key", "args": args})
		c.SendRaw(websocket.TextMessage, frame)
		return c.ExpectRef(wait, ref)
	}
	// A real request takes the key.
	if f := send("sendMessage", "r0", map[string]any{"to": "mallory", "text": "hi"}); f.Event != proto.EventAck {
		t.Fatalf("sendMessage answered %s %s, want an ack", f.Event, f.Args)
	}
	const invented = 5
	for i := range invented {
		f := send(fmt.Sprintf("invented%d", i), fmt.Sprintf("r%d", i+1), map[string]any{})
		if f.Event != proto.EventError || !strings.Contains(string(f.Args), "idem was used for another request") {
			t.Fatalf("invented%d answered %s %s, want bad_request for the key", i, f.Event, f.Args)
		}
	}
	m := awaitMetrics(t, s, "the invented envelopes are counted", func(m testkit.Samples) bool {
		return m.Sum("switchboard_gateway_envelopes_received_total") >= invented+1
	})
	for i := range invented {
		name := fmt.Sprintf("invented%d", i)
		if v := m.Sum("switchboard_gateway_envelopes_received_total", "event", name); v != 0 {
			t.Errorf("envelopes_received_total{event=%q} = %g: an invented event name became a label value", name, v)
		}
	}
}
