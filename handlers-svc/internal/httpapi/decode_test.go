package httpapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// FuzzDecode checks that the dispatch API's body decoder never panics on
// outside input, that every refusal is a bad_request about the body in
// words for a person (never decoder text), and that a body it accepts and
// Check passes is the Message its exact keys say (encoding/json's reading of
// each, where encoding/json alone would also take "EVENT" for event).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"event":"e","args":{"a":1},"users":["bob"]}`,
		`{"event":"e","rooms":["general"],"conns":["c1"],"broadcast":false}`,
		`{"event":"typing","users":["bob"],"transient":true}`, `{"event":"e","broadcast":true,"transient":1}`,
		`{"event":"e","users":"bob"}`, `{"event":5}`, `[1]`, `null`, `{"args":null}`, `{`, ``,
		`{"event":"e","users":["bob"],"EVENT":"f","Broadcast":true}`, `{"Event":"e","users":["bob"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decode(body)
		if err != nil {
			e, ok := errors.AsType[*event.Error](err)
			if !ok || e.Code != proto.CodeBadRequest || !strings.HasPrefix(e.Message, "body") ||
				strings.Contains(e.Message, "json:") || !utf8.ValidString(e.Message) {
				t.Fatalf("decode(%q) = %v, want a bad_request about the body", body, err)
			}
			return
		}
		if m.Check() != nil {
			return
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(body, &keys); err != nil {
			t.Fatalf("decode(%q) accepted what is no JSON object: %v", body, err)
		}
		var want struct {
			Event     string
			Users     []string
			Broadcast bool
		}
		for k, v := range map[string]any{"event": &want.Event, "users": &want.Users, "broadcast": &want.Broadcast} {
			if raw, ok := keys[k]; ok {
				if err := json.Unmarshal(raw, v); err != nil {
					t.Fatalf("decode(%q) accepted %s: %v", body, k, err)
				}
			}
		}
		if want.Event != m.Event || len(want.Users) != len(m.Users) || want.Broadcast != m.Broadcast {
			t.Fatalf("decode(%q) = %+v, its exact keys say %+v", body, m, want)
		}
	})
}
