package proto_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

func TestParsePrev(t *testing.T) {
	eight := strings.TrimSuffix(strings.Repeat("c,", proto.MaxPrev), ",")
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"w0-1", []string{"w0-1"}},
		{"w0-1,w1-2", []string{"w0-1", "w1-2"}},
		{eight, strings.Split(eight, ",")},
		{eight + ",c", nil}, // too many
		{"w0-1,", nil},      // an empty id
		{",w0-1", nil},
		{"w0 1", nil}, // not printable ASCII
		{"w0-\u00e9", nil},
		{strings.Repeat("c", proto.MaxPrevConn), []string{strings.Repeat("c", proto.MaxPrevConn)}},
		{strings.Repeat("c", proto.MaxPrevConn+1), nil}, // too long
	} {
		if got := proto.ParsePrev(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("ParsePrev(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParsePrev(f *testing.F) {
	f.Add("w0-1,w1-2")
	f.Add(",,")
	f.Fuzz(func(t *testing.T, v string) {
		ids := proto.ParsePrev(v)
		if ids == nil {
			return
		}
		if len(ids) > proto.MaxPrev || strings.Join(ids, ",") != v {
			t.Fatalf("ParsePrev(%q) = %q", v, ids)
		}
	})
}
