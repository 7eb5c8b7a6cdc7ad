package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestHostileFrames sends every kind of bad frame the issue lists, each on
// a fresh socket so they spread over both workers, at the default limits.
// Each gets the contract's answer (an error frame with the right code and
// ref, an ack where the frame is in fact valid, or the close code), a
// socket answered with an error frame stays usable, and no worker crashes.
func TestHostileFrames(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	pids := s.WorkerPids()
	const maxFrame = 65536 // the default GATEWAY_MAX_FRAME

	deep := func(n int, open, close string) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	// sized returns a valid sendMessage frame of exactly size bytes.
	sized := func(size int) string {
		head := `{"event":"sendMessage","ref":"big","args":{"text":"big"},"pad":"`
		return head + strings.Repeat("x", size-len(head)-2) + `"}`
	}
	const ack proto.Code = "ack"
	cases := []struct {
		name  string
		mt    int
		frame string
		want  proto.Code // an error code, "ack", or "" when close is set
		ref   string     // the ref the answer must carry ("" = none)
		close int        // the close code expected instead of an answer
	}{
		// Not UTF-8, not JSON, not an object.
		{name: "invalid UTF-8 in a string", frame: "{\"event\":\"sendMessage\",\"args\":{\"text\":\"\xc3\x28\"}}", close: 1007},
		{name: "invalid UTF-8 in a key", frame: "{\"\xff\":1,\"event\":\"sendMessage\"}", close: 1007},
		{name: "truncated UTF-8 at the end", frame: "{\"event\":\"sendMessage\"}\xe2\x82", close: 1007},
		{name: "empty frame", frame: "", want: proto.CodeBadRequest},
		{name: "whitespace only", frame: " \n\t ", want: proto.CodeBadRequest},
		{name: "two objects", frame: `{"event":"a"}{"event":"b"}`, want: proto.CodeBadRequest},
		{name: "trailing comma", frame: `{"event":"sendMessage",}`, want: proto.CodeBadRequest},
		{name: "string", frame: `"sendMessage"`, want: proto.CodeBadRequest},
		{name: "number", frame: `12`, want: proto.CodeBadRequest},
		{name: "null", frame: `null`, want: proto.CodeBadRequest},
		{name: "binary frame", mt: websocket.BinaryMessage, frame: `{"event":"sendMessage","ref":"x"}`, want: proto.CodeBadRequest},
		{name: "binary garbage", mt: websocket.BinaryMessage, frame: "\x00\xff\xfe", want: proto.CodeBadRequest},
		// Nesting.
		{name: "deep nesting beyond the JSON decoder's limit", frame: `{"event":"sendMessage","ref":"n1","args":` + deep(20000, "[", "]") + `}`, want: proto.CodeBadRequest, ref: "n1"},
		{name: "deep nesting in args", frame: `{"event":"sendMessage","ref":"n2","args":{"text":` + deep(5000, "[", "]") + `}}`, want: proto.CodeBadRequest, ref: "n2"},
		{name: "deep objects in args", frame: `{"event":"sendMessage","ref":"n3","args":` + strings.Repeat(`{"a":`, 3000) + "1" + strings.Repeat("}", 3000) + `}`, want: proto.CodeBadRequest, ref: "n3"},
		// Huge numbers.
		{name: "huge number as text", frame: `{"event":"sendMessage","ref":"h1","args":{"text":1e999999}}`, want: proto.CodeBadRequest, ref: "h1"},
		{name: "huge integer as to", frame: `{"event":"sendMessage","ref":"h2","args":{"text":"x","to":123456789012345678901234567890}}`, want: proto.CodeBadRequest, ref: "h2"},
		{name: "huge number as ref", frame: `{"event":"sendMessage","ref":1e400}`, want: proto.CodeBadRequest},
		{name: "huge number as event", frame: `{"event":-1e400,"ref":"h3"}`, want: proto.CodeBadRequest, ref: "h3"},
		{name: "huge number in an ignored field", frame: `{"event":"sendMessage","ref":"h4","args":{"text":"ok"},"x":1e999999}`, want: ack, ref: "h4"},
		// Duplicate keys: the last one wins, as with encoding/json.
		{name: "duplicate event, last valid", frame: `{"event":"no such!","event":"sendMessage","args":{"text":"d"},"ref":"d1"}`, want: ack, ref: "d1"},
		{name: "duplicate event, last invalid", frame: `{"event":"sendMessage","event":"9x","ref":"d2"}`, want: proto.CodeBadRequest, ref: "d2"},
		{name: "duplicate ref", frame: `{"event":"sendMessage","args":{"text":"d"},"ref":"first","ref":"d3"}`, want: ack, ref: "d3"},
		{name: "duplicate args", frame: `{"event":"sendMessage","args":{"text":"d"},"args":{"text":""},"ref":"d4"}`, want: proto.CodeBadRequest, ref: "d4"},
		// null everywhere.
		{name: "null args", frame: `{"event":"sendMessage","args":null,"ref":"z1"}`, want: proto.CodeBadRequest, ref: "z1"},
		{name: "null args to postUpdated", frame: `{"event":"postUpdated","args":null,"ref":"z2"}`, want: proto.CodeBadRequest, ref: "z2"},
		{name: "null event", frame: `{"event":null,"ref":"z3"}`, want: proto.CodeBadRequest, ref: "z3"},
		{name: "null ref is no ref", frame: `{"event":"nope","ref":null}`, want: proto.CodeUnknownEvent},
		{name: "null text", frame: `{"event":"sendMessage","args":{"text":null},"ref":"z4"}`, want: proto.CodeBadRequest, ref: "z4"},
		// Wrong types for every field of the envelope.
		{name: "event a number", frame: `{"event":7,"ref":"w1"}`, want: proto.CodeBadRequest, ref: "w1"},
		{name: "event an object", frame: `{"event":{"name":"sendMessage"},"ref":"w2"}`, want: proto.CodeBadRequest, ref: "w2"},
		{name: "event an array", frame: `{"event":["sendMessage"],"ref":"w3"}`, want: proto.CodeBadRequest, ref: "w3"},
		{name: "event a boolean", frame: `{"event":true,"ref":"w4"}`, want: proto.CodeBadRequest, ref: "w4"},
		{name: "ref a number", frame: `{"event":"sendMessage","args":{"text":"x"},"ref":5}`, want: proto.CodeBadRequest},
		{name: "ref an object", frame: `{"event":"sendMessage","args":{"text":"x"},"ref":{}}`, want: proto.CodeBadRequest},
		{name: "ref an array", frame: `{"event":"sendMessage","args":{"text":"x"},"ref":["a"]}`, want: proto.CodeBadRequest},
		{name: "ref a boolean", frame: `{"event":"sendMessage","args":{"text":"x"},"ref":false}`, want: proto.CodeBadRequest},
		{name: "args a string", frame: `{"event":"sendMessage","args":"hi","ref":"w5"}`, want: proto.CodeBadRequest, ref: "w5"},
		{name: "args a number", frame: `{"event":"sendMessage","args":1,"ref":"w6"}`, want: proto.CodeBadRequest, ref: "w6"},
		{name: "args an array", frame: `{"event":"sendMessage","args":["hi"],"ref":"w7"}`, want: proto.CodeBadRequest, ref: "w7"},
		{name: "args a boolean", frame: `{"event":"sendMessage","args":true,"ref":"w8"}`, want: proto.CodeBadRequest, ref: "w8"},
		// Wrong types for every field of the built-in handlers' args.
		{name: "text a number", frame: `{"event":"sendMessage","args":{"text":1},"ref":"a1"}`, want: proto.CodeBadRequest, ref: "a1"},
		{name: "text an object", frame: `{"event":"sendMessage","args":{"text":{}},"ref":"a2"}`, want: proto.CodeBadRequest, ref: "a2"},
		{name: "to a number", frame: `{"event":"sendMessage","args":{"text":"x","to":1},"ref":"a3"}`, want: proto.CodeBadRequest, ref: "a3"},
		{name: "to an array", frame: `{"event":"sendMessage","args":{"text":"x","to":["bob"]},"ref":"a4"}`, want: proto.CodeBadRequest, ref: "a4"},
		{name: "post a number", frame: `{"event":"postUpdated","args":{"post":1,"mentions":["bob"]},"ref":"a5"}`, want: proto.CodeBadRequest, ref: "a5"},
		{name: "mentions a string", frame: `{"event":"postUpdated","args":{"post":"p","mentions":"bob"},"ref":"a6"}`, want: proto.CodeBadRequest, ref: "a6"},
		{name: "mentions of numbers", frame: `{"event":"postUpdated","args":{"post":"p","mentions":[1,2]},"ref":"a7"}`, want: proto.CodeBadRequest, ref: "a7"},
		// Control characters and other oddities in event names.
		{name: "NUL in event", frame: `{"event":"send\u0000Message","ref":"c1"}`, want: proto.CodeBadRequest, ref: "c1"},
		{name: "escaped newline in event", frame: `{"event":"sendMessage\n","ref":"c2"}`, want: proto.CodeBadRequest, ref: "c2"},
		{name: "raw newline in event", frame: "{\"event\":\"send\nMessage\",\"ref\":\"c3\"}", want: proto.CodeBadRequest},
		{name: "raw tab in event", frame: "{\"event\":\"send\tMessage\",\"ref\":\"c4\"}", want: proto.CodeBadRequest},
		{name: "DEL in event", frame: "{\"event\":\"send\x7fMessage\",\"ref\":\"c5\"}", want: proto.CodeBadRequest, ref: "c5"},
		{name: "escape spelling a valid name", frame: `{"event":"send\u004dessage","args":{"text":"e"},"ref":"c6"}`, want: ack, ref: "c6"},
		{name: "NATS wildcard in event", frame: `{"event":"a.>","ref":"c7"}`, want: proto.CodeBadRequest, ref: "c7"},
		{name: "NATS token wildcard in event", frame: `{"event":"*","ref":"c8"}`, want: proto.CodeBadRequest, ref: "c8"},
		{name: "event of 65 characters", frame: `{"event":"` + strings.Repeat("a", 65) + `","ref":"c9"}`, want: proto.CodeBadRequest, ref: "c9"},
		{name: "non-ASCII event", frame: `{"event":"sendMessagé","ref":"c10"}`, want: proto.CodeBadRequest, ref: "c10"},
		{name: "empty event", frame: `{"event":"","ref":"c11"}`, want: proto.CodeBadRequest, ref: "c11"},
		// Size.
		{name: "exactly the max frame", frame: sized(maxFrame), want: ack, ref: "big"},
		{name: "one byte over the max frame", frame: sized(maxFrame + 1), close: 1009},
		{name: "ref of 64 characters", frame: `{"event":"sendMessage","args":{"text":"r"},"ref":"` + strings.Repeat("é", 64) + `"}`, want: ack, ref: strings.Repeat("é", 64)},
		{name: "ref of 65 characters", frame: `{"event":"sendMessage","ref":"` + strings.Repeat("r", 65) + `"}`, want: proto.CodeBadRequest},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.Dial(fmt.Sprintf("hostile%d", i))
			mt := tc.mt
			if mt == 0 {
				mt = websocket.TextMessage
			}
			c.SendRaw(mt, []byte(tc.frame))
			if tc.close != 0 {
				if code := testkit.CloseCode(c.WaitClosed(wait)); code != tc.close {
					t.Fatalf("closed with %d, want %d", code, tc.close)
				}
				return
			}
			f := c.Expect(wait, "the answer", func(f proto.Frame) bool {
				return f.Event == proto.EventAck || f.Event == proto.EventError
			})
			got := ack
			if f.Event == proto.EventError {
				got = errorCode(f)
			}
			if got != tc.want || f.Ref != tc.ref || f.ID != c.User {
				t.Fatalf("got %s %s ref %q id %q, want %s with ref %q", f.Event, f.Args, f.Ref, f.ID, tc.want, tc.ref)
			}
			// The socket is still usable.
			c.Send("sendMessage", map[string]any{"text": "still here"}, "ok")
			if f := c.ExpectRef(wait, "ok"); f.Event != proto.EventAck {
				t.Fatalf("after the bad frame: got %s %s, want ack", f.Event, f.Args)
			}
		})
	}
	if got := s.WorkerPids(); got[0] != pids[0] || got[1] != pids[1] {
		t.Fatalf("worker pids %v, were %v: a worker crashed", got, pids)
	}
	if s.Gateway.Exited() || s.Handlers.Exited() {
		t.Fatal("a process exited")
	}
}
