package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestOversizedArgsAttack: the built-ins' args are bounded
// (docs/protocol.md section 5), so one request cannot fan out to thousands
// of users or carry outsized ids: each over-bound request is answered
// bad_request naming the field, and nothing is dispatched; at the bounds
// they are served.
func TestOversizedArgsAttack(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	a, b := s.Dial("alice"), s.Dial("bob")
	many := make([]string, 101)
	for i := range many {
		many[i] = "bob"
	}
	cases := []struct {
		name, event string
		args        any
		field       string
	}{
		{"101 mentions", "postUpdated", map[string]any{"post": "p1", "mentions": many}, "args.mentions"},
		{"post of 129 bytes", "postUpdated", map[string]any{"post": strings.Repeat("p", 129), "mentions": []string{"bob"}}, "args.post"},
		{"mention of 257 bytes", "postUpdated", map[string]any{"post": "p1", "mentions": []string{strings.Repeat("b", 257)}}, "args.mentions[0]"},
		{"to of 257 bytes", "sendMessage", map[string]any{"to": strings.Repeat("b", 257), "text": "hi"}, "args.to"},
	}
	for i, tc := range cases {
		ref := "r" + string(rune('a'+i))
		a.Send(tc.event, tc.args, ref)
		f := a.ExpectRef(wait, ref)
		var e proto.Error
		_ = json.Unmarshal(f.Args, &e)
		if f.Event != proto.EventError || e.Code != proto.CodeBadRequest || !strings.HasPrefix(e.Message, tc.field+" ") {
			t.Errorf("%s: %+v (%+v), want bad_request naming %s", tc.name, f, e, tc.field)
		}
	}
	if f, ok := b.TryExpect(500*time.Millisecond, func(f proto.Frame) bool { return f.Event != proto.EventConnected }); ok {
		t.Errorf("bob got %+v from a refused request", f)
	}
	// At the bounds: served.
	a.Send("postUpdated", map[string]any{"post": strings.Repeat("p", 128), "mentions": many[:100]}, "ok")
	if f := a.ExpectRef(wait, "ok"); f.Event != proto.EventAck {
		t.Fatalf("100 mentions and a 128-byte post: %+v, want an ack", f)
	}
	b.ExpectEvent(wait, "post_updated_notification")
}
