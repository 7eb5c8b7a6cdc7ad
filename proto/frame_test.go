package proto_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

// stdString returns s encoded by encoding/json, with the two short escapes
// it has written since Go 1.22 (\b and \f) spelled as AppendString spells
// them (\u0008 and \u000c). Both forms are valid JSON and decode the same.
func stdString(t testing.TB, s string) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(%q): %v", s, err)
	}
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			out = append(out, b[i])
			continue
		}
		i++ // every escape is a backslash and one more byte, then maybe hex
		switch b[i] {
		case 'b':
			out = append(out, `\u0008`...)
		case 'f':
			out = append(out, `\u000c`...)
		default:
			out = append(out, '\\', b[i])
		}
	}
	return out
}

// mustMarshal is json.Marshal for values that cannot fail to encode.
func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%#v): %v", v, err)
	}
	return b
}

// appendTo calls f with a non-empty dst and checks that the prefix survives
// and that what was appended is valid JSON; it returns what was appended.
func appendTo(t testing.TB, f func(dst []byte) []byte) []byte {
	t.Helper()
	const prefix = "prefix:"
	out := f([]byte(prefix))
	if !bytes.HasPrefix(out, []byte(prefix)) {
		t.Fatalf("output %q lost the prefix %q", out, prefix)
	}
	out = out[len(prefix):]
	if !json.Valid(out) {
		t.Fatalf("output is not valid JSON: %q", out)
	}
	return out
}

