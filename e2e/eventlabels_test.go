package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestInventedEventNamesDoNotBecomeLabels shows a finding of the admin
// review (failing until fixed): gateway/internal/metrics says an event name
// becomes a label of switchboard_gateway_envelopes_received_total only once
// handlers-svc answers it with something other than unknown_event, "so
// clients cannot grow the set by inventing names". But handlers-svc answers
// some requests before it looks the event up: an idem already used for
// another request gets bad_request ("idem was used for another request")
// whatever the event. So a client that sends invented names with a reused
// idem has each confirmed, and can take the worker's MaxEvents (128)
// label slots, after which the real events count as _other.
func TestInventedEventNamesDoNotBecomeLabels(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1})
	c := s.DialOn("mallory", 0)
	send := func(event, ref string) proto.Frame {
		t.Helper()
		frame, _ := json.Marshal(map[string]any{"event": event, "ref": ref, "idem": "reused-key", "args": map[string]any{}})
		c.SendRaw(websocket.TextMessage, frame)
		return c.ExpectRef(wait, ref)
	}
	send("inventedFirst", "r0") // unknown_event: the key is now taken by this request
	const invented = 5
	for i := range invented {
		f := send(fmt.Sprintf("invented%d", i), fmt.Sprintf("r%d", i+1))
		if f.Event != proto.EventError {
			t.Fatalf("invented%d answered %s %s, want an error", i, f.Event, f.Args)
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
