package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/testjwt"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestBadFramesGetErrorsAndSocketStaysUsable covers every bad envelope of
// docs/protocol.md section 2 that must be answered, not disconnected.
func TestBadFramesGetErrorsAndSocketStaysUsable(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	c := s.Dial("alice")
	long := strings.Repeat("r", 65)
	cases := []struct {
		name    string
		mt      int
		frame   string
		code    proto.Code
		wantRef string // "" = the error frame must carry no ref
	}{
		{"unknown event", websocket.TextMessage, `{"event":"noSuchEvent","ref":"u1"}`, proto.CodeUnknownEvent, "u1"},
		{"not JSON", websocket.TextMessage, `this is not json`, proto.CodeBadRequest, ""},
		{"not an object", websocket.TextMessage, `["sendMessage"]`, proto.CodeBadRequest, ""},
		{"no event", websocket.TextMessage, `{"args":{},"ref":"b1"}`, proto.CodeBadRequest, "b1"},
		{"bad event name", websocket.TextMessage, `{"event":"9lives","ref":"b2"}`, proto.CodeBadRequest, "b2"},
		{"event with a space", websocket.TextMessage, `{"event":"send message","ref":"b3"}`, proto.CodeBadRequest, "b3"},
		{"ref too long", websocket.TextMessage, `{"event":"sendMessage","ref":"` + long + `"}`, proto.CodeBadRequest, ""},
		{"binary frame", websocket.BinaryMessage, `{"event":"sendMessage"}`, proto.CodeBadRequest, ""},
		{"args rejected by handler", websocket.TextMessage, `{"event":"sendMessage","args":{"to":"bob"},"ref":"b4"}`, proto.CodeBadRequest, "b4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.SendRaw(tc.mt, []byte(tc.frame))
			f := c.ExpectEvent(wait, proto.EventError)
			var e proto.Error
			if err := json.Unmarshal(f.Args, &e); err != nil {
				t.Fatal(err)
			}
			if e.Code != tc.code || e.Message == "" || f.Ref != tc.wantRef || f.ID != "alice" {
				t.Fatalf("got ref %q id %q %+v, want code %s ref %q", f.Ref, f.ID, e, tc.code, tc.wantRef)
			}
			// The socket is still usable.
			c.Send("sendMessage", map[string]any{"text": "still here"}, "ok-"+tc.name)
			if f := c.ExpectRef(wait, "ok-"+tc.name); f.Event != proto.EventAck {
				t.Fatalf("after %s: got %+v, want ack", tc.name, f)
			}
		})
	}
}

// TestRefLoneSurrogateRefused: a ref escaping a lone surrogate ("\ud800",
// what JSON.stringify writes for such a JavaScript string) would decode to
// U+FFFD, a ref the client never sent, so that the client could never
// match the answer. The envelope is refused bad_request without a ref,
// and not run (docs/protocol.md section 2).
func TestRefLoneSurrogateRefused(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1})
	c := s.Dial("alice")
	c.SendRaw(websocket.TextMessage, []byte(`{"event":"sendMessage","args":{"text":"surrogate ref"},"ref":"\ud800"}`))
	f := c.Expect(wait, "an ack or error", func(f proto.Frame) bool {
		return f.Event == proto.EventAck || f.Event == proto.EventError
	})
	var e proto.Error
	_ = json.Unmarshal(f.Args, &e)
	if f.Event != proto.EventError || e.Code != proto.CodeBadRequest || !strings.Contains(e.Message, "ref") || f.Ref != "" {
		t.Fatalf("answer %+v (%+v) to a ref \\ud800: want bad_request about the ref, without a ref", f, e)
	}
	// Not run: a later envelope's message_sent arrives, the refused one's
	// never does.
	c.Send("sendMessage", map[string]any{"text": "after"}, "after")
	if f := c.ExpectRef(wait, "after"); f.Event != proto.EventAck {
		t.Fatalf("after the refusal: %+v, want ack", f)
	}
	c.Expect(wait, "message_sent of after", func(f proto.Frame) bool {
		return f.Event == "message_sent" && strings.Contains(string(f.Args), `"text":"after"`)
	})
	for _, f := range c.Frames() {
		if strings.Contains(string(f.Args), "surrogate ref") {
			t.Fatalf("the refused envelope ran: %+v", f)
		}
	}
}

// TestDeepArgsNamedWithRef: args nested deeper than the gateway reads
// (docs/protocol.md section 2: 9,999 levels) are JSON all the same: the
// answer names the limit and carries the envelope's ref, and no handler
// runs (an unknown event would otherwise get unknown_event).
func TestDeepArgsNamedWithRef(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1})
	c := s.Dial("alice")
	const depth = 10001
	env := `{"event":"noSuchHandler","args":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `,"ref":"deep"}`
	if len(env) > 65536 {
		t.Fatal("the envelope is over the default max frame")
	}
	c.SendRaw(websocket.TextMessage, []byte(env))
	f := c.ExpectRef(wait, "deep")
	var e proto.Error
	_ = json.Unmarshal(f.Args, &e)
	if f.Event != proto.EventError || e.Code != proto.CodeBadRequest || e.Message != "args are nested deeper than 9999 levels" {
		t.Fatalf("answer %+v (%+v) to args %d levels deep: want bad_request naming the depth", f, e, depth)
	}
	// At the limit the envelope goes to its handler.
	ok := `{"event":"noSuchHandler","args":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `,"ref":"limit"}`
	c.SendRaw(websocket.TextMessage, []byte(ok))
	f = c.ExpectRef(wait, "limit")
	e = proto.Error{}
	_ = json.Unmarshal(f.Args, &e)
	if e.Code != proto.CodeUnknownEvent {
		t.Fatalf("answer %+v (%+v) to args 9999 levels deep: want unknown_event", f, e)
	}
}

