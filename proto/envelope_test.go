package proto_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// wireError returns err as a *proto.Error, failing the test if it is not one.
func wireError(t testing.TB, err error) *proto.Error {
	t.Helper()
	var pe *proto.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *proto.Error", err, err)
	}
	return pe
}

func TestDecodeEnvelopeValid(t *testing.T) {
	event64 := "a" + strings.Repeat("B9_-", 15) + "xyz" // 64 characters
	ref64Runes := strings.Repeat("é", 64)               // 64 code points, 128 bytes
	ref64Astral := strings.Repeat("😀", 64)              // 64 code points, 256 bytes
	deepArgs := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)

	tests := []struct {
		name string
		in   string
		want proto.Envelope
		// args is the expected raw args; "" means Args must be nil.
		args string
	}{
		{name: "event only", in: `{"event":"ping"}`, want: proto.Envelope{Event: "ping"}},
		{name: "event args ref", in: `{"event":"sendMessage","args":{"to":"bob","text":"hi"},"ref":"c1"}`,
			want: proto.Envelope{Event: "sendMessage", Ref: "c1"}, args: `{"to":"bob","text":"hi"}`},
		{name: "args without ref", in: `{"event":"sendMessage","args":{"to":"bob"}}`,
			want: proto.Envelope{Event: "sendMessage"}, args: `{"to":"bob"}`},
		{name: "ref without args", in: `{"event":"typing","ref":"r-1"}`,
			want: proto.Envelope{Event: "typing", Ref: "r-1"}},
		{name: "fields in any order", in: `{"ref":"r","args":[1],"event":"e"}`,
			want: proto.Envelope{Event: "e", Ref: "r"}, args: `[1]`},

		// args of every JSON type pass through byte for byte.
		{name: "args string", in: `{"event":"e","args":"a \"q\" \\ \u00e9 }]"}`, want: proto.Envelope{Event: "e"}, args: `"a \"q\" \\ \u00e9 }]"`},
		{name: "args integer", in: `{"event":"e","args":42}`, want: proto.Envelope{Event: "e"}, args: `42`},
		{name: "args negative float exponent", in: `{"event":"e","args":-0.5e-10}`, want: proto.Envelope{Event: "e"}, args: `-0.5e-10`},
		{name: "args true", in: `{"event":"e","args":true}`, want: proto.Envelope{Event: "e"}, args: `true`},
		{name: "args false", in: `{"event":"e","args":false}`, want: proto.Envelope{Event: "e"}, args: `false`},
		{name: "args null is kept raw", in: `{"event":"e","args":null}`, want: proto.Envelope{Event: "e"}, args: `null`},
		{name: "args empty object", in: `{"event":"e","args":{}}`, want: proto.Envelope{Event: "e"}, args: `{}`},
		{name: "args empty array", in: `{"event":"e","args":[]}`, want: proto.Envelope{Event: "e"}, args: `[]`},
		{name: "args nested with tricky strings", in: `{"args":{"a":["}",{"b":"]\"{"}],"event":"x"},"event":"e"}`,
			want: proto.Envelope{Event: "e"}, args: `{"a":["}",{"b":"]\"{"}],"event":"x"}`},
		{name: "args huge integer unchanged", in: `{"event":"e","args":123456789012345678901234567890123456789}`,
			want: proto.Envelope{Event: "e"}, args: `123456789012345678901234567890123456789`},
		{name: "args huge exponent unchanged", in: `{"event":"e","args":[1e999999,-1E-999999,0.10000000000000000000000001]}`,
			want: proto.Envelope{Event: "e"}, args: `[1e999999,-1E-999999,0.10000000000000000000000001]`},
		{name: "args 5000 levels deep", in: `{"event":"e","args":` + deepArgs + `}`,
			want: proto.Envelope{Event: "e"}, args: deepArgs},

		// Unknown fields are ignored, and nothing else can set the event.
		{name: "unknown fields ignored", in: `{"event":"e","user":"mallory","id":"x","extra":{"event":"no","ref":"no"},"n":[null]}`,
			want: proto.Envelope{Event: "e"}},
		{name: "keys match exactly", in: `{"Event":"no","EVENT":"no","event":"yes","Ref":"no","Args":1}`,
			want: proto.Envelope{Event: "yes"}},

		// Duplicate keys: the last one wins, as with encoding/json.
		{name: "duplicate event last wins", in: `{"event":"first","event":"second"}`, want: proto.Envelope{Event: "second"}},
		{name: "duplicate ref last wins", in: `{"event":"e","ref":"1","ref":"2"}`, want: proto.Envelope{Event: "e", Ref: "2"}},
		{name: "duplicate args last wins", in: `{"event":"e","args":1,"args":[2]}`, want: proto.Envelope{Event: "e"}, args: `[2]`},
		{name: "duplicate event bad then good", in: `{"event":5,"event":"ok"}`, want: proto.Envelope{Event: "ok"}},
		{name: "ref then null ref", in: `{"event":"e","ref":"1","ref":null}`, want: proto.Envelope{Event: "e"}},

		// Escaped keys and values are decoded before they are compared.
		{name: "escaped event key", in: `{"\u0065vent":"e"}`, want: proto.Envelope{Event: "e"}},
		{name: "escaped ref and args keys", in: `{"event":"e","r\u0065f":"r","\u0061rgs":7}`,
			want: proto.Envelope{Event: "e", Ref: "r"}, args: `7`},
		{name: "escaped key overrides plain", in: `{"event":"plain","\u0065\u0076\u0065\u006e\u0074":"escaped"}`,
			want: proto.Envelope{Event: "escaped"}},
		{name: "escaped key that is not event", in: `{"event\u0000":"no","event":"e"}`, want: proto.Envelope{Event: "e"}},
		{name: "escaped event value", in: `{"event":"send\u004dessage"}`, want: proto.Envelope{Event: "sendMessage"}},
		{name: "escaped ref value", in: `{"event":"e","ref":"a\"b\\c\/\u00e9\n"}`, want: proto.Envelope{Event: "e", Ref: "a\"b\\c/é\n"}},

		// Whitespace everywhere JSON allows it.
		{name: "whitespace everywhere", in: " \t\r\n{ \n\"event\" \t: \r\"e\" , \"args\" :\n[ 1 ,\t2 ] ,\"ref\"\n:\"r\"\r\n} \n\t",
			want: proto.Envelope{Event: "e", Ref: "r"}, args: "[ 1 ,\t2 ]"},
		{name: "whitespace around scalar args", in: `{ "args" : 12 , "event" : "e" }`, want: proto.Envelope{Event: "e"}, args: `12`},

		// Event names at the edges of the pattern.
		{name: "event one letter", in: `{"event":"a"}`, want: proto.Envelope{Event: "a"}},
		{name: "event 64 characters", in: `{"event":"` + event64 + `"}`, want: proto.Envelope{Event: event64}},
		{name: "event digits dash underscore", in: `{"event":"Z9-_a"}`, want: proto.Envelope{Event: "Z9-_a"}},

		// Refs: null is absent, "" is a ref, the limit counts code points.
		{name: "ref null is absent", in: `{"event":"e","ref":null}`, want: proto.Envelope{Event: "e"}},
		{name: "ref empty is sent", in: `{"event":"e","ref":""}`, want: proto.Envelope{Event: "e", HasRef: true}},
		{name: "ref 64 ASCII", in: `{"event":"e","ref":"` + strings.Repeat("r", 64) + `"}`,
			want: proto.Envelope{Event: "e", Ref: strings.Repeat("r", 64)}},
		{name: "ref 64 two-byte code points", in: `{"event":"e","ref":"` + ref64Runes + `"}`,
			want: proto.Envelope{Event: "e", Ref: ref64Runes}},
		{name: "ref 64 four-byte code points", in: `{"event":"e","ref":"` + ref64Astral + `"}`,
			want: proto.Envelope{Event: "e", Ref: ref64Astral}},
		{name: "ref 64 escaped code points", in: `{"event":"e","ref":"` + strings.Repeat(`\u00e9`, 64) + `"}`,
			want: proto.Envelope{Event: "e", Ref: ref64Runes}},
		// Idempotency keys: absent, null, a UUID, 64 characters.
		{name: "idem uuid", in: `{"event":"e","idem":"0f8fad5b-d9cb-469f-a165-70867728950e"}`,
			want: proto.Envelope{Event: "e", Idem: "0f8fad5b-d9cb-469f-a165-70867728950e"}},
		{name: "idem null is absent", in: `{"event":"e","idem":null}`, want: proto.Envelope{Event: "e"}},
		{name: "idem 64 base64url", in: `{"idem":"` + strings.Repeat("aZ0_-.", 10) + `abcd","event":"e"}`,
			want: proto.Envelope{Event: "e", Idem: strings.Repeat("aZ0_-.", 10) + "abcd"}},

		{name: "ref 64 surrogate pairs", in: `{"event":"e","ref":"` + strings.Repeat(`\ud83d\ude00`, 64) + `"}`,
			want: proto.Envelope{Event: "e", Ref: ref64Astral}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			orig := bytes.Clone(in)
			got, err := proto.DecodeEnvelope(in)
			if err != nil {
				t.Fatalf("DecodeEnvelope(%.80q) error: %v", tt.in, err)
			}
			if got.Idem != tt.want.Idem {
				t.Errorf("Idem = %q, want %q", got.Idem, tt.want.Idem)
			}
			if got.Event != tt.want.Event {
				t.Errorf("Event = %q, want %q", got.Event, tt.want.Event)
			}
			if got.Ref != tt.want.Ref {
				t.Errorf("Ref = %q, want %q", got.Ref, tt.want.Ref)
			}
			if wantHas := tt.want.Ref != "" || tt.want.HasRef; got.HasRef != wantHas {
				t.Errorf("HasRef = %v, want %v", got.HasRef, wantHas)
			}
			if tt.args == "" {
				if got.Args != nil {
					t.Errorf("Args = %.80q, want nil", got.Args)
				}
			} else if string(got.Args) != tt.args {
				t.Errorf("Args = %.80q, want %.80q", got.Args, tt.args)
			}
			if !bytes.Equal(in, orig) {
				t.Errorf("DecodeEnvelope modified its input")
			}
		})
	}
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	const (
		inJSON   = "JSON"
		inObject = "object"
		inEvent  = "event"
		inRef    = "ref"
	)
	tests := []struct {
		name  string
		in    string
		field string // a word the message must contain
		ref   string // the Ref that must be returned for the error frame
	}{
		// Not JSON.
		{name: "empty", in: ``, field: inJSON},
		{name: "whitespace only", in: " \n\t", field: inJSON},
		{name: "garbage", in: `nope`, field: inJSON},
		{name: "unterminated object", in: `{"event":"e"`, field: inJSON},
		{name: "unterminated string", in: `{"event":"e}`, field: inJSON},
		{name: "trailing comma", in: `{"event":"e",}`, field: inJSON},
		{name: "unquoted key", in: `{event:"e"}`, field: inJSON},
		{name: "single quotes", in: `{'event':'e'}`, field: inJSON},
		{name: "trailing data", in: `{"event":"e"}x`, field: inJSON},
		{name: "two objects", in: `{"event":"e"}{"event":"e"}`, field: inJSON},
		{name: "raw control char in string", in: "{\"event\":\"e\",\"ref\":\"a\tb\"}", field: inJSON},
		{name: "bad escape", in: `{"event":"\x41"}`, field: inJSON},
		{name: "invalid UTF-8 outside strings", in: "\xff{\"event\":\"e\"}", field: inJSON},
		{name: "NaN", in: `{"event":"e","args":NaN}`, field: inJSON},
		{name: "leading zero", in: `{"event":"e","args":01}`, field: inJSON},
		{name: "unclosed deep nesting", in: strings.Repeat("[", 5000), field: inJSON},
		{name: "nesting beyond 10000, broken", in: `{"event":"e","ref":"r","args":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10000) + `}`, field: inJSON},

		// Valid JSON but for its depth: said so, with the ref.
		{name: "args nested beyond 9999", in: `{"event":"e","args":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `,"ref":"r"}`,
			field: "args are nested deeper than 9999 levels", ref: "r"},
		{name: "other field nested beyond 9999", in: `{"event":"e","ref":"r","x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
			field: "frame is nested deeper than 10000 levels", ref: "r"},
		{name: "deep args, bad ref", in: `{"event":"e","args":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `,"ref":1}`,
			field: "ref"},
		{name: "deep array", in: strings.Repeat("[", 10001) + strings.Repeat("]", 10001), field: inObject},

		// Valid JSON, not an object.
		{name: "array", in: `[{"event":"e"}]`, field: inObject},
		{name: "empty array", in: ` [] `, field: inObject},
		{name: "string", in: `"event"`, field: inObject},
		{name: "number", in: `42`, field: inObject},
		{name: "null", in: `null`, field: inObject},
		{name: "bool", in: `true`, field: inObject},

		// event missing or malformed.
		{name: "empty object", in: `{}`, field: inEvent},
		{name: "event only in args", in: `{"args":{"event":"e"}}`, field: inEvent},
		{name: "event with other case", in: `{"Event":"e"}`, field: inEvent},
		{name: "event null", in: `{"event":null}`, field: inEvent},
		{name: "event number", in: `{"event":1}`, field: inEvent},
		{name: "event object", in: `{"event":{"name":"e"}}`, field: inEvent},
		{name: "event array", in: `{"event":["e"]}`, field: inEvent},
		{name: "event true", in: `{"event":true}`, field: inEvent},
		{name: "event false", in: `{"event":false}`, field: inEvent},
		{name: "event empty", in: `{"event":""}`, field: inEvent},
		{name: "event 65 characters", in: `{"event":"` + strings.Repeat("a", 65) + `"}`, field: inEvent},
		{name: "event 65 characters escaped", in: `{"event":"` + strings.Repeat(`\u0061`, 65) + `"}`, field: inEvent},
		{name: "event starts with digit", in: `{"event":"1abc"}`, field: inEvent},
		{name: "event starts with underscore", in: `{"event":"_abc"}`, field: inEvent},
		{name: "event starts with dash", in: `{"event":"-abc"}`, field: inEvent},
		{name: "event escaped digit first", in: `{"event":"\u0031abc"}`, field: inEvent},
		{name: "event NUL", in: `{"event":"a\u0000"}`, field: inEvent},
		{name: "event newline", in: `{"event":"a\n"}`, field: inEvent},
		{name: "event tab", in: `{"event":"a\tb"}`, field: inEvent},
		{name: "event DEL", in: "{\"event\":\"a\x7f\"}", field: inEvent},
		{name: "event space inside", in: `{"event":"send Message"}`, field: inEvent},
		{name: "event leading space", in: `{"event":" a"}`, field: inEvent},
		{name: "event trailing space", in: `{"event":"a "}`, field: inEvent},
		{name: "event accented", in: `{"event":"café"}`, field: inEvent},
		{name: "event accented escaped", in: `{"event":"caf\u00e9"}`, field: inEvent},
		{name: "event fullwidth letter", in: `{"event":"ａ"}`, field: inEvent},
		{name: "event emoji", in: `{"event":"a😀"}`, field: inEvent},
		{name: "event invalid UTF-8", in: "{\"event\":\"a\xff\"}", field: inEvent},
		{name: "event dot", in: `{"event":"a.b"}`, field: inEvent},
		{name: "event slash", in: `{"event":"a/b"}`, field: inEvent},
		{name: "event NATS wildcard", in: `{"event":"a>"}`, field: inEvent},
		{name: "event star", in: `{"event":"*"}`, field: inEvent},
		{name: "event quote", in: `{"event":"a\"b"}`, field: inEvent},
		{name: "duplicate event good then bad", in: `{"event":"ok","event":"not ok"}`, field: inEvent},
		{name: "duplicate event good then null", in: `{"event":"ok","event":null}`, field: inEvent},

		// ref malformed: nothing to echo.
		{name: "ref number", in: `{"event":"e","ref":1}`, field: inRef},
		{name: "ref true", in: `{"event":"e","ref":true}`, field: inRef},
		{name: "ref object", in: `{"event":"e","ref":{"id":"r"}}`, field: inRef},
		{name: "ref array", in: `{"event":"e","ref":["r"]}`, field: inRef},
		{name: "ref 65 ASCII", in: `{"event":"e","ref":"` + strings.Repeat("r", 65) + `"}`, field: inRef},
		{name: "ref 65 two-byte code points", in: `{"event":"e","ref":"` + strings.Repeat("é", 65) + `"}`, field: inRef},
		{name: "ref 65 escaped code points", in: `{"event":"e","ref":"` + strings.Repeat(`\u00e9`, 65) + `"}`, field: inRef},
		{name: "duplicate ref good then bad", in: `{"event":"e","ref":"ok","ref":2}`, field: inRef},

		// idem malformed: the handler must not run without the key it was
		// sent with; a valid ref is echoed.
		{name: "idem number", in: `{"event":"e","idem":1,"ref":"r1"}`, field: "idem", ref: "r1"},
		{name: "idem empty", in: `{"event":"e","idem":""}`, field: "idem"},
		{name: "idem 65 characters", in: `{"event":"e","idem":"` + strings.Repeat("k", 65) + `"}`, field: "idem"},
		{name: "idem colon", in: `{"event":"e","idem":"a:b"}`, field: "idem"},
		{name: "idem space", in: `{"event":"e","idem":"a b"}`, field: "idem"},
		{name: "idem escaped letter", in: `{"event":"e","idem":"\u0061"}`, field: "idem"},
		{name: "idem non-ASCII", in: `{"event":"e","idem":"é"}`, field: "idem"},
		{name: "idem with event missing", in: `{"idem":"k"}`, field: inEvent},

		// A valid ref next to a bad event is returned so the error can echo it.
		{name: "ref with event missing", in: `{"ref":"r1"}`, field: inEvent, ref: "r1"},
		{name: "ref with event null", in: `{"ref":"r1","event":null}`, field: inEvent, ref: "r1"},
		{name: "ref with event number", in: `{"event":7,"ref":"r1"}`, field: inEvent, ref: "r1"},
		{name: "ref with event bad name", in: `{"event":"no such","ref":"r1"}`, field: inEvent, ref: "r1"},
		{name: "ref with event too long", in: `{"ref":"r1","event":"` + strings.Repeat("a", 65) + `"}`, field: inEvent, ref: "r1"},
		{name: "escaped ref with bad event", in: `{"event":"","ref":"\u00e9\""}`, field: inEvent, ref: "é\""},
		{name: "multi-byte ref at limit with bad event", in: `{"event":"","ref":"` + strings.Repeat("😀", 64) + `"}`,
			field: inEvent, ref: strings.Repeat("😀", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proto.DecodeEnvelope([]byte(tt.in))
			if err == nil {
				t.Fatalf("DecodeEnvelope(%.80q) = %+v, want an error", tt.in, got)
			}
			pe := wireError(t, err)
			if pe.Code != proto.CodeBadRequest {
				t.Errorf("Code = %q, want %q", pe.Code, proto.CodeBadRequest)
			}
			if !strings.Contains(pe.Message, tt.field) {
				t.Errorf("Message = %q, want it to name %q", pe.Message, tt.field)
			}
			if want := string(pe.Code) + ": " + pe.Message; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
			if got.Ref != tt.ref {
				t.Errorf("Ref = %q, want %q", got.Ref, tt.ref)
			}
			if got.Event != "" {
				t.Errorf("Event = %q on error, want empty", got.Event)
			}
		})
	}
}

