package proto_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

func TestLifecycleRoundTrip(t *testing.T) {
	tests := []proto.Lifecycle{
		{Type: proto.LifecycleTypeConnect, User: "alice", Conn: "mfzwizltmfzwi-1b", Worker: 2, At: 1700000000123},
		{Type: proto.LifecycleTypeConnect, User: "bob é", Conn: "c-2", At: 1, Resumed: true},
		{Type: proto.LifecycleTypeDisconnect, User: "alice", Conn: "c-3", Worker: 1, At: 5, Code: proto.CloseTokenExpired, Reason: "token_expired"},
		{Type: proto.LifecycleTypeDisconnect, User: "alice", Conn: "c-4", Code: 1000, Reason: "client"},
		{Type: proto.LifecycleTypeConnect, User: "alice", Conn: "c-5", Sockets: sockets(1)},
		{Type: proto.LifecycleTypeDisconnect, User: "alice", Conn: "c-5", Code: 1000, Reason: "client", Sockets: sockets(0)},
	}
	for _, want := range tests {
		body := proto.AppendLifecycle(nil, &want)
		got, err := proto.DecodeLifecycle(body)
		if err != nil {
			t.Fatalf("DecodeLifecycle(%s): %v", body, err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("round trip of %s: got %+v, want %+v", body, *got, want)
		}
		subject, ok := proto.LifecycleSubject(want.Type)
		if !ok || !strings.HasSuffix(subject, "."+want.Type) {
			t.Errorf("LifecycleSubject(%q) = %q, %v", want.Type, subject, ok)
		}
	}
}

func TestLifecycleSubjectsOutsideHandlers(t *testing.T) {
	for _, s := range []string{proto.LifecycleConnect, proto.LifecycleDisconnect} {
		if _, ok := proto.EventFromSubject(s); ok {
			t.Errorf("%s is under %s: a client event could name it", s, proto.SubjectAll)
		}
	}
	if _, ok := proto.LifecycleSubject("join"); ok {
		t.Error(`LifecycleSubject("join") ok, want false`)
	}
}

func TestDecodeLifecycleRefuses(t *testing.T) {
	tests := map[string]string{
		"not json":            `{"type":`,
		"unknown type":        `{"type":"join","user":"a","conn":"c","at":1}`,
		"no user":             `{"type":"connect","conn":"c","at":1}`,
		"control in user":     `{"type":"connect","user":"a\u0007","conn":"c","at":1}`,
		"no conn":             `{"type":"connect","user":"a","at":1}`,
		"space in conn":       `{"type":"connect","user":"a","conn":"c 1","at":1}`,
		"long conn":           `{"type":"connect","user":"a","conn":"` + strings.Repeat("c", 129) + `","at":1}`,
		"negative worker":     `{"type":"connect","user":"a","conn":"c","worker":-1,"at":1}`,
		"negative at":         `{"type":"connect","user":"a","conn":"c","at":-1}`,
		"connect with code":   `{"type":"connect","user":"a","conn":"c","at":1,"code":1000}`,
		"disconnect resumed":  `{"type":"disconnect","user":"a","conn":"c","at":1,"resumed":true}`,
		"connect of none":     `{"type":"connect","user":"a","conn":"c","at":1,"sockets":0}`,
		"sockets below 0":     `{"type":"disconnect","user":"a","conn":"c","at":1,"sockets":-1}`,
		"sockets not a count": `{"type":"disconnect","user":"a","conn":"c","at":1,"sockets":"0"}`,
		"code out of range":   `{"type":"disconnect","user":"a","conn":"c","at":1,"code":70000}`,
		"long reason":         `{"type":"disconnect","user":"a","conn":"c","at":1,"reason":"` + strings.Repeat("r", 65) + `"}`,
		"at not a number":     `{"type":"connect","user":"a","conn":"c","at":"1"}`,
		"an array, no object": `[]`,
	}
	for name, body := range tests {
		if l, err := proto.DecodeLifecycle([]byte(body)); err == nil {
			t.Errorf("%s: DecodeLifecycle(%s) = %+v, want an error", name, body, l)
		}
	}
}

// FuzzDecodeLifecycle checks that DecodeLifecycle never panics and that
// what it accepts encodes and decodes back to itself.
func FuzzDecodeLifecycle(f *testing.F) {
	for _, s := range []string{
		`{"type":"connect","user":"alice","conn":"c-1","worker":0,"at":1700000000000}`,
		`{"type":"connect","user":"alice","conn":"c-1","worker":3,"at":1,"resumed":true}`,
		`{"type":"disconnect","user":"alice","conn":"c-1","worker":0,"at":2,"code":4001,"reason":"token_expired"}`,
		`{"type":"disconnect","user":"a","conn":"c","at":2,"extra":[1,{"x":null}]}`,
		`{"type":"connect","user":"a","conn":"c","at":2,"sockets":2}`,
		`{"type":"disconnect","user":"a","conn":"c","at":2,"code":1000,"reason":"client","sockets":0}`,
		`{"type":"connect","user":"\u00e9","conn":"c","at":1e3}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := proto.DecodeLifecycle(data)
		if err != nil {
			return
		}
		again, err := proto.DecodeLifecycle(proto.AppendLifecycle(nil, l))
		if err != nil {
			t.Fatalf("accepted %q, refused its encoding: %v", data, err)
		}
		if !reflect.DeepEqual(again, l) {
			t.Fatalf("accepted %q as %+v, its encoding decodes as %+v", data, l, again)
		}
	})
}

// sockets returns &n, a Lifecycle's Sockets.
func sockets(n int) *int { return &n }
