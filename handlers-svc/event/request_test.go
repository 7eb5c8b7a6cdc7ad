package event_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

type chatArgs struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

type Base struct {
	Post string `json:"post"`
}

type nested struct {
	Base
	Mentions []string       `json:"mentions"`
	Items    []item         `json:"items"`
	Counts   map[string]int `json:"counts"`
	Limit    *uint8         `json:"limit"`
	Ratio    float64        `json:"ratio"`
	Flag     bool
	Blob     []byte `json:"blob"`
}

type item struct {
	ID int `json:"id"`
}

// strictID rejects non-numeric ids with its own message.
type strictID string

func (s *strictID) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '"' {
		return event.BadRequest("args.id must be a quoted id")
	}
	if string(b) == `"secret"` {
		return errors.New("internal: lookup table corrupt")
	}
	return json.Unmarshal(b, (*string)(s))
}

type withID struct {
	ID strictID `json:"id"`
}

// timed has times, whose decoding errors are not type errors but
// time.Time's own.
type timed struct {
	To    string     `json:"to"`
	At    time.Time  `json:"at"`
	Until *time.Time `json:"until"`
}

// sized has integers narrower than 64 bits.
type sized struct {
	Level int8     `json:"level"`
	Ports []uint16 `json:"ports"`
}

// indexed has structs inside maps and nested slices.
type indexed struct {
	ByName map[string]item `json:"byName"`
	Grid   [][]item        `json:"grid"`
}