// TestDecodeEnvelopeEchoesRef checks every kind of bad event, with a valid ref
// before and after it: the error must be about the event and carry the ref.
func TestDecodeEnvelopeEchoesRef(t *testing.T) {
	badEvents := []string{`null`, `1`, `{}`, `[]`, `true`, `""`, `"1a"`, `"_a"`, `"a b"`, `"a\n"`, `"é"`,
		`"` + strings.Repeat("a", 65) + `"`}
	refs := []string{"c1", strings.Repeat("r", 64), strings.Repeat("ж", 64)}
	for _, ev := range badEvents {
		for _, ref := range refs {
			for _, in := range []string{
				`{"ref":"` + ref + `","event":` + ev + `}`,
				`{"event":` + ev + `,"args":{"ref":"inner"},"ref":"` + ref + `"}`,
			} {
				got, err := proto.DecodeEnvelope([]byte(in))
				if err == nil {
					t.Errorf("DecodeEnvelope(%.80q): no error", in)
					continue
				}
				if pe := wireError(t, err); pe.Code != proto.CodeBadRequest || !strings.Contains(pe.Message, "event") {
					t.Errorf("DecodeEnvelope(%.80q) error = %v, want bad_request about event", in, err)
				}
				if got.Ref != ref {
					t.Errorf("DecodeEnvelope(%.80q).Ref = %q, want %q", in, got.Ref, ref)
				}
			}
		}
	}
}

