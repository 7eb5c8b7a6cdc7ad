package proto_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

// More seeds live in testdata/fuzz/<FuzzName>/.

var envelopeSeeds = []string{
	`{"event":"sendMessage","args":{"to":"bob","text":"hi"},"ref":"c1"}`,
	`{"event":"ping"}`,
	`{"\u0065vent":"e","r\u0065f":"\u00e9","\u0061rgs":[1,"}"]}`,
	`{"event":"a","event":"b","ref":"1","ref":null}`,
	`{"event":1,"ref":"r"}`,
	`{"event":"e","ref":2}`,
	`{"ref":"` + strings.Repeat("é", 65) + `"}`,
	" {\t\"event\" :\n\"e\" , \"args\" : [ 1 , 2 ] }\r\n",
	`[{"event":"e"}]`,
	`null`,
	`{"event":"e","args":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	`{"event":"e","args":123456789012345678901234567890e999}`,
	`{"Event":"e","event":"a b"}`,
	"{\"event\":\"e\",\"ref\":\"\xff\"}",
	`{"event":"e",}`,
	`{"event":"e","idem":"0f8fad5b-d9cb-469f-a165-70867728950e","ref":"1"}`,
	`{"event":"e","idem":"a:b"}`,
	`{"event":"e","idem":"\u0061","idem":null}`,
	`{"idem":7,"event":"e"}`,
	`{"event":"e","ref":"\ud800"}`,
	`{"event":"e","ref":"\ud83d\ude00\ufffd"}`,
	`{"event":"e","ref":"r","args":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	`{"event":"e","ref":"r","x":` + strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat("}", 10000) + `}`,
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range envelopeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		env, err := proto.DecodeEnvelope(data)
		if !bytes.Equal(data, orig) {
			t.Fatalf("DecodeEnvelope modified its input")
		}

		// Invariants of any result.
		if n := utf8.RuneCountInString(env.Ref); n > proto.MaxRefLen {
			t.Fatalf("Ref has %d code points", n)
		}
		if err != nil {
			var pe *proto.Error
			if !errors.As(err, &pe) || pe.Code != proto.CodeBadRequest {
				t.Fatalf("error %v is not a bad_request *proto.Error", err)
			}
			if env.Event != "" {
				t.Fatalf("Event = %q with error %v", env.Event, err)
			}
		} else {
			if !proto.ValidEventName(env.Event) {
				t.Fatalf("Event %q does not match %s", env.Event, proto.EventPattern)
			}
			if env.Args != nil && !json.Valid(env.Args) {
				t.Fatalf("Args %q is not valid JSON", env.Args)
			}
		}

		// Oracle: encoding/json decoding the same bytes into a map, which
		// matches keys exactly (after unescaping) and keeps the last of
		// duplicate keys, exactly as DecodeEnvelope promises.
		want, wantErr := oracleEnvelope(data)
		if wantErr == "deep" {
			// Nested deeper than encoding/json reads, so it cannot tell
			// what else is right or wrong; DecodeEnvelope must refuse it.
			if err == nil {
				t.Fatalf("DecodeEnvelope(%.200q) = %+v; it nests deeper than %d levels", data, env, proto.MaxArgsDepth+1)
			}
			return
		}
		if (err != nil) != (wantErr != "") {
			t.Fatalf("DecodeEnvelope(%q) = %+v, %v; oracle says error %q", data, env, err, wantErr)
		}
		if err != nil {
			if msg := err.(*proto.Error).Message; !strings.Contains(msg, wantErr) {
				// Where both ref and event are bad, either may be reported.
				if !(wantErr == "ref|event" && (strings.Contains(msg, "ref") || strings.Contains(msg, "event"))) {
					t.Fatalf("DecodeEnvelope(%q) error %q, oracle says it is about %q", data, msg, wantErr)
				}
			}
		}
		if env.Event != want.Event {
			t.Fatalf("DecodeEnvelope(%q).Event = %q, oracle %q", data, env.Event, want.Event)
		}
		// encoding/json turns each invalid UTF-8 byte into U+FFFD; DecodeEnvelope
		// may keep it (AppendString replaces it when echoing), so compare the
		// code points; for valid UTF-8 the strings must be identical.
		if utf8.Valid(data) {
			if env.Ref != want.Ref {
				t.Fatalf("DecodeEnvelope(%q).Ref = %q, oracle %q", data, env.Ref, want.Ref)
			}
		} else if string([]rune(env.Ref)) != want.Ref {
			t.Fatalf("DecodeEnvelope(%q).Ref = %q, oracle %q", data, env.Ref, want.Ref)
		}
		if err == nil && env.Idem != want.Idem {
			t.Fatalf("DecodeEnvelope(%q).Idem = %q, oracle %q", data, env.Idem, want.Idem)
		}
		if !bytes.Equal(env.Args, want.Args) || (env.Args == nil) != (want.Args == nil) {
			t.Fatalf("DecodeEnvelope(%q).Args = %q, oracle %q", data, env.Args, want.Args)
		}

		// Whatever was decoded must encode into valid frames and requests.
		if err == nil {
			if !json.Valid(proto.AppendEvent(nil, env.Event, "u", env.Args)) {
				t.Fatalf("AppendEvent of decoded envelope is not valid JSON")
			}
			req := proto.Request{Event: env.Event, Args: env.Args, User: "u", Conn: "c", Ref: env.Ref}
			if _, err := proto.DecodeRequest(proto.AppendRequest(nil, &req)); err != nil {
				t.Fatalf("request of decoded envelope does not decode: %v", err)
			}
		} else if !json.Valid(proto.AppendError(nil, "u", env.Ref, env.HasRef, err.(*proto.Error))) {
			t.Fatalf("AppendError of decoded envelope is not valid JSON")
		}
	})
}

