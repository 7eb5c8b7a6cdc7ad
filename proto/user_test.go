package proto

import (
	"strings"
	"testing"
)

func TestValidUser(t *testing.T) {
	for _, c := range []struct {
		user string
		ok   bool
	}{
		{"bob", true},
		{"Zoë Ω 李", true},
		{"a b", true},
		{"{18}x", true},
		{strings.Repeat("a", MaxUserLen), true},
		{"", false},
		{strings.Repeat("a", MaxUserLen+1), false},
		{"bob\n", false},
		{"bob\x00", false},
		{"\u202ebob", false}, // bidirectional override
		{"bo\u200bb", false}, // zero-width space (format)
		{"\xff", false},      // not UTF-8
		{"\t", false},
	} {
		if got := ValidUser(c.user); got != c.ok {
			t.Errorf("ValidUser(%q) = %v, want %v", c.user, got, c.ok)
		}
	}
}
