package proto_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

func TestAppendDispatch(t *testing.T) {
	ds := []proto.Dispatch{
		{Event: "message", Args: json.RawMessage(`{"from":"alice","to":"bob","text":"hi","ts":1764072000123,"msg_id":"m1"}`),
			Users: []string{"alice", "bob"}},
		{Event: "post_updated_notification", Args: json.RawMessage(`{"post":"p1"}`), Conns: []string{"c1", "c2"}},
		{Event: "announce", Args: json.RawMessage(`"hello"`), Broadcast: true},
		{Event: "bare"}, // nil args and lists
		{Event: "e", Args: json.RawMessage(`null`), Users: []string{}, Conns: []string{}},
		{Event: "e", Args: json.RawMessage(`[1]`), Users: []string{`we"ird\`, "\u2028", "é😀", ""}, Conns: []string{"<&>"}},
		{Event: "e", Args: json.RawMessage(`{}`), Users: []string{"a"}, Conns: []string{"c1"}, SkipUsers: []string{"b", `c"`}},
		{Event: "typing", Args: json.RawMessage(`{}`), Users: []string{"a"}, Transient: true},
		{Event: "cursor", Broadcast: true, Transient: true},
		{Event: "message", Args: json.RawMessage(`{}`), Users: []string{"a"}, Except: []string{"c1", `c"2`}},
	}
	for _, d := range ds {
		out := appendTo(t, func(dst []byte) []byte { return proto.AppendDispatch(dst, &d) })
		// encoding/json writes nil lists as null; AppendDispatch as [].
		norm := d
		if norm.Users == nil {
			norm.Users = []string{}
		}
		if norm.Conns == nil {
			norm.Conns = []string{}
		}
		if want := mustMarshal(t, &norm); !bytes.Equal(out, want) {
			t.Errorf("AppendDispatch(%+v) = %s, encoding/json gives %s", d, out, want)
		}
		got, err := proto.DecodeDispatch(out)
		if err != nil {
			t.Fatalf("DecodeDispatch(%s): %v", out, err)
		}
		wantArgs := d.Args
		if string(wantArgs) == "null" {
			wantArgs = nil
		}
		if got.Event != d.Event || !bytes.Equal(got.Args, wantArgs) || (got.Args == nil) != (wantArgs == nil) ||
			!slices.Equal(got.Users, d.Users) || !slices.Equal(got.Conns, d.Conns) || !slices.Equal(got.SkipUsers, d.SkipUsers) ||
			got.Broadcast != d.Broadcast || got.Transient != d.Transient || !slices.Equal(got.Except, d.Except) {
			t.Errorf("DecodeDispatch(AppendDispatch(%+v)) = %+v", d, got)
		}
	}
}

func TestAppendDispatchEmptyArgs(t *testing.T) {
	out := proto.AppendDispatch(nil, &proto.Dispatch{Event: "e", Args: json.RawMessage{}})
	if want := `{"event":"e","args":null,"users":[],"conns":[],"broadcast":false}`; string(out) != want {
		t.Errorf("AppendDispatch with empty args = %s, want %s", out, want)
	}
}

func TestDecodeDispatch(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  proto.Dispatch
		field string // non-empty: an error naming this is expected
	}{
		{name: "to two users", in: `{"event":"message","args":{"text":"hi"},"users":["alice","bob"],"conns":[],"broadcast":false}`,
			want: proto.Dispatch{Event: "message", Args: json.RawMessage(`{"text":"hi"}`), Users: []string{"alice", "bob"}, Conns: []string{}}},
		{name: "to conns", in: `{"event":"message","args":1,"conns":["c1"]}`,
			want: proto.Dispatch{Event: "message", Args: json.RawMessage(`1`), Conns: []string{"c1"}}},
		{name: "broadcast", in: `{"event":"announce","broadcast":true}`,
			want: proto.Dispatch{Event: "announce", Broadcast: true}},
		{name: "args null is nil", in: `{"event":"e","args":null,"users":["u"]}`,
			want: proto.Dispatch{Event: "e", Users: []string{"u"}}},
		{name: "args absent is nil", in: `{"event":"e","users":["u"]}`,
			want: proto.Dispatch{Event: "e", Users: []string{"u"}}},
		{name: "args kept raw", in: `{"event":"e","args":{ "a" : [1, 2] }}`,
			want: proto.Dispatch{Event: "e", Args: json.RawMessage(`{ "a" : [1, 2] }`)}},
		{name: "unknown fields", in: `{"event":"e","v":2,"users":null}`, want: proto.Dispatch{Event: "e"}},
		{name: "skip users", in: `{"event":"e","args":1,"users":["a"],"conns":["c1"],"skip_users":["b","c"],"broadcast":false}`,
			want: proto.Dispatch{Event: "e", Args: json.RawMessage(`1`), Users: []string{"a"}, Conns: []string{"c1"}, SkipUsers: []string{"b", "c"}}},
		{name: "skip users elsewhere", in: `{"skip_users":["b"],"event":"e","conns":["c1"]}`,
			want: proto.Dispatch{Event: "e", Conns: []string{"c1"}, SkipUsers: []string{"b"}}},
		{name: "escaped user", in: `{"event":"e","users":["\u00e9\"\\"]}`,
			want: proto.Dispatch{Event: "e", Users: []string{"é\"\\"}}},

		{name: "empty", in: ``, field: "JSON"},
		{name: "not JSON", in: `{"event":"e"`, field: "JSON"},
		{name: "array", in: `[{"event":"e"}]`, field: "JSON"},
		{name: "args invalid", in: `{"event":"e","args":{]}`, field: "JSON"},
		{name: "users not a list", in: `{"event":"e","users":"alice"}`, field: "JSON"},
		{name: "users of numbers", in: `{"event":"e","users":[1]}`, field: "JSON"},
		{name: "skip users not a list", in: `{"event":"e","conns":["c1"],"skip_users":"b"}`, field: "JSON"},
		{name: "broadcast not a bool", in: `{"event":"e","broadcast":"yes"}`, field: "JSON"},
		{name: "event missing", in: `{"users":["u"]}`, field: "event"},
		{name: "event empty", in: `{"event":""}`, field: "event"},
		{name: "event invalid", in: `{"event":"a b"}`, field: "event"},
		{name: "event control char", in: `{"event":"a\u0000"}`, field: "event"},
		{name: "event too long", in: `{"event":"` + strings.Repeat("a", 65) + `"}`, field: "event"},
		{name: "event not a string", in: `{"event":1}`, field: "JSON"},
		{name: "null", in: `null`, field: "event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proto.DecodeDispatch([]byte(tt.in))
			if tt.field != "" {
				if err == nil {
					t.Fatalf("DecodeDispatch(%q) = %+v, want an error", tt.in, got)
				}
				pe := wireError(t, err)
				if pe.Code != proto.CodeBadRequest || !strings.Contains(pe.Message, tt.field) {
					t.Errorf("DecodeDispatch(%q) error = %v, want bad_request naming %q", tt.in, err, tt.field)
				}
				if got.Event != "" || got.Args != nil || got.Users != nil || got.Conns != nil || got.SkipUsers != nil || got.Broadcast {
					t.Errorf("DecodeDispatch(%q) = %+v on error, want the zero Dispatch", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeDispatch(%q): %v", tt.in, err)
			}
			if got.Event != tt.want.Event || !bytes.Equal(got.Args, tt.want.Args) || (got.Args == nil) != (tt.want.Args == nil) ||
				!slices.Equal(got.Users, tt.want.Users) || !slices.Equal(got.Conns, tt.want.Conns) ||
				!slices.Equal(got.SkipUsers, tt.want.SkipUsers) || got.Broadcast != tt.want.Broadcast {
				t.Errorf("DecodeDispatch(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestDecodeDispatchCopiesArgs checks that Args does not alias the input: a
// fan-out worker may reuse its read buffer while deliveries are queued.
func TestDecodeDispatchCopiesArgs(t *testing.T) {
	in := []byte(`{"event":"e","args":[1,2,3],"users":["u"]}`)
	d, err := proto.DecodeDispatch(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = ' '
	}
	if string(d.Args) != `[1,2,3]` {
		t.Errorf("Args changed with the input buffer: %q", d.Args)
	}
}

func TestAppendDispatchPositions(t *testing.T) {
	d := proto.Dispatch{Event: "message", Args: json.RawMessage(`{"a":1}`), Users: []string{"bob", "alice"},
		Pos: map[string]string{"alice": "e2.9-1", "bob": "e1.9-7"}}
	out := proto.AppendDispatch(nil, &d)
	// Positions follow the order of users, as the publish script writes them.
	want := `{"event":"message","args":{"a":1},"users":["bob","alice"],"conns":[],"broadcast":false,"pos":{"bob":"e1.9-7","alice":"e2.9-1"}}`
	if string(out) != want {
		t.Fatalf("AppendDispatch = %s\nwant %s", out, want)
	}
	head := proto.AppendDispatchHead(nil, &d)
	if !strings.HasPrefix(want, string(head)) || strings.Contains(string(head), "pos") {
		t.Fatalf("AppendDispatchHead = %s", head)
	}
	got, err := proto.DecodeDispatch(out)
	if err != nil || got.Pos["bob"] != "e1.9-7" || got.Pos["alice"] != "e2.9-1" || len(got.Pos) != 2 {
		t.Fatalf("DecodeDispatch = %+v, %v", got, err)
	}
	// DecodeDispatchLazy keeps them by user index, and they are written
	// back as they came.
	lazy, err := proto.DecodeDispatchLazy(out)
	if err != nil || lazy.Pos != nil || !lazy.HasPos() || lazy.UserPos(0) != "e1.9-7" || lazy.UserPos(1) != "e2.9-1" ||
		string(proto.AppendDispatch(nil, &lazy)) != want {
		t.Fatalf("DecodeDispatchLazy = %+v, %v", lazy, err)
	}
	// Other spellings go through encoding/json with the same result.
	spaced := `{ "pos" : {"alice":"e2.9-1", "bob":"e1.9-7"}, "event":"message","args":{"a":1},"users":["bob","alice"]}`
	got2, err := proto.DecodeDispatch([]byte(spaced))
	if err != nil || got2.Pos["bob"] != "e1.9-7" || got2.Pos["alice"] != "e2.9-1" {
		t.Fatalf("DecodeDispatch(spaced) = %+v, %v", got2, err)
	}
	lazy2, err := proto.DecodeDispatchLazy([]byte(spaced))
	if err != nil || lazy2.Pos != nil || lazy2.UserPos(0) != "e1.9-7" || lazy2.UserPos(1) != "e2.9-1" {
		t.Fatalf("DecodeDispatchLazy(spaced) = %+v, %v", lazy2, err)
	}
	b := proto.Dispatch{Event: "news", Args: json.RawMessage(`"x"`), Broadcast: true, BPos: "b1.3-3"}
	if got := proto.AppendDispatch(nil, &b); !strings.HasSuffix(string(got), `"broadcast":true,"bpos":"b1.3-3"}`) {
		t.Fatalf("AppendDispatch(broadcast) = %s", got)
	}
	// A v1 body (no positions) still decodes, with none.
	v1, err := proto.DecodeDispatch([]byte(`{"event":"e","args":null,"users":["a"],"conns":[],"broadcast":false}`))
	if err != nil || v1.Pos != nil || v1.BPos != "" {
		t.Fatalf("v1 body: %+v, %v", v1, err)
	}
	for _, body := range []string{
		`{"event":"e","args":null,"users":["a"],"conns":[],"broadcast":false}`,
		`{"event":"e","args":null,"users":["a"],"conns":[],"broadcast":false,"pos":{}}`,
		`{"event":"e","users":["a"],"pos":{}}`,
	} {
		if d, err := proto.DecodeDispatchLazy([]byte(body)); err != nil || d.HasPos() || d.UserPos(0) != "" {
			t.Fatalf("DecodeDispatchLazy(%s) = %+v, %v, want no positions", body, d, err)
		}
	}
	if _, err := proto.DecodeDispatch([]byte(`{"event":"e","users":["a"],"pos":{"a":1}}`)); err == nil {
		t.Fatal("a position that is not a string was accepted")
	}
}

// TestDecodeDispatchLastMentionPosition: a body that names a user twice
// is read as encoding/json reads it into a map, the last position taking
// the place of the first, which is then not checked either.
func TestDecodeDispatchLastMentionPosition(t *testing.T) {
	body := []byte(`{"event":"e","args":0,"users":["a","a"],"conns":[],"broadcast":false,"pos":{"a":"0","a":"e.1-2"}}`)
	if d, err := proto.DecodeDispatch(body); err != nil || d.Pos["a"] != "e.1-2" {
		t.Fatalf("DecodeDispatch = %+v, %v", d, err)
	}
	if d, err := proto.DecodeDispatchLazy(body); err != nil || d.UserPos(1) != "e.1-2" {
		t.Fatalf("DecodeDispatchLazy = %+v, %v", d, err)
	}
	bad := []byte(`{"event":"e","args":0,"users":["a","a"],"conns":[],"broadcast":false,"pos":{"a":"e.1-2","a":"0"}}`)
	if _, err := proto.DecodeDispatch(bad); err == nil {
		t.Fatal("DecodeDispatch accepted a bad last position")
	}
	if _, err := proto.DecodeDispatchLazy(bad); err == nil {
		t.Fatal("DecodeDispatchLazy accepted a bad last position")
	}
}

func TestDecodeDispatchRefusesBadPositions(t *testing.T) {
	for _, body := range []string{
		`{"event":"e","args":null,"users":["a"],"conns":[],"broadcast":false,"pos":{"a":"not a position"}}`,
		`{"event":"e","args":null,"users":[],"conns":[],"broadcast":true,"bpos":"E.1-1"}`,
		`{"pos":{"a":"x.01-1"},"event":"e","users":["a"]}`,
		// Every position is checked, not only those of users a worker holds:
		// a body is refused by all workers or by none.
		`{"event":"e","args":null,"users":["a","b","c"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1","b":"x.1-01","c":"x.1-3"}}`,
		`{"event":"e","args":null,"users":["a"],"conns":[],"broadcast":false,"pos":{"a":"x.1-1","z":"x.18446744073709551616-1"}}`,
		`{"event":"e","args":null,"users":[],"conns":["c"],"broadcast":false,"pos":{"z":""}}`,
		`{"event":"e","args":null,"users":["a"],"conns":[],"broadcast":false,"pos":{"a":""}}`,
	} {
		if _, err := proto.DecodeDispatchLazy([]byte(body)); err == nil {
			t.Errorf("DecodeDispatchLazy(%s) accepted it", body)
		}
		if _, err := proto.DecodeDispatch([]byte(body)); err == nil {
			t.Errorf("DecodeDispatch(%s) accepted it", body)
		}
	}
}

// TestDispatchPrintsAsJSON: a dispatch printed with %v or %+v, as a
// test's failure message prints what a Recorder holds, shows its args as
// JSON, not as a list of bytes.
func TestDispatchPrintsAsJSON(t *testing.T) {
	d := proto.Dispatch{Event: "message", Args: json.RawMessage(`{"text":"hi"}`), Users: []string{"bob"}}
	want := `{"event":"message","args":{"text":"hi"},"users":["bob"],"conns":[],"broadcast":false}`
	for _, format := range []string{"%v", "%+v", "%s"} {
		if got := fmt.Sprintf(format, d); got != want {
			t.Errorf("%s: %s, want %s", format, got, want)
		}
	}
	if got := fmt.Sprintf("%v", []proto.Dispatch{d}); got != "["+want+"]" {
		t.Errorf("a slice with %%v: %s", got)
	}
}