// oracleEnvelope decodes data with encoding/json and applies the envelope
// rules of docs/protocol.md section 2. It returns the envelope DecodeEnvelope must
// return, and on failure the word the error must be about: "JSON",
// "object", "event", "ref", "idem", or "ref|event" when both are bad.
func oracleEnvelope(data []byte) (proto.Envelope, string) {
	var env proto.Envelope
	if !json.Valid(data) {
		if nesting(data) > proto.MaxArgsDepth+1 {
			return env, "deep"
		}
		return env, "JSON"
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return env, "object" // valid JSON that is not an object (or null)
	}
	env.Args = m["args"]

	refBad := false
	if raw, ok := m["ref"]; ok && string(raw) != "null" {
		var ref string
		if err := json.Unmarshal(raw, &ref); err != nil || utf8.RuneCountInString(ref) > proto.MaxRefLen {
			refBad = true
		} else if bytes.IndexByte(raw, '\\') >= 0 && (!utf8.Valid(raw) || strings.Count(ref, "\uFFFD") != writtenFFFD(raw)) {
			refBad = true // a lone surrogate escape, which decodes to U+FFFD
		} else {
			env.Ref = ref
		}
	}

	idemBad := false
	if raw, ok := m["idem"]; ok && string(raw) != "null" {
		// The key's characters need no escape, and an escaped one is refused.
		var idem string
		if err := json.Unmarshal(raw, &idem); err != nil || string(raw) != `"`+idem+`"` || !proto.ValidIdem(idem) {
			idemBad = true
		} else {
			env.Idem = idem
		}
	}

	eventBad := true
	var event string
	if raw, ok := m["event"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &event); err == nil && proto.ValidEventName(event) {
			eventBad = false
		}
	}
	switch {
	case refBad && eventBad:
		return env, "ref|event"
	case refBad:
		return env, "ref"
	case idemBad:
		return env, "idem"
	case eventBad:
		return env, "event"
	}
	env.Event = event
	return env, ""
}

