package proto

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzRequestFastPath checks that the direct scan of the canonical form and
// encoding/json agree on every input the scan accepts.
func FuzzRequestFastPath(f *testing.F) {
	for _, r := range []Request{
		{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob","text":"hi \"there\" é"}`), User: "alice", Conn: "c1", Ref: "r1"},
		{Event: "ping", User: "u", Conn: "c"},
		{Event: "e", Args: json.RawMessage(`[1, 2 ,{"a":"]"}]`), User: "ü", Conn: ""},
		{Event: "e", Args: json.RawMessage(`"s"`), User: `x\y`, Conn: "c", Ref: `"`},
		{Event: "e", Args: json.RawMessage(`12.5e3`), User: "u", Conn: "c"},
		{Event: "e", Args: json.RawMessage(`null`), User: "u", Conn: "c"},
	} {
		f.Add(AppendRequest(nil, &r))
	}
	f.Add([]byte(`{"event":"e","args":null,"user":"u","conn":"c"} `))
	f.Add([]byte(`{"event":"e","args":1,"user":"u","conn":"c","ref":"r","user":"v"}`))
	f.Add([]byte(`{"event":"e","args":1,"user":"","conn":"c"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeCanonicalRequest(data)
		if !ok {
			return
		}
		slow, err := decodeRequestJSON(data)
		if err != nil {
			t.Fatalf("fast path accepted %q, encoding/json: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %#v\njson %#v", data, fast, slow)
		}
	})
}

func TestRequestFastPathTakesCanonicalForm(t *testing.T) {
	for _, r := range []Request{
		{Event: "sendMessage", Args: json.RawMessage(`{"to":"bob","text":"hi"}`), User: "alice", Conn: "c1", Ref: "r1"},
		{Event: "ping", User: "alice", Conn: "c1"}, // args null, no ref
	} {
		data := AppendRequest(nil, &r)
		got, ok := decodeCanonicalRequest(data)
		if !ok {
			t.Fatalf("canonical request %s not taken by the fast path", data)
		}
		if want, _ := decodeRequestJSON(data); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: fast %#v, json %#v", data, got, want)
		}
	}
}
