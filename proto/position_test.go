package proto_test

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

func TestParsePos(t *testing.T) {
	tests := []struct {
		in   string
		want proto.Pos
		ok   bool
	}{
		{"abc123.1764072000123-42", proto.Pos{Epoch: "abc123", MS: 1764072000123, Off: 42}, true},
		{"z.0-0", proto.Pos{Epoch: "z", MS: 0, Off: 0}, true},
		{strings.Repeat("a", 32) + ".18446744073709551615-18446744073709551615",
			proto.Pos{Epoch: strings.Repeat("a", 32), MS: 1<<64 - 1, Off: 1<<64 - 1}, true},
		{"", proto.Pos{}, false},
		{"abc", proto.Pos{}, false},
		{"abc.", proto.Pos{}, false},
		{".1-1", proto.Pos{}, false},
		{"ABC.1-1", proto.Pos{}, false}, // upper case is not an epoch
		{"a-b.1-1", proto.Pos{}, false}, // nor a dash
		{strings.Repeat("a", 33) + ".1-1", proto.Pos{}, false},
		{"e.1", proto.Pos{}, false},
		{"e.1-", proto.Pos{}, false},
		{"e.-1", proto.Pos{}, false},
		{"e.01-1", proto.Pos{}, false}, // leading zero
		{"e.1-+1", proto.Pos{}, false},
		{"e.1--1", proto.Pos{}, false},
		{"e.1-1.2", proto.Pos{}, false},
		{"e.18446744073709551616-1", proto.Pos{}, false}, // overflow
		{"e.1-1 ", proto.Pos{}, false},
		{"e.１-1", proto.Pos{}, false}, // a full-width digit
		{"e." + strings.Repeat("1", 200) + "-1", proto.Pos{}, false},
	}
	for _, tt := range tests {
		got, ok := proto.ParsePos(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParsePos(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if ok && got.String() != tt.in {
			t.Errorf("ParsePos(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestPosID(t *testing.T) {
	p := proto.Pos{Epoch: "e1", MS: 17, Off: 3}
	if got := p.ID(); got != "17-3" {
		t.Errorf("ID() = %q", got)
	}
	if got := string(p.Append([]byte("x"))); got != "xe1.17-3" {
		t.Errorf("Append = %q", got)
	}
}

func FuzzParsePos(f *testing.F) {
	for _, s := range []string{"abc.1-2", "z.0-0", "e.01-1", "", ".", "a.b-c", "a.18446744073709551616-1", "a.18446744073709551615-0", "a.99999999999999999999-0", "a.1-0.", "a.-1", "a.1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := proto.ParsePos(s)
		if proto.ValidPos(s) != ok {
			t.Fatalf("ValidPos(%q) = %v, ParsePos ok = %v", s, !ok, ok)
		}
		if !ok {
			if p != (proto.Pos{}) {
				t.Fatalf("ParsePos(%q) failed but returned %+v", s, p)
			}
			return
		}
		if len(s) > proto.MaxPosLen || !proto.ValidEpoch(p.Epoch) {
			t.Fatalf("ParsePos(%q) accepted %+v", s, p)
		}
		if p.String() != s { // canonical: one spelling per position
			t.Fatalf("ParsePos(%q).String() = %q", s, p.String())
		}
	})
}