// named has structs of two fields inside a map, so that two elements can
// fail on different fields.
type named struct {
	ByName map[string]struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"byName"`
	Items []item `json:"items"`
}

// keyed has maps whose keys are not strings.
type keyed struct {
	ByID map[int]string `json:"by_id"`
	Any  map[uint]any   `json:"any"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		args    string // "" means absent
		into    func() any
		want    any    // the decoded value when wantErr is ""
		wantErr string // the bad_request message
	}{
		{"absent into struct", "", func() any { return &chatArgs{} }, &chatArgs{}, ""},
		{"null into struct", "null", func() any { return &chatArgs{} }, &chatArgs{}, ""},
		{"object", `{"to":"bob","text":"hi"}`, func() any { return &chatArgs{} }, &chatArgs{To: "bob", Text: "hi"}, ""},
		{"unknown fields ignored", `{"to":"bob","x":1}`, func() any { return &chatArgs{} }, &chatArgs{To: "bob"}, ""},
		{"case-insensitive key", `{"TO":"bob"}`, func() any { return &chatArgs{} }, &chatArgs{To: "bob"}, ""},
		{"to wrong type", `{"to":5,"text":"hi"}`, func() any { return &chatArgs{} }, nil, "args.to must be a string"},
		{"text object", `{"text":{"a":1}}`, func() any { return &chatArgs{} }, nil, "args.text must be a string"},
		{"args string", `"hello"`, func() any { return &chatArgs{} }, nil, "args must be an object"},
		{"args array", `[1,2]`, func() any { return &chatArgs{} }, nil, "args must be an object"},
		{"args number", `12`, func() any { return &chatArgs{} }, nil, "args must be an object"},
		{"mentions not array", `{"mentions":"bob"}`, func() any { return &nested{} }, nil, "args.mentions must be an array of strings"},
		{"mentions element", `{"mentions":["bob",7]}`, func() any { return &nested{} }, nil, "args.mentions must be an array of strings"},
		{"embedded field", `{"post":1}`, func() any { return &nested{} }, nil, "args.post must be a string"},
		{"struct in slice", `{"items":[{"id":"x"}]}`, func() any { return &nested{} }, nil, "args.items[0].id must be an integer"},
		{"struct in slice, later element", `{"items":[{"id":1},{"id":2},{"id":true}]}`, func() any { return &nested{} }, nil, "args.items[2].id must be an integer"},
		{"struct in slice, key of another case", `{"ITEMS":[{"id":1},{"ID":"x"}]}`, func() any { return &nested{} }, nil, "args.items[1].id must be an integer"},
		{"struct in map", `{"byName":{"a":{"id":1},"b":{"id":"x"}}}`, func() any { return &indexed{} }, nil, `args.byName["b"].id must be an integer`},
		{"struct in nested slices", `{"grid":[[{"id":1}],[{"id":2},{"id":[]}]]}`, func() any { return &indexed{} }, nil, "args.grid[1][1].id must be an integer"},
		// encoding/json reports the first wrong value in the order of the
		// text, not of the keys sorted: "a" is wrong too, but in its name.
		{"struct in map, first in the text", `{"byName":{"b":{"id":"x"},"a":{"name":5}}}`, func() any { return &named{} }, nil, `args.byName["b"].id must be an integer`},
		{"field named in two cases, the later one wrong", `{"items":[{"id":1}],"ITEMS":[{"id":"x"}]}`, func() any { return &named{} }, nil, "args.items[0].id must be an integer"},
		{"long key", `{"byName":{"` + strings.Repeat("k", 100) + `":{"id":"x"}}}`, func() any { return &indexed{} }, nil, `args.byName["` + strings.Repeat("k", 32) + `…"].id must be an integer`},
		{"top-level slice of structs", `[{"id":1},{"id":"x"}]`, func() any { return &[]item{} }, nil, "args[1].id must be an integer"},
		{"slice of structs", `{"items":{"id":1}}`, func() any { return &nested{} }, nil, "args.items must be an array of objects"},
		{"map value", `{"counts":{"a":"b"}}`, func() any { return &nested{} }, nil, "args.counts must be an object whose values are integers"},
		{"uint overflow", `{"limit":300}`, func() any { return &nested{} }, nil, "args.limit must be an integer from 0 to 255"},
		{"uint negative", `{"limit":-1}`, func() any { return &nested{} }, nil, "args.limit must be an integer from 0 to 255"},
		{"float", `{"ratio":"1"}`, func() any { return &nested{} }, nil, "args.ratio must be a number"},
		{"bool by Go name", `{"Flag":"yes"}`, func() any { return &nested{} }, nil, "args.Flag must be a boolean"},
		{"bytes", `{"blob":1}`, func() any { return &nested{} }, nil, "args.blob must be a base64 string"},
		{"top-level slice", `["a",1]`, func() any { return &[]string{} }, nil, "args must be an array of strings"},
		{"top-level string", `{}`, func() any { var s string; return &s }, nil, "args must be a string"},
		{"map target", `{"a":1}`, func() any { return &map[string]any{} }, &map[string]any{"a": 1.0}, ""},
		{"invalid JSON", `{"to":`, func() any { return &chatArgs{} }, nil, "args is not valid JSON"},
		{"custom *Error kept", `{"id":5}`, func() any { return &withID{} }, nil, "args.id must be a quoted id"},
		{"custom error hidden", `{"id":"secret"}`, func() any { return &withID{} }, nil, "args.id is invalid"},
		{"time not RFC 3339", `{"to":"bob","at":"yesterday"}`, func() any { return &timed{} }, nil, "args.at must be a time in RFC 3339 format"},
		{"time not a string", `{"at":5}`, func() any { return &timed{} }, nil, "args.at must be a time in RFC 3339 format"},
		{"time pointer", `{"until":"soon"}`, func() any { return &timed{} }, nil, "args.until must be a time in RFC 3339 format"},
		{"time", `{"at":"2026-12-03T08:00:00Z"}`, func() any { return &timed{} }, &timed{At: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)}, ""},
		{"int8 overflow", `{"level":200}`, func() any { return &sized{} }, nil, "args.level must be an integer from -128 to 127"},
		{"uint16 overflow", `{"ports":[1,70000]}`, func() any { return &sized{} }, nil, "args.ports must be an array of integers from 0 to 65535"},
		{"map key", `{"by_id":{"abc":"x"}}`, func() any { return &keyed{} }, nil, "args.by_id must be an object whose keys are integers and whose values are strings"},
		{"map value, integer keys", `{"by_id":{"1":2}}`, func() any { return &keyed{} }, nil, "args.by_id must be an object whose keys are integers and whose values are strings"},
		{"map key, any values", `{"any":{"-1":true}}`, func() any { return &keyed{} }, nil, "args.any must be an object whose keys are non-negative integers"},
		{"integer keys", `{"by_id":{"7":"x"}}`, func() any { return &keyed{} }, &keyed{ByID: map[int]string{7: "x"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &event.Request{Event: "e", User: "u"}
			if tt.args != "" {
				r.Args = json.RawMessage(tt.args)
			}
			v := tt.into()
			err := r.Decode(v)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !reflect.DeepEqual(v, tt.want) {
					t.Fatalf("decoded %#v, want %#v", v, tt.want)
				}
				return
			}
			e, ok := errors.AsType[*event.Error](err)
			if !ok {
				t.Fatalf("Decode error %v (%T), want *event.Error", err, err)
			}
			if e.Code != proto.CodeBadRequest || e.Message != tt.wantErr {
				t.Fatalf("Decode error %q %q, want bad_request %q", e.Code, e.Message, tt.wantErr)
			}
		})
	}
}