// TestDecodeEnvelopeBadRefAndBadEvent checks that an invalid ref is never
// echoed, whatever else is wrong with the frame.
func TestDecodeEnvelopeBadRefAndBadEvent(t *testing.T) {
	for _, in := range []string{
		`{"event":1,"ref":2}`,
		`{"ref":"` + strings.Repeat("r", 65) + `"}`,
		`{"event":"","ref":["r"]}`,
		`{"ref":"` + strings.Repeat("é", 65) + `","event":"a b"}`,
		`{"ref":"\ud800","event":"a b"}`,
	} {
		got, err := proto.DecodeEnvelope([]byte(in))
		if err == nil {
			t.Errorf("DecodeEnvelope(%.80q): no error", in)
			continue
		}
		if pe := wireError(t, err); pe.Code != proto.CodeBadRequest {
			t.Errorf("DecodeEnvelope(%.80q) code = %q, want bad_request", in, pe.Code)
		}
		if got.Ref != "" || got.Event != "" {
			t.Errorf("DecodeEnvelope(%.80q) = %+v, want no event and no ref", in, got)
		}
	}
}

// TestDecodeEnvelopeRefLoneSurrogate: a ref escaping a surrogate that is
// not half of a pair (what JSON.stringify writes for such a JavaScript
// string) decodes to U+FFFD in encoding/json, a ref the client never sent:
// the envelope is refused, not run and answered under another ref. A
// pair, and U+FFFD written as such, are refs like any other.
func TestDecodeEnvelopeRefLoneSurrogate(t *testing.T) {
	for _, ref := range []string{`\ud800`, `\udfff`, `a\udbffb`, `\ude00\ud83d`, `\ud83d\ude00\ud83d`} {
		in := `{"event":"sendMessage","args":{"text":"hi"},"ref":"` + ref + `"}`
		got, err := proto.DecodeEnvelope([]byte(in))
		if err == nil {
			t.Errorf("DecodeEnvelope(%s) = %+v, want an error", in, got)
			continue
		}
		if pe := wireError(t, err); pe.Code != proto.CodeBadRequest || !strings.Contains(pe.Message, "ref is not valid UTF-8") {
			t.Errorf("DecodeEnvelope(%s) error = %v, want bad_request about the ref", in, err)
		}
		if got.HasRef || got.Ref != "" || got.Event != "" {
			t.Errorf("DecodeEnvelope(%s) = %+v, want no ref and no event", in, got)
		}
	}
	for ref, want := range map[string]string{
		`\ud83d\ude00`: "\U0001F600",
		`\ufffd`:       "\uFFFD",
		"\uFFFD":       "\uFFFD",
		`a\\ud800`:     `a\ud800`,
	} {
		in := `{"event":"sendMessage","ref":"` + ref + `"}`
		got, err := proto.DecodeEnvelope([]byte(in))
		if err != nil || !got.HasRef || got.Ref != want {
			t.Errorf("DecodeEnvelope(%s) = %+v, %v; want ref %q", in, got, err, want)
		}
	}
}