// tricky are strings for the string fields of encoders: all must round-trip.
var tricky = []string{
	"",
	"alice",
	`quote " and backslash \`,
	"newline\n tab\t cr\r nul\x00 unit\x1f del\x7f",
	"<script>&amp;</script>",
	"line\u2028para\u2029",
	"é 日本 😀",
	"\uFFFD",
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the decoded value
	}{
		{"empty", "", ""},
		{"plain", "hello, world", "hello, world"},
		{"quote", `say "hi"`, `say "hi"`},
		{"backslash", `C:\path\`, `C:\path\`},
		{"newline tab cr", "a\nb\tc\rd", "a\nb\tc\rd"},
		{"backspace formfeed", "\b\f", "\b\f"},
		{"all C0 controls", string(c0Controls()), string(c0Controls())},
		{"DEL is not escaped", "\x7f", "\x7f"},
		{"html", "<a href='x'>&</a>", "<a href='x'>&</a>"},
		{"U+2028 U+2029", "\u2028x\u2029", "\u2028x\u2029"},
		{"multi-byte", "é日本😀", "é日本😀"},
		{"U+FFFD itself", "\uFFFD", "\uFFFD"},
		{"invalid byte", "a\xffb", "a\uFFFDb"},
		{"lone continuation", "\x80", "\uFFFD"},
		{"truncated sequence", "a\xe6\x97", "a\uFFFD\uFFFD"},
		{"surrogate encoded in UTF-8", "\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"},
		{"overlong slash", "\xc0\xaf", "\uFFFD\uFFFD"},
		{"beyond U+10FFFF", "\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"mixed", "\"\\\x00<\u2028\xff😀", "\"\\\x00<\u2028\uFFFD😀"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := appendTo(t, func(dst []byte) []byte { return proto.AppendString(dst, tt.in) })
			if want := stdString(t, tt.in); !bytes.Equal(out, want) {
				t.Errorf("AppendString(%q) = %s, encoding/json gives %s", tt.in, out, want)
			}
			var got string
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("decode %s: %v", out, err)
			}
			if got != tt.want {
				t.Errorf("AppendString(%q) decodes to %q, want %q", tt.in, got, tt.want)
			}
			if !utf8.Valid(out) {
				t.Errorf("AppendString(%q) = %q is not valid UTF-8", tt.in, out)
			}
		})
	}
}

func c0Controls() []byte {
	b := make([]byte, 0x20)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// TestAppendStringEveryByte compares AppendString with encoding/json for
// every single byte and every byte between two letters.
func TestAppendStringEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), "a" + string([]byte{byte(c)}) + "b"} {
			if got, want := proto.AppendString(nil, s), stdString(t, s); !bytes.Equal(got, want) {
				t.Errorf("AppendString(%q) = %s, encoding/json gives %s", s, got, want)
			}
		}
	}
}

// TestAppendStringRunes compares AppendString with encoding/json for runes
// in every block boundary region and a stride through all of Unicode.
func TestAppendStringRunes(t *testing.T) {
	var runes []rune
	for r := rune(0); r <= utf8.MaxRune; r += 97 {
		runes = append(runes, r)
	}
	for _, base := range []rune{0, 0x7f, 0x7ff, 0x2028, 0xd7ff, 0xdfff, 0xfffd, 0xffff, 0x10ffff} {
		for r := base - 3; r <= base+3; r++ {
			runes = append(runes, r)
		}
	}
	for _, r := range runes {
		s := string(r) // surrogates and out-of-range runes become U+FFFD
		if got, want := proto.AppendString(nil, s), stdString(t, s); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%U) = %s, encoding/json gives %s", r, got, want)
		}
	}
}

func TestAppendEvent(t *testing.T) {
	args := []json.RawMessage{
		nil,
		json.RawMessage(`{"from":"alice","to":"bob","text":"hi","ts":1764072000123,"msg_id":"m1"}`),
		json.RawMessage(`"text"`),
		json.RawMessage(`123456789012345678901234567890`),
		json.RawMessage(`null`),
		json.RawMessage(`[true,false,{}]`),
	}
	for _, user := range tricky {
		for _, a := range args {
			out := appendTo(t, func(dst []byte) []byte { return proto.AppendEvent(dst, "message", user, a) })
			want := mustMarshal(t, proto.Frame{Event: "message", ID: user, Args: a})
			if !bytes.Equal(out, want) {
				t.Errorf("AppendEvent(message, %q, %s) = %s, want %s", user, a, out, want)
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(out, &keys); err != nil {
				t.Fatal(err)
			}
			if _, ok := keys["args"]; ok != (a != nil) {
				t.Errorf("AppendEvent(%s) = %s: args present %v, want %v", a, out, ok, a != nil)
			}
			if _, ok := keys["ref"]; ok {
				t.Errorf("AppendEvent = %s has a ref", out)
			}
		}
	}
}

// TestAppendEventCopiesArgs checks that args go out byte for byte, even
// formatted ones (encoding/json would compact them).
func TestAppendEventCopiesArgs(t *testing.T) {
	args := json.RawMessage("{ \"a\" : [ 1 ,\n2 ], \"b\":\"<&>\" }")
	out := proto.AppendEvent(nil, "e", "u", args)
	if want := `{"event":"e","id":"u","args":` + string(args) + `}`; string(out) != want {
		t.Errorf("AppendEvent = %s, want %s", out, want)
	}
}

// TestAppendEventEmptyArgs checks that a non-nil but empty args is left out
// like nil, rather than producing `"args":}`.
func TestAppendEventEmptyArgs(t *testing.T) {
	out := proto.AppendEvent(nil, "e", "u", json.RawMessage{})
	if string(out) != `{"event":"e","id":"u"}` {
		t.Errorf("AppendEvent with empty args = %s", out)
	}
}

func TestAppendConnected(t *testing.T) {
	for _, user := range tricky {
		for _, worker := range []int{0, 1, 15, -1, 1 << 40} {
			conn := "c-" + user
			out := appendTo(t, func(dst []byte) []byte { return proto.AppendConnected(dst, user, conn, worker) })
			want := mustMarshal(t, proto.Frame{
				Event: proto.EventConnected,
				ID:    user,
				Args:  mustMarshal(t, proto.Connected{Conn: conn, Worker: worker}),
			})
			if !bytes.Equal(out, want) {
				t.Errorf("AppendConnected(%q, %q, %d) = %s, want %s", user, conn, worker, out, want)
			}
			var f proto.Frame
			var c proto.Connected
			if err := json.Unmarshal(out, &f); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(f.Args, &c); err != nil {
				t.Fatal(err)
			}
			if f.Event != "connected" || f.ID != user || c.Conn != conn || c.Worker != worker {
				t.Errorf("AppendConnected decodes to %+v %+v", f, c)
			}
		}
	}
}

func TestAppendAckResult(t *testing.T) {
	for _, user := range tricky {
		for _, result := range []string{`{"msg_id":"ab","ts":1}`, `[1,2]`, `"s"`, `null`} {
			out := appendTo(t, func(dst []byte) []byte { return proto.AppendAckResult(dst, user, "r1", json.RawMessage(result)) })
			want := mustMarshal(t, proto.Frame{Event: proto.EventAck, ID: user, Ref: "r1", Args: json.RawMessage(result)})
			if !bytes.Equal(out, want) {
				t.Errorf("AppendAckResult(%q, %s) = %s, want %s", user, result, out, want)
			}
		}
		if out, want := proto.AppendAckResult(nil, user, "r1", nil), proto.AppendAck(nil, user, "r1"); !bytes.Equal(out, want) {
			t.Errorf("AppendAckResult without a result = %s, want the plain ack %s", out, want)
		}
	}
}

func TestAppendAck(t *testing.T) {
	for _, user := range tricky {
		for _, ref := range []string{"c1", strings.Repeat("😀", 64), `r"\<`, "r\xff"} {
			out := appendTo(t, func(dst []byte) []byte { return proto.AppendAck(dst, user, ref) })
			want := mustMarshal(t, proto.Frame{Event: proto.EventAck, ID: user, Ref: ref})
			if !bytes.Equal(out, want) {
				t.Errorf("AppendAck(%q, %q) = %s, want %s", user, ref, out, want)
			}
			var f proto.Frame
			if err := json.Unmarshal(out, &f); err != nil {
				t.Fatal(err)
			}
			if f.Event != "ack" || f.ID != user || f.Ref != strings.ToValidUTF8(ref, "\uFFFD") || f.Args != nil {
				t.Errorf("AppendAck(%q, %q) decodes to %+v", user, ref, f)
			}
		}
	}
}

