package proto

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDispatchFastPath checks that the direct scan of the canonical form
// and encoding/json agree on every input the scan accepts and whose
// positions it finds valid (the decoders leave the others to
// encoding/json), the positions by user index of the one read into a map
// as encoding/json reads them.
func FuzzDispatchFastPath(f *testing.F) {
	for _, d := range []Dispatch{
		{Event: "message", Args: json.RawMessage(`{"from":"u0","to":"u1","text":"hi \"there\" é","ts":1}`), Users: []string{"u1"}},
		{Event: "message_sent", Args: json.RawMessage(`[1, 2 ,{"a":"]"}]`), Users: []string{"a", "b", "c"}, Conns: []string{"c1"}},
		{Event: "announce", Broadcast: true},
		{Event: "e", Args: json.RawMessage(`"s"`), Conns: []string{"", "x\\y"}},
		{Event: "e", Args: json.RawMessage(`12.5e3`), Users: []string{"ü"}},
		{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"a", "b"}, Pos: map[string]string{"a": "e1.5-1", "b": "e2.5-9"}},
		{Event: "announce", Args: json.RawMessage(`1`), Broadcast: true, BPos: "eb.7-7"},
		{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"a"}, Conns: []string{"c1", "c2"}, SkipUsers: []string{"b", "c"},
			Pos: map[string]string{"a": "e1.5-2"}},
		{Event: "typing", Args: json.RawMessage(`{}`), Users: []string{"a"}, Transient: true},
		{Event: "cursor", Broadcast: true, Transient: true},
		{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"a", "b"}, Except: []string{"c1"}, Pos: map[string]string{"a": "e1.5-3"}},
		{Event: "typing", Users: []string{"a"}, Transient: true, Except: []string{"c1", "c2"}},
		{Event: "announce", Broadcast: true, Except: []string{"c1"}, BPos: "eb.7-8"},
	} {
		f.Add(AppendDispatch(nil, &d))
	}
	f.Add([]byte(`{"event":"e","args":null,"users":[],"conns":[],"broadcast":false} `))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":true,"event":"f"}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a","a"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1","a":"y.1-2"}}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"pos":{},"bpos":"b.1-1"}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":["c"],"skip_users":[],"broadcast":false}`))
	f.Add([]byte(`{"event":"e","args":1,"users":[],"conns":["c"],"skip_users":["b","b"],"broadcast":false,"skip_users":["d"]}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"transient":true,"transient":false}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"transient":false}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"except":[]}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"except":["c"],"except":null}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"except":["c\u0022"]}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"except":"c"}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a","b"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1","b":"nope"}}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a","b"],"conns":[],"broadcast":false,"pos":{"b":"x.1-1","a":"x.1-2"}}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a","b"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1"}}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1","c":"x.1-2"}}`))
	f.Add([]byte(`{"event":"e","args":1,"users":[],"conns":[],"broadcast":false,"pos":{"c":"x.1-2"}}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"pos":{"a":""}}`))
	f.Add([]byte(`{"event":"e","args":1,"users":["a"],"conns":[],"broadcast":false,"pos":{"a":"x.1-\u0031"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeCanonicalDispatch(data)
		if !ok {
			return
		}
		if checkPositions(&fast) != nil {
			return
		}
		slow, err := decodeDispatchJSON(data)
		if err != nil {
			t.Fatalf("fast path accepted %q, encoding/json: %v", data, err)
		}
		if !reflect.DeepEqual(byUser(fast), slow) {
			t.Fatalf("%q:\nfast %#v\njson %#v", data, fast, slow)
		}
	})
}

func TestDispatchFastPathTakesCanonicalForm(t *testing.T) {
	d := Dispatch{Event: "message", Args: json.RawMessage(`{"text":"hi"}`), Users: []string{"u1", "u2"}}
	if _, ok := decodeCanonicalDispatch(AppendDispatch(nil, &d)); !ok {
		t.Fatal("canonical dispatch not taken by the fast path")
	}
}

func TestDispatchFastPathTakesExcept(t *testing.T) {
	d := Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"u1"}, Transient: true, Except: []string{"c1", "c2"}}
	got, ok := decodeCanonicalDispatch(AppendDispatch(nil, &d))
	if !ok {
		t.Fatal("canonical dispatch with except not taken by the fast path")
	}
	if !reflect.DeepEqual(got.Except, d.Except) || !got.Transient {
		t.Fatalf("fast path read %+v, want except %v and transient", got, d.Except)
	}
	v1 := Dispatch{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"u1"}}
	if body := string(AppendDispatch(nil, &v1)); body != `{"event":"message","args":{},"users":["u1"],"conns":[],"broadcast":false}` {
		t.Fatalf("a dispatch without except is written %s, not as v1 wrote it", body)
	}
}

func TestDispatchFastPathTakesPositions(t *testing.T) {
	d := Dispatch{Event: "message", Args: json.RawMessage(`{"text":"hi"}`), Users: []string{"u1", "u2"}, Conns: []string{},
		Pos: map[string]string{"u1": "e.1-1", "u2": "f.1-3"}}
	got, ok := decodeCanonicalDispatch(AppendDispatch(nil, &d))
	d.Pos, d.userPos = nil, []string{"e.1-1", "f.1-3"} // as decoded: by user index
	if !ok || !reflect.DeepEqual(got, d) {
		t.Fatalf("fast path: %+v, %v", got, ok)
	}
	s := Dispatch{Event: "message", Args: json.RawMessage(`1`), Users: []string{"u1"}, Conns: []string{"c1"}, SkipUsers: []string{"u2", "u3"},
		Pos: map[string]string{"u1": "e.1-1"}}
	got, ok = decodeCanonicalDispatch(AppendDispatch(nil, &s))
	s.Pos, s.userPos = nil, []string{"e.1-1"}
	if !ok || !reflect.DeepEqual(got, s) {
		t.Fatalf("fast path with skip_users: %+v, %v", got, ok)
	}
	b := Dispatch{Event: "all", Args: json.RawMessage(`1`), Broadcast: true, BPos: "b.2-2"}
	if got, ok := decodeCanonicalDispatch(AppendDispatch(nil, &b)); !ok || got.BPos != "b.2-2" || !got.Broadcast {
		t.Fatalf("fast path: %+v, %v", got, ok)
	}
}