func TestDecodeEnvelopeDeepNesting(t *testing.T) {
	for _, depth := range []int{5000, 9999, 10001, 100000} {
		for _, open := range []string{"[", `{"a":`} {
			close := "]"
			if open != "[" {
				close = "}"
			}
			args := strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth)
			in := []byte(`{"event":"e","ref":"r","args":` + args + `}`)
			got, err := proto.DecodeEnvelope(in)
			if json.Valid(in) {
				if err != nil {
					t.Errorf("depth %d %q: error %v", depth, open, err)
				} else if string(got.Args) != args {
					t.Errorf("depth %d %q: Args is %d bytes, want %d", depth, open, len(got.Args), len(args))
				}
				continue
			}
			if err == nil {
				t.Errorf("depth %d %q: no error for input encoding/json rejects", depth, open)
				continue
			}
			if depth <= 5000 {
				t.Errorf("depth %d %q: encoding/json rejected a shallow document", depth, open)
			}
			// It is JSON, only deeper than the gateway reads: the answer
			// says so and carries the ref.
			if pe := wireError(t, err); !strings.Contains(pe.Message, "args are nested deeper than 9999 levels") || !got.HasRef || got.Ref != "r" {
				t.Errorf("depth %d %q: %+v, %v; want the depth named, with ref r", depth, open, got, err)
			}
		}
	}
}