func TestAppendErrorEmptyRef(t *testing.T) {
	e := proto.NewError(proto.CodeBadRequest, "x")
	if out := string(proto.AppendError(nil, "u", "", true, e)); !strings.Contains(out, `"ref":""`) {
		t.Fatalf("AppendError with an empty ref the client sent = %s, want \"ref\":\"\"", out)
	}
	if out := string(proto.AppendError(nil, "u", "", false, e)); strings.Contains(out, `"ref"`) {
		t.Fatalf("AppendError without a ref = %s, want no ref", out)
	}
}

func TestAppendError(t *testing.T) {
	errs := []*proto.Error{
		proto.NewError(proto.CodeBadRequest, "event must match "+proto.EventPattern),
		proto.NewError(proto.CodeTimeout, `the "handler" took > 5s & gave up`),
		proto.NewError(proto.CodeHandlerError, ""),
		{Code: proto.CodeRateLimited, Message: "slow\ndown\u2028"},
	}
	for _, user := range tricky {
		for _, ref := range []string{"", "c1", `r"\`} {
			for _, e := range errs {
				out := appendTo(t, func(dst []byte) []byte { return proto.AppendError(dst, user, ref, ref != "", e) })
				want := mustMarshal(t, proto.Frame{Event: proto.EventError, ID: user, Ref: ref, Args: mustMarshal(t, e)})
				if !bytes.Equal(out, want) {
					t.Errorf("AppendError(%q, %q, %v) = %s, want %s", user, ref, e, out, want)
				}
				var keys map[string]json.RawMessage
				if err := json.Unmarshal(out, &keys); err != nil {
					t.Fatal(err)
				}
				if _, ok := keys["ref"]; ok != (ref != "") {
					t.Errorf("AppendError(ref %q) = %s: ref present %v", ref, out, ok)
				}
				var got proto.Error
				if err := json.Unmarshal(keys["args"], &got); err != nil {
					t.Fatal(err)
				}
				if got != *e {
					t.Errorf("AppendError args decode to %+v, want %+v", got, *e)
				}
			}
		}
	}
}

// TestEncodersDoNotAllocate checks the documented promise that the Append
// functions do not allocate when dst has room.
func TestEncodersDoNotAllocate(t *testing.T) {
	args := json.RawMessage(`{"from":"alice","to":"bob","text":"hi <3 \u00e9","ts":1764072000123}`)
	e := proto.NewError(proto.CodeBadRequest, "event must match "+proto.EventPattern)
	req := &proto.Request{Event: "sendMessage", Args: args, User: "alice", Conn: "c-1", Ref: "r\"1"}
	d := &proto.Dispatch{Event: "message", Args: args, Users: []string{"alice", "bob"}, Conns: []string{"c"}}
	buf := make([]byte, 0, 4096)
	for name, f := range map[string]func(){
		"AppendString":    func() { buf = proto.AppendString(buf[:0], "a\"b\\c\n\u2028\xff😀") },
		"AppendEvent":     func() { buf = proto.AppendEvent(buf[:0], "message", "bob", args) },
		"AppendConnected": func() { buf = proto.AppendConnected(buf[:0], "bob", "c-1", 3) },
		"AppendAck":       func() { buf = proto.AppendAck(buf[:0], "bob", "r1") },
		"AppendError":     func() { buf = proto.AppendError(buf[:0], "bob", "r1", true, e) },
		"AppendRequest":   func() { buf = proto.AppendRequest(buf[:0], req) },
		"AppendReply":     func() { buf = proto.AppendReply(buf[:0], e) },
		"AppendDispatch":  func() { buf = proto.AppendDispatch(buf[:0], d) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

func TestAppendEventAt(t *testing.T) {
	out := proto.AppendEventAt(nil, "message", "bob", json.RawMessage(`{"t":"<x>"}`), proto.KeyPos, []byte("e1.5-2"))
	var f struct {
		Event string          `json:"event"`
		ID    string          `json:"id"`
		Args  json.RawMessage `json:"args"`
		Pos   string          `json:"pos"`
		BPos  string          `json:"bpos"`
	}
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if f.Event != "message" || f.ID != "bob" || string(f.Args) != `{"t":"<x>"}` || f.Pos != "e1.5-2" || f.BPos != "" {
		t.Fatalf("AppendEventAt = %s", out)
	}
	out = proto.AppendEventAt(nil, "news", "bob", nil, proto.KeyBPos, []byte("b.1-1"))
	if string(out) != `{"event":"news","id":"bob","bpos":"b.1-1"}` {
		t.Fatalf("AppendEventAt without args = %s", out)
	}
}

func TestAppendConnectedFrame(t *testing.T) {
	rec, missed := true, 3
	for _, c := range []proto.Connected{
		{Conn: "c1", Worker: 1},
		{Conn: "c1", Worker: 0, Pos: "e.1-1", BPos: "b.2-2"},
		{Conn: "c\"1", Worker: 7, Pos: "e.1-1", BPos: "b.2-2", Recovered: &rec, Missed: &missed},
		{Conn: "c1", Worker: 2, MaxFrame: 65536},
		{Conn: "c1", Worker: 2, Pos: "e.1-1", Recovered: &rec, Missed: &missed, Heartbeat: 25000, MaxFrame: 1 << 40},
	} {
		out := proto.AppendConnectedFrame(nil, "al<ice", &c)
		var f proto.Frame
		if err := json.Unmarshal(out, &f); err != nil || f.Event != "connected" || f.ID != "al<ice" {
			t.Fatalf("%s: %v", out, err)
		}
		var got proto.Connected
		if err := json.Unmarshal(f.Args, &got); err != nil {
			t.Fatal(err)
		}
		if want := mustMarshal(t, &c); string(mustMarshal(t, &got)) != string(want) {
			t.Errorf("AppendConnectedFrame(%+v) args = %s, want %s", c, f.Args, want)
		}
	}
}

// TestAppendHeartbeat: the heartbeat frame is a frame like any other
// (event and the user's id, no args) whose event no app event can have.
func TestAppendHeartbeat(t *testing.T) {
	out := proto.AppendHeartbeat(nil, "al\"ice")
	if want := `{"event":"$ping","id":"al\"ice"}`; string(out) != want {
		t.Fatalf("AppendHeartbeat = %s, want %s", out, want)
	}
	if proto.ValidEventName(proto.EventHeartbeat) {
		t.Fatalf("%q matches %s: an app event could be named like the heartbeat", proto.EventHeartbeat, proto.EventPattern)
	}
}

// TestAppendHeartbeatAt: a heartbeat that carries positions has each one
// given, and no other, under the keys of an event's position, and decodes
// as a Frame; with none it is the plain heartbeat.
func TestAppendHeartbeatAt(t *testing.T) {
	cases := []struct {
		pos, bpos string
		want      string
	}{
		{"e1.17-4", "", `{"event":"$ping","id":"al\"ice","pos":"e1.17-4"}`},
		{"", "b.5-2", `{"event":"$ping","id":"al\"ice","bpos":"b.5-2"}`},
		{"e1.17-4", "b.5-2", `{"event":"$ping","id":"al\"ice","pos":"e1.17-4","bpos":"b.5-2"}`},
		{"", "", `{"event":"$ping","id":"al\"ice"}`},
	}
	for _, c := range cases {
		out := proto.AppendHeartbeatAt([]byte("x"), "al\"ice", []byte(c.pos), []byte(c.bpos))
		if string(out) != "x"+c.want {
			t.Errorf("AppendHeartbeatAt(%q, %q) = %s, want x%s", c.pos, c.bpos, out, c.want)
			continue
		}
		var f proto.Frame
		if err := json.Unmarshal(out[1:], &f); err != nil {
			t.Fatalf("%s: %v", out[1:], err)
		}
		if f.Event != proto.EventHeartbeat || f.ID != "al\"ice" || f.Pos != c.pos || f.BPos != c.bpos || f.Args != nil {
			t.Errorf("%s decodes as %+v", out[1:], f)
		}
	}
}

func TestAppendResync(t *testing.T) {
	for _, r := range []proto.Resync{
		{Pos: "e2.9-0", Reason: "stream lost"},
		{BPos: "b.1-4", Reason: "gap"},
	} {
		out := proto.AppendResync(nil, "bob", &r)
		var f proto.Frame
		if err := json.Unmarshal(out, &f); err != nil || f.Event != proto.EventResync || f.ID != "bob" {
			t.Fatalf("%s: %v", out, err)
		}
		if want := mustMarshal(t, &r); string(f.Args) != string(want) {
			t.Errorf("AppendResync args = %s, want %s", f.Args, want)
		}
	}
}

func TestReserved(t *testing.T) {
	for _, e := range []string{"connected", "ack", "error", "resync"} {
		if !proto.Reserved(e) {
			t.Errorf("Reserved(%q) = false", e)
		}
	}
	for _, e := range []string{"message", "Connected", "acks", ""} {
		if proto.Reserved(e) {
			t.Errorf("Reserved(%q) = true", e)
		}
	}
}
