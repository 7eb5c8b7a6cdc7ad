package proto_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

func TestPeek(t *testing.T) {
	if ev, ref, ok := proto.Peek([]byte(`{"event":"sendMessage","args":{"event":"x"},"ref":"r"}`)); ev != "sendMessage" || ref != "r" || !ok {
		t.Errorf("Peek = %q %q %v", ev, ref, ok)
	}
	for _, in := range []string{`{"event":"a b"}`, `{"event":1}`, `{"args":{"event":"e"}}`, `{"event":"\u0065"}`} {
		want := ""
		if strings.Contains(in, `\u0065`) {
			want = "e"
		}
		if ev, _, _ := proto.Peek([]byte(in)); ev != want {
			t.Errorf("Peek(%s) event = %q, want %q", in, ev, want)
		}
	}
}

func TestPeekRef(t *testing.T) {
	for _, tt := range []struct {
		in   string
		ref  string
		want bool
	}{
		{`{"event":"e","ref":"r1"}`, "r1", true},
		{`{"ref":"a","event":"e","ref":"b"}`, "b", true},
		{`{"event":"e","args":{"ref":"inner"}}`, "", false},
		{`{"event":"e","args":["}",{"x":"\"ref\""}],"ref":"r"}`, "r", true},
		{`{"r\u0065f":"x\n"}`, "x\n", true},
		{`{"ref":null}`, "", false},
		{`{"ref":1}`, "", false},
		{`{"ref":"` + strings.Repeat("é", 65) + `"}`, "", false},
		{`{"ref":"` + strings.Repeat("é", 64) + `"}`, strings.Repeat("é", 64), true},
		{`{"ref":"ok","args":`, "", false}, // cut short
		{`["ref","x"]`, "", false},
		{``, "", false},
		{`{"ref":"a\\"}`, `a\`, true},
		{`{"ref":"a\\\"b"}`, `a\"b`, true},
		{`{"ref":"\ud800"}`, "", false}, // refused by DecodeEnvelope
		{`{"ref":"\ud83d\ude00"}`, "\U0001F600", true},
	} {
		_, ref, ok := proto.Peek([]byte(tt.in))
		if ok != tt.want || ref != tt.ref {
			t.Errorf("Peek(%s) ref = %q, %v; want %q, %v", tt.in, ref, ok, tt.ref, tt.want)
		}
	}
}

// FuzzPeek: Peek never panics, and agrees with DecodeEnvelope on the ref
// of every frame that is valid JSON, and on the event of every valid
// envelope.
func FuzzPeek(f *testing.F) {
	for _, s := range envelopeSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"event":"e","args":["}",{"x":"\"ref\""}],"ref":"r"}`))
	f.Add([]byte(`{"ref":"a\\\"b","args":{"ref":"c"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		event, ref, ok := proto.Peek(data)
		if !json.Valid(data) {
			return
		}
		env, err := proto.DecodeEnvelope(data)
		if ok != env.HasRef || ref != env.Ref {
			t.Fatalf("%q: Peek ref = %q, %v; DecodeEnvelope = %q, %v", data, ref, ok, env.Ref, env.HasRef)
		}
		if err == nil && event != env.Event {
			t.Fatalf("%q: Peek event = %q; DecodeEnvelope = %q", data, event, env.Event)
		}
	})
}

// BenchmarkPeekRef is the answer to a refused frame of the largest args a
// built-in takes (a post mentioning 100 users of 256 bytes), against
// decoding it.
func BenchmarkPeek(b *testing.B) {
	mentions := make([]string, 100)
	for i := range mentions {
		mentions[i] = fmt.Sprintf("%03d", i) + strings.Repeat("m", 253)
	}
	env, _ := json.Marshal(map[string]any{"event": "postUpdated", "args": map[string]any{"post": strings.Repeat("p", 128), "mentions": mentions}, "ref": "r1"})
	b.Run("Peek", func(b *testing.B) {
		b.SetBytes(int64(len(env)))
		for b.Loop() {
			if _, _, ok := proto.Peek(env); !ok {
				b.Fatal("no ref")
			}
		}
	})
	b.Run("DecodeEnvelope", func(b *testing.B) {
		b.SetBytes(int64(len(env)))
		for b.Loop() {
			if e, _ := proto.DecodeEnvelope(env); !e.HasRef {
				b.Fatal("no ref")
			}
		}
	})
}
