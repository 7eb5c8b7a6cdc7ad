package proto_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

func TestAppendRequest(t *testing.T) {
	reqs := []proto.Request{
		{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob","text":"hi"}`), User: "alice", Conn: "c-1", Ref: "r1"},
		{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob"}`), User: "alice", Conn: "c-1"}, // no ref: left out
		{Event: "ping", User: "alice", Conn: "c-1"},                                               // no args: null
		{Event: "ping", Args: json.RawMessage(`null`), User: "u", Conn: "c"},
		{Event: "e", Args: json.RawMessage(`[1,"two",3.5e300,true,null,{}]`), User: `we"ird\`, Conn: "c\n", Ref: "😀\u2028"},
	}
	for _, r := range reqs {
		out := appendTo(t, func(dst []byte) []byte { return proto.AppendRequest(dst, &r) })
		if want := mustMarshal(t, &r); !bytes.Equal(out, want) {
			t.Errorf("AppendRequest(%+v) = %s, encoding/json gives %s", r, out, want)
		}
		got, err := proto.DecodeRequest(out)
		if err != nil {
			t.Fatalf("DecodeRequest(%s): %v", out, err)
		}
		wantArgs := r.Args
		if wantArgs == nil {
			wantArgs = json.RawMessage(`null`)
		}
		if got.Event != r.Event || got.User != r.User || got.Conn != r.Conn || got.Ref != r.Ref || !bytes.Equal(got.Args, wantArgs) {
			t.Errorf("DecodeRequest(AppendRequest(%+v)) = %+v", r, got)
		}
	}
}

func TestAppendRequestEmptyArgs(t *testing.T) {
	out := proto.AppendRequest(nil, &proto.Request{Event: "e", Args: json.RawMessage{}, User: "u", Conn: "c"})
	if want := `{"event":"e","args":null,"user":"u","conn":"c"}`; string(out) != want {
		t.Errorf("AppendRequest with empty args = %s, want %s", out, want)
	}
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  proto.Request
		field string // non-empty: an error naming this is expected
	}{
		{name: "full", in: `{"event":"sendMessage","args":{"to":"bob"},"user":"alice","conn":"c1","ref":"r1"}`,
			want: proto.Request{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob"}`), User: "alice", Conn: "c1", Ref: "r1"}},
		{name: "no args no ref", in: `{"event":"ping","user":"alice","conn":"c1"}`,
			want: proto.Request{Event: "ping", User: "alice", Conn: "c1"}},
		{name: "unknown fields", in: `{"event":"ping","user":"alice","extra":[1,2]}`,
			want: proto.Request{Event: "ping", User: "alice"}},
		{name: "args kept raw", in: `{"event":"e","user":"u","args":[ 1, 2 ]}`,
			want: proto.Request{Event: "e", User: "u", Args: json.RawMessage(`[ 1, 2 ]`)}},

		{name: "not JSON", in: `{"event":`, field: "JSON"},
		{name: "empty", in: ``, field: "JSON"},
		{name: "array", in: `[]`, field: "JSON object"},
		{name: "string", in: `"x"`, field: "JSON object"},
		{name: "user wrong type", in: `{"event":"e","user":5}`, field: "JSON object"},
		{name: "event missing", in: `{"user":"u"}`, field: "event"},
		{name: "event invalid", in: `{"event":"a b","user":"u"}`, field: "event"},
		{name: "event too long", in: `{"event":"` + strings.Repeat("a", 65) + `","user":"u"}`, field: "event"},
		{name: "user missing", in: `{"event":"e"}`, field: "user"},
		{name: "user empty", in: `{"event":"e","user":""}`, field: "user"},
		{name: "null", in: `null`, field: "event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proto.DecodeRequest([]byte(tt.in))
			if tt.field != "" {
				if err == nil {
					t.Fatalf("DecodeRequest(%q) = %+v, want an error", tt.in, got)
				}
				pe := wireError(t, err)
				if pe.Code != proto.CodeBadRequest || !strings.Contains(pe.Message, tt.field) {
					t.Errorf("DecodeRequest(%q) error = %v, want bad_request naming %q", tt.in, err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeRequest(%q): %v", tt.in, err)
			}
			if got.Event != tt.want.Event || got.User != tt.want.User || got.Conn != tt.want.Conn ||
				got.Ref != tt.want.Ref || !bytes.Equal(got.Args, tt.want.Args) {
				t.Errorf("DecodeRequest(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAppendReply(t *testing.T) {
	if out := appendTo(t, func(dst []byte) []byte { return proto.AppendReply(dst, nil) }); string(out) != `{"ok":true}` {
		t.Errorf("AppendReply(nil) = %s", out)
	}
	for _, e := range []*proto.Error{
		proto.NewError(proto.CodeBadRequest, "to is required"),
		proto.NewError(proto.CodeUnknownEvent, ""),
		proto.NewError(proto.CodeHandlerError, "quote \" backslash \\ <&> \u2028 \x00"),
	} {
		out := appendTo(t, func(dst []byte) []byte { return proto.AppendReply(dst, e) })
		if want := mustMarshal(t, proto.Reply{Error: e}); !bytes.Equal(out, want) {
			t.Errorf("AppendReply(%v) = %s, encoding/json gives %s", e, out, want)
		}
		got := proto.DecodeReply(out)
		if got == nil || *got != *e {
			t.Errorf("DecodeReply(AppendReply(%v)) = %v", e, got)
		}
	}
}

func TestDecodeReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *proto.Error // nil: success
	}{
		{name: "ok", in: `{"ok":true}`},
		{name: "ok with whitespace", in: " { \"ok\" : true }\n"},
		{name: "ok with extra fields", in: `{"took_ms":3,"ok":true}`},
		{name: "ok with null error", in: `{"ok":true,"error":null}`},
		{name: "ok with empty error code", in: `{"ok":true,"error":{"code":"","message":"x"}}`},
		{name: "error", in: `{"error":{"code":"bad_request","message":"to is required"}}`,
			want: proto.NewError(proto.CodeBadRequest, "to is required")},
		{name: "error timeout", in: `{"error":{"code":"timeout","message":"slow"}}`,
			want: proto.NewError(proto.CodeTimeout, "slow")},
		{name: "error without message", in: `{"error":{"code":"unavailable"}}`,
			want: proto.NewError(proto.CodeUnavailable, "")},
		{name: "error wins over ok", in: `{"ok":true,"error":{"code":"handler_error","message":"boom"}}`,
			want: proto.NewError(proto.CodeHandlerError, "boom")},
		{name: "error with escapes", in: `{"error":{"code":"bad_request","message":"text must be 1..4000 \u0063haracters"}}`,
			want: proto.NewError(proto.CodeBadRequest, "text must be 1..4000 characters")},
	}
	malformed := []string{``, ` `, `nope`, `{"ok":true`, `{"ok":true}x`, `null`, `[]`, `"ok"`, `true`, `{}`,
		`{"ok":false}`, `{"ok":"true"}`, `{"ok":1}`, `{"error":null}`, `{"error":{}}`, `{"error":{"code":""}}`,
		`{"error":{"code":5}}`, `{"error":"boom"}`, `{"error":["boom"]}`, `{"OK":false}`}
	for _, in := range malformed {
		tests = append(tests, struct {
			name string
			in   string
			want *proto.Error
		}{name: "malformed " + in, in: in, want: &proto.Error{Code: proto.CodeHandlerError}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := proto.DecodeReply([]byte(tt.in))
			switch {
			case tt.want == nil:
				if got != nil {
					t.Errorf("DecodeReply(%q) = %v, want nil", tt.in, got)
				}
			case got == nil:
				t.Errorf("DecodeReply(%q) = nil, want code %q", tt.in, tt.want.Code)
			case got.Code != tt.want.Code:
				t.Errorf("DecodeReply(%q) code = %q, want %q", tt.in, got.Code, tt.want.Code)
			case tt.want.Message != "" && got.Message != tt.want.Message:
				t.Errorf("DecodeReply(%q) message = %q, want %q", tt.in, got.Message, tt.want.Message)
			case tt.want.Code == proto.CodeHandlerError && tt.want.Message == "" && got.Message == "":
				t.Errorf("DecodeReply(%q) malformed reply has no message", tt.in)
			}
		})
	}
}

// TestReplyResult: a success's result survives AppendResult and
// DecodeResult in the fast form and through encoding/json in any other;
// null is no result, and DecodeReply reads the same replies as successes.
func TestReplyResult(t *testing.T) {
	for _, r := range []string{`{"msg_id":"ab","ts":12}`, `[1,"x",{"a":[]}]`, `"text"`, `42`, `true`, `{}`} {
		out := appendTo(t, func(dst []byte) []byte { return proto.AppendResult(dst, json.RawMessage(r)) })
		if want := `{"ok":true,"result":` + r + `}`; string(out) != want {
			t.Errorf("AppendResult(%s) = %s, want %s", r, out, want)
		}
		if !json.Valid(out) {
			t.Errorf("AppendResult(%s) = %s is not JSON", r, out)
		}
		got, e := proto.DecodeResult(out)
		if e != nil || string(got) != r {
			t.Errorf("DecodeResult(%s) = %s, %v; want %s", out, got, e, r)
		}
		if e := proto.DecodeReply(out); e != nil {
			t.Errorf("DecodeReply(%s) = %v, want success", out, e)
		}
	}
	if out := proto.AppendResult(nil, nil); string(out) != `{"ok":true}` {
		t.Errorf("AppendResult(nil) = %s", out)
	}
	for _, tt := range []struct{ in, want string }{
		{`{"ok":true}`, ""},
		{`{"ok":true,"result":null}`, ""},
		{`{"result":{"a":1},"ok":true}`, `{"a":1}`},
		{` {"ok":true, "result": [1, 2]} `, `[1, 2]`},
		{`{"ok":true,"result":1 }`, `1`},
	} {
		got, e := proto.DecodeResult([]byte(tt.in))
		if e != nil || string(got) != tt.want {
			t.Errorf("DecodeResult(%s) = %s, %v; want %q", tt.in, got, e, tt.want)
		}
	}
	for _, in := range []string{`{"ok":true,"result":}`, `{"ok":true,"result":1 2}`, `{"ok":true,"result":{"a":1}`, `{"result":1}`} {
		if got, e := proto.DecodeResult([]byte(in)); e == nil || e.Code != proto.CodeHandlerError || got != nil {
			t.Errorf("DecodeResult(%s) = %s, %v; want a malformed reply", in, got, e)
		}
	}
	// An error wins over a result.
	if got, e := proto.DecodeResult([]byte(`{"ok":true,"result":1,"error":{"code":"timeout","message":"x"}}`)); e == nil || e.Code != proto.CodeTimeout || got != nil {
		t.Errorf("error with a result = %s, %v; want the error", got, e)
	}
}

// TestDecodeReplyResultIsFresh checks that decoding never hands out a shared
// *Error that a caller could modify for everyone.
func TestDecodeReplyResultIsFresh(t *testing.T) {
	a := proto.DecodeReply([]byte(`{}`))
	a.Message = "changed"
	if b := proto.DecodeReply([]byte(`{}`)); b.Message == "changed" {
		t.Errorf("DecodeReply returns a shared *Error")
	}
}

func TestError(t *testing.T) {
	e := proto.NewError(proto.CodeTimeout, "handler did not answer")
	if e.Code != proto.CodeTimeout || e.Message != "handler did not answer" {
		t.Errorf("NewError = %+v", e)
	}
	if got, want := e.Error(), "timeout: handler did not answer"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := string(mustMarshal(t, e)), `{"code":"timeout","message":"handler did not answer"}`; got != want {
		t.Errorf("json.Marshal(Error) = %s, want %s", got, want)
	}
}

// TestDecodeResultBounds: a result that is not UTF-8 makes the reply
// malformed, in both the exact form and any other; an error message over
// proto.MaxErrorMessage is cut at a character; an overlong code is malformed.
func TestDecodeResultBounds(t *testing.T) {
	for _, body := range []string{
		"{\"ok\":true,\"result\":\"\xff\"}",
		"{\"ok\": true, \"result\": [\"a\xc3\"]}",
	} {
		if _, e := proto.DecodeResult([]byte(body)); e == nil || e.Code != proto.CodeHandlerError {
			t.Errorf("proto.DecodeResult(%q) = %v, want handler_error (a result that is not UTF-8)", body, e)
		}
	}
	long := strings.Repeat("é", proto.MaxErrorMessage) // 2 bytes each
	_, e := proto.DecodeResult([]byte(`{"error":{"code":"bad_request","message":"` + long + `"}}`))
	if e == nil || e.Code != proto.CodeBadRequest || len(e.Message) > proto.MaxErrorMessage || !utf8.ValidString(e.Message) ||
		!strings.HasPrefix(long, e.Message) || len(e.Message) < proto.MaxErrorMessage-1 {
		t.Errorf("a %d-byte message: %q (%d bytes), want its first %d bytes at most, whole characters", len(long), e, len(e.Message), proto.MaxErrorMessage)
	}
	if _, e := proto.DecodeResult([]byte(`{"error":{"code":"` + strings.Repeat("x", 65) + `","message":"m"}}`)); e == nil || e.Code != proto.CodeHandlerError {
		t.Errorf("a 65-byte code: %v, want handler_error", e)
	}
}