func TestDecodeEnvelopeArgsAliasInput(t *testing.T) {
	in := []byte(`{"event":"e","args":[1,2,3]}`)
	got, err := proto.DecodeEnvelope(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Args) == 0 || &got.Args[0] != &in[bytes.IndexByte(in, '[')] {
		t.Errorf("Args does not alias the input, as documented")
	}
}

// TestDecodeEnvelopeInvalidUTF8Ref documents that a ref holding invalid UTF-8
// (which the gateway never sees: it closes such frames with 1007) is counted
// one code point per bad byte and is encoded back as U+FFFD.
func TestDecodeEnvelopeInvalidUTF8Ref(t *testing.T) {
	got, err := proto.DecodeEnvelope([]byte("{\"event\":\"e\",\"ref\":\"" + strings.Repeat("\xff", 64) + "\"}"))
	if err != nil {
		t.Fatalf("64 invalid bytes: %v", err)
	}
	var echoed string
	if err := json.Unmarshal(proto.AppendString(nil, got.Ref), &echoed); err != nil {
		t.Fatal(err)
	}
	if echoed != strings.Repeat("\uFFFD", 64) {
		t.Errorf("echoed ref = %q, want 64 U+FFFD", echoed)
	}
	if _, err := proto.DecodeEnvelope([]byte("{\"event\":\"e\",\"ref\":\"" + strings.Repeat("\xff", 65) + "\"}")); err == nil {
		t.Errorf("65 invalid bytes: no error")
	}
}