// nesting returns the most arrays and objects data opens one inside
// another, outside strings, whether or not it is valid JSON.
func nesting(data []byte) int {
	depth, most, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			most = max(most, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return most
}

func FuzzDecodeDispatch(f *testing.F) {
	for _, s := range []string{
		`{"event":"message","args":{"text":"hi"},"users":["alice","bob"],"conns":[],"broadcast":false}`,
		`{"event":"announce","args":null,"broadcast":true}`,
		`{"event":"e","conns":["c1","c1"],"users":null}`,
		`{"event":"message","args":{"text":"hi"},"users":["alice"],"conns":["c1"],"skip_users":["bob","carol"],"broadcast":false,"pos":{"alice":"e1.5-1"}}`,
		`{"event":"e","skip_users":null,"conns":["c1"]}`,
		`{"event":"typing","args":{},"users":["a"],"conns":[],"broadcast":false,"transient":true}`,
		`{"event":"message","args":{},"users":["a"],"conns":[],"broadcast":false,"except":["c1","c2"],"pos":{"a":"e1.5-1"}}`,
		`{"event":"e","except":null,"users":["a"]}`,
		`{"event":"e","conns":["c1"],"skip_users":["b\u0022"],"users":["a"]}`,
		`{"event":"e","args":1,"users":["a","b"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1","b":"y.2-2"}}`,
		`{"event":"e","args":1,"users":["a","a"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1","a":"y.2-2"}}`,
		`{"event":"e","users":["a"],"pos":{"b":"x.1-1"}}`,
		`{"EVENT":"e","Users":["u"]}`,
		`{"event":"a b"}`,
		`{"event":"e","users":[1]}`,
		`{"event":"e","args":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := proto.DecodeDispatch(data)
		checkLazyDispatch(t, data, d, err)
		if err != nil {
			var pe *proto.Error
			if !errors.As(err, &pe) || pe.Code != proto.CodeBadRequest || pe.Message == "" {
				t.Fatalf("error %v is not a bad_request *proto.Error with a message", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("DecodeDispatch accepted invalid JSON %q", data)
		}
		if !proto.ValidEventName(d.Event) {
			t.Fatalf("Event %q does not match %s", d.Event, proto.EventPattern)
		}
		if d.Args != nil && (!json.Valid(d.Args) || string(d.Args) == "null") {
			t.Fatalf("Args = %q, want nil or valid JSON other than null", d.Args)
		}
		// Round trip: what a gateway decoded, handlers-svc can re-encode.
		out := proto.AppendDispatch(nil, &d)
		if !json.Valid(out) {
			t.Fatalf("AppendDispatch(%+v) = %q is not valid JSON", d, out)
		}
		d2, err := proto.DecodeDispatch(out)
		if err != nil {
			t.Fatalf("DecodeDispatch(AppendDispatch(%+v)): %v", d, err)
		}
		if d2.Event != d.Event || !bytes.Equal(d2.Args, d.Args) || (d2.Args == nil) != (d.Args == nil) ||
			!slices.Equal(d2.Users, d.Users) || !slices.Equal(d2.Conns, d.Conns) || !slices.Equal(d2.SkipUsers, d.SkipUsers) ||
			d2.Broadcast != d.Broadcast || d2.Transient != d.Transient || !slices.Equal(d2.Except, d.Except) ||
			!maps.Equal(d2.Pos, d.Pos) || d2.BPos != d.BPos {
			t.Fatalf("round trip of %q: %+v became %+v", data, d, d2)
		}
	})
}

// checkLazyDispatch checks that DecodeDispatchLazy refuses what
// DecodeDispatch refused (d, err) and reads the rest alike, each user's
// position at its last mention the one in d.Pos, and writes it back
// as it read it.
func checkLazyDispatch(t *testing.T, data []byte, d proto.Dispatch, err error) {
	t.Helper()
	lazy, lerr := proto.DecodeDispatchLazy(data)
	if (err == nil) != (lerr == nil) {
		t.Fatalf("%q: DecodeDispatch %v, DecodeDispatchLazy %v", data, err, lerr)
	}
	if err != nil {
		return
	}
	if lazy.Pos != nil || lazy.HasPos() != (len(d.Pos) > 0 && len(d.Users) > 0) {
		t.Fatalf("%q: DecodeDispatchLazy Pos %v, HasPos %v; DecodeDispatch Pos %v", data, lazy.Pos, lazy.HasPos(), d.Pos)
	}
	if string(proto.AppendDispatchHead(nil, &lazy)) != string(proto.AppendDispatchHead(nil, &d)) || lazy.BPos != d.BPos {
		t.Fatalf("%q: DecodeDispatchLazy %+v, DecodeDispatch %+v", data, lazy, d)
	}
	for i, u := range d.Users {
		last := i
		for j := i + 1; j < len(d.Users); j++ {
			if d.Users[j] == u {
				last = j
			}
		}
		if got := lazy.UserPos(last); got != d.Pos[u] || got != d.UserPos(i) {
			t.Fatalf("%q: DecodeDispatchLazy gives %s %q, DecodeDispatch %q", data, u, got, d.Pos[u])
		}
	}
	if lazy.HasPos() {
		again, err := proto.DecodeDispatchLazy(proto.AppendDispatch(nil, &lazy))
		for i := range lazy.Users {
			if err != nil || again.UserPos(i) != lazy.UserPos(i) {
				t.Fatalf("%q: DecodeDispatchLazy read back %+v, %v, from %+v", data, again, err, lazy)
			}
		}
	}
}

func FuzzDecodeReply(f *testing.F) {
	for _, s := range []string{
		`{"ok":true}`,
		`{"ok":true,"result":{"msg_id":"ab","ts":1}}`,
		`{"ok":true,"result":1 }`,
		`{"ok":true,"result":null}`,
		`{"error":{"code":"bad_request","message":"to is required"}}`,
		`{"ok":true,"error":{"code":"timeout","message":"x"}}`,
		`{"ok":false}`,
		`{"error":{"code":""}}`,
		`{"error":"boom"}`,
		`null`,
		` {"ok" : true} `,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := proto.DecodeReply(data)
		result, e2 := proto.DecodeResult(data)
		if (e == nil) != (e2 == nil) || (e != nil && *e != *e2) {
			t.Fatalf("DecodeReply(%q) = %v but DecodeResult gives %v", data, e, e2)
		}
		if result != nil {
			// A result is valid JSON, not null, and what encoding/json reads.
			var r proto.Reply
			if !json.Valid(result) || string(result) == "null" || json.Unmarshal(data, &r) != nil {
				t.Fatalf("DecodeResult(%q) = %q", data, result)
			}
			var a, b any
			_ = json.Unmarshal(result, &a)
			_ = json.Unmarshal(r.Result, &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("DecodeResult(%q) = %s, encoding/json reads %s", data, result, r.Result)
			}
			if out := proto.AppendResult(nil, result); !json.Valid(out) {
				t.Fatalf("AppendResult(%s) = %q is not JSON", result, out)
			}
		}
		if e == nil {
			// Success only for a JSON object with "ok": true and no error code.
			// (Keys match case-insensitively and the last duplicate wins, as
			// encoding/json does for any struct.)
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
				t.Fatalf("DecodeReply(%q) = nil, but it is not a JSON object", data)
			}
			var r struct {
				OK    bool
				Error *proto.Error
			}
			if err := json.Unmarshal(data, &r); err != nil || !r.OK || (r.Error != nil && r.Error.Code != "") {
				t.Fatalf("DecodeReply(%q) = nil, but it is not an ok reply", data)
			}
			return
		}
		if e.Code == "" {
			t.Fatalf("DecodeReply(%q) returned an error without a code", data)
		}
		if !json.Valid(data) && e.Code != proto.CodeHandlerError {
			t.Fatalf("DecodeReply(%q) = %v, want handler_error for invalid JSON", data, e)
		}
		// The error survives a round trip through AppendReply.
		out := proto.AppendReply(nil, e)
		if !json.Valid(out) {
			t.Fatalf("AppendReply(%v) = %q is not valid JSON", e, out)
		}
		if e2 := proto.DecodeReply(out); e2 == nil || *e2 != *e {
			t.Fatalf("DecodeReply(AppendReply(%v)) = %v", e, e2)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"event":"sendMessage","args":{"to":"bob"},"user":"alice","conn":"c1","ref":"r1"}`,
		`{"event":"ping","user":"u"}`,
		`{"event":"ping","user":""}`,
		`{"event":"1","user":"u"}`,
		`{"event":"e","user":5}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := proto.DecodeRequest(data)
		if err != nil {
			var pe *proto.Error
			if !errors.As(err, &pe) || pe.Code != proto.CodeBadRequest {
				t.Fatalf("error %v is not a bad_request *proto.Error", err)
			}
			return
		}
		if !proto.ValidEventName(r.Event) || r.User == "" {
			t.Fatalf("DecodeRequest(%q) = %+v without a valid event and user", data, r)
		}
		out := proto.AppendRequest(nil, &r)
		r2, err := proto.DecodeRequest(out)
		if err != nil {
			t.Fatalf("DecodeRequest(AppendRequest(%+v)) = %v", r, err)
		}
		wantArgs := r.Args
		if len(wantArgs) == 0 {
			wantArgs = json.RawMessage("null")
		}
		if r2.Event != r.Event || r2.User != r.User || r2.Conn != r.Conn || r2.Ref != r.Ref || !bytes.Equal(r2.Args, wantArgs) {
			t.Fatalf("round trip of %q: %+v became %+v", data, r, r2)
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\`, "\x00\b\f\n\r\t\x1f\x7f", "<>&", "\u2028\u2029", "é日本😀",
		"\xff", "\xed\xa0\x80", "a\xe6\x97", "\uFFFD"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := proto.AppendString([]byte("x"), s)
		if out[0] != 'x' {
			t.Fatalf("AppendString lost dst")
		}
		out = out[1:]
		if !json.Valid(out) {
			t.Fatalf("AppendString(%q) = %q is not valid JSON", s, out)
		}
		if !utf8.Valid(out) {
			t.Fatalf("AppendString(%q) = %q is not valid UTF-8", s, out)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("AppendString(%q) = %q does not decode: %v", s, out, err)
		}
		want := s
		if !utf8.ValidString(s) {
			want = string([]rune(s)) // each invalid byte becomes U+FFFD
		}
		if got != want {
			t.Fatalf("AppendString(%q) decodes to %q, want %q", s, got, want)
		}
		if std := stdString(t, s); !bytes.Equal(out, std) {
			t.Fatalf("AppendString(%q) = %s, encoding/json gives %s", s, out, std)
		}
	})
}