// TestOversizedFrameCloses1009: one byte over the max frame closes with 1009;
// exactly the max is answered normally.
func TestOversizedFrameCloses1009(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{"GATEWAY_MAX_FRAME=4096"}})
	c := s.Dial("alice")
	frame := func(size int) []byte {
		// Padding in an unknown field, which the gateway ignores.
		head := `{"event":"sendMessage","ref":"big","args":{"text":"big"},"pad":"`
		tail := `"}`
		return []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
	}
	c.SendRaw(websocket.TextMessage, frame(4096))
	if f := c.ExpectRef(wait, "big"); f.Event != proto.EventAck {
		t.Fatalf("a frame of exactly the max: got %+v, want ack", f)
	}
	c.SendRaw(websocket.TextMessage, frame(4097))
	if code := testkit.CloseCode(c.WaitClosed(wait)); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

// TestInvalidUTF8Closes1007 sends a text frame that is not UTF-8.
func TestInvalidUTF8Closes1007(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	c := s.Dial("alice")
	c.SendRaw(websocket.TextMessage, []byte("{\"event\":\"sendMessage\",\"args\":{\"text\":\"\xff\xfe\"}}"))
	if code := testkit.CloseCode(c.WaitClosed(wait)); code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("close code %d, want 1007", code)
	}
}

// TestUnauthorizedUpgrades: no token, a bad signature and an expired token
// each get HTTP 401 with the JSON error body.
func TestUnauthorizedUpgrades(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	wrongSecret, _ := testjwt.Mint("not-the-secret", "mallory", time.Hour)
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)),
	}).SignedString([]byte(testkit.Secret))
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString([]byte(testkit.Secret))
	cases := []struct {
		name, url string
		header    http.Header
	}{
		{"no token", s.URL(), nil},
		{"bad signature", s.URL(), http.Header{"Authorization": {"Bearer " + wrongSecret}}},
		{"bad signature in query", s.URL() + "?token=" + wrongSecret, nil},
		{"expired", s.URL(), http.Header{"Authorization": {"Bearer " + expired}}},
		{"no sub", s.URL() + "?token=" + noSub, nil},
		{"garbage", s.URL(), http.Header{"Authorization": {"Bearer not.a.jwt"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := websocket.DefaultDialer.Dial(tc.url, tc.header)
			if err == nil {
				t.Fatal("upgrade succeeded")
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("response %v, want 401", resp)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			body, _ := io.ReadAll(resp.Body)
			var e struct{ Error proto.Error }
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != proto.CodeUnauthorized || e.Error.Message == "" {
				t.Fatalf("body %s", body)
			}
		})
	}
	// A token in the query parameter works for browsers.
	ok := testkit.Dial(t, s.URL()+"?token="+s.Token("alice"), "")
	if ok.User != "alice" {
		t.Fatalf("user %q", ok.User)
	}
}

// TestRateLimit: over its allowance a socket gets rate_limited errors with
// its ref; one that keeps sending is closed with 1008 and a reason.
func TestRateLimit(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, Env: []string{
		"GATEWAY_RATE_LIMIT=2", "GATEWAY_RATE_BURST=5", "GATEWAY_RATE_CLOSE_AFTER=20",
	}})
	c := s.Dial("alice")
	for i := range 10 {
		c.Send("sendMessage", map[string]any{"text": "spam"}, fmt.Sprintf("s%d", i))
	}
	acks, limited := 0, 0
	for i := range 10 {
		f := c.ExpectRef(wait, fmt.Sprintf("s%d", i))
		switch {
		case f.Event == proto.EventAck:
			acks++
		case f.Event == proto.EventError && strings.Contains(string(f.Args), string(proto.CodeRateLimited)):
			limited++
		default:
			t.Fatalf("s%d: got %s %s", i, f.Event, f.Args)
		}
	}
	// The burst of 5, plus at most one token refilled at 2/s meanwhile.
	if acks < 5 || acks > 6 || limited != 10-acks {
		t.Fatalf("%d acks and %d rate_limited for 10 envelopes, want 5-6 acks and the rest limited", acks, limited)
	}
	for i := range 30 {
		if c.TrySend("sendMessage", map[string]any{"text": "spam"}, fmt.Sprintf("t%d", i)) != nil {
			break // closed already
		}
	}
	err := c.WaitClosed(wait)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != proto.ReasonRateLimited {
		t.Fatalf("close: %v, want 1008 %q", err, proto.ReasonRateLimited)
	}
	// Other users are untouched.
	b := s.Dial("bob")
	b.Send("sendMessage", map[string]any{"text": "hello"}, "b1")
	if f := b.ExpectRef(wait, "b1"); f.Event != proto.EventAck {
		t.Fatalf("bob got %+v", f)
	}
}