func TestValidEventName(t *testing.T) {
	valid := []string{"a", "Z", "sendMessage", "post_updated_notification", "a-b", "a1", "A0_-z9",
		"a" + strings.Repeat("b", 63)}
	invalid := []string{"", "1", "_", "-", "1a", "_a", "-a", "a b", " a", "a ", "a.b", "a>", "a*", "a\x00",
		"a\n", "a\x7f", "é", "aé", "a\xff", "ａ", "a" + strings.Repeat("b", 64), strings.Repeat("a", 1000)}
	for _, s := range valid {
		if !proto.ValidEventName(s) {
			t.Errorf("ValidEventName(%q) = false, want true", s)
		}
	}
	for _, s := range invalid {
		if proto.ValidEventName(s) {
			t.Errorf("ValidEventName(%q) = true, want false", s)
		}
	}
	// Every single byte: only ASCII letters may start a name, and letters,
	// digits, '_' and '-' may follow.
	for c := 0; c < 256; c++ {
		b := byte(c)
		letter := (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
		tail := letter || (b >= '0' && b <= '9') || b == '_' || b == '-'
		if got := proto.ValidEventName(string([]byte{b})); got != letter {
			t.Errorf("ValidEventName(%q) = %v, want %v", b, got, letter)
		}
		if got := proto.ValidEventName(string([]byte{'a', b})); got != tail {
			t.Errorf("ValidEventName(%q) = %v, want %v", "a"+string(b), got, tail)
		}
	}
	// ValidEventName implements EventPattern without regexp; check it agrees.
	re := regexp.MustCompile(proto.EventPattern)
	for _, s := range append(valid, invalid...) {
		if got, want := proto.ValidEventName(s), re.MatchString(s); got != want {
			t.Errorf("ValidEventName(%q) = %v, EventPattern says %v", s, got, want)
		}
	}
}