func TestDecodeNotAPointer(t *testing.T) {
	r := &event.Request{Args: json.RawMessage(`{}`)}
	var v chatArgs
	err := r.Decode(v)
	if err == nil {
		t.Fatal("Decode into a non-pointer succeeded")
	}
	if w := event.WireError(err); w.Code != proto.CodeHandlerError {
		t.Fatalf("code %s, want handler_error: a programming error is not the client's fault", w.Code)
	}
}

// FuzzDecode checks that Decode never panics on outside input and that every
// failure is a bad_request naming args, never decoder text.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"to":"bob","text":"hi"}`, `null`, `"x"`, `{"mentions":["a",1]}`, `{"items":[{"id":"x"}]}`, `{"limit":1e400}`, `[`,
		`{"byName":{"a":{"id":"x"}}}`, `{"grid":[[],[{"id":{}}]]}`, `{"by_id":{"x":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &event.Request{Args: data}
		for _, v := range []any{&nested{}, &indexed{}, &keyed{}} {
			err := r.Decode(v)
			if err == nil {
				continue
			}
			e, ok := errors.AsType[*event.Error](err)
			if !ok || e.Code != proto.CodeBadRequest {
				t.Fatalf("Decode(%q) into %T = %v, want a bad_request *event.Error", data, v, err)
			}
			if !strings.HasPrefix(e.Message, "args") || strings.Contains(e.Message, "json:") || !utf8.ValidString(e.Message) {
				t.Fatalf("Decode(%q) into %T: message %q leaks decoder text", data, v, e.Message)
			}
			if len(e.Message) > 256 {
				t.Fatalf("Decode(%q) into %T: message of %d bytes, %q", data, v, len(e.Message), e.Message)
			}
		}
	})
}

// tree is an args type that holds itself: a client picks how deep the
// path of a wrong value goes.
type tree struct {
	Kids []tree `json:"kids"`
	ID   int    `json:"id"`
}

// TestDecodeDeepPathBounded: the elements a wrong value is named by are
// looked for in args along the path, each step reading what is below it:
// at every depth, that made a 24 KB request to a handler whose args type
// holds itself take seconds of CPU (3,000 levels). The steps are bounded:
// below the first 16 containers, the path names no more elements.
func TestDecodeDeepPathBounded(t *testing.T) {
	const depth = 3000
	args := strings.Repeat(`{"kids":[`, depth) + `{"id":"x"}` + strings.Repeat(`]}`, depth)
	start := time.Now()
	err := (&event.Request{Args: json.RawMessage(args)}).Decode(&tree{})
	took := time.Since(start)
	e := event.WireError(err)
	if e == nil || e.Code != proto.CodeBadRequest {
		t.Fatalf("Decode: %v, want bad_request", err)
	}
	if !strings.HasPrefix(e.Message, "args"+strings.Repeat(".kids[0]", 16)+".kids.kids") || !strings.HasSuffix(e.Message, ".id must be an integer") {
		t.Fatalf("message %.400q..., want the first 16 elements named, then the fields only", e.Message)
	}
	t.Logf("%d bytes of args %d deep: %v", len(args), depth, took)
}

// selfSlice is a slice type that contains itself.
type selfSlice []selfSlice

// TestDecodeSelfContainingType: a type error in a field of a type that
// contains itself ends with a message; walk never loops on it.
func TestDecodeSelfContainingType(t *testing.T) {
	type holder struct {
		Tree selfSlice `json:"tree"`
		N    int       `json:"n"`
	}
	for _, args := range []string{`{"tree":[[[1]]]}`, `{"tree":"x"}`, `{"tree":[[]],"n":"x"}`} {
		r := &event.Request{Event: "e", User: "u", Args: json.RawMessage(args)}
		err := r.Decode(&holder{})
		if e, ok := errors.AsType[*event.Error](err); !ok || e.Code != proto.CodeBadRequest || !strings.HasPrefix(e.Message, "args") {
			t.Errorf("Decode(%s) = %v, want a bad_request naming the field", args, err)
		}
	}
}
