package query_test

import (
	"net/url"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/query"
)

func TestFirst(t *testing.T) {
	for _, tt := range []struct {
		raw, value string
		found, ok  bool
	}{
		{"", "", false, true},
		{"a=1", "", false, true},
		{"p=1", "1", true, true},
		{"p=", "", true, true},
		{"p", "", true, true},
		{"p=1&p=2", "1", true, true},
		{"%70=a%2Eb", "a.b", true, true},
		{"p=%ZZ&p=2", "", true, false},    // the first decides
		{"p=1;x&p=2", "", true, false},    // a ';' in its value
		{"x;p=1&p=2", "2", true, true},    // a ';' in the name: not p
		{"p;x=1&p=2", "2", true, true},    // likewise
		{"a=1;p=1&p=2", "2", true, true},  // p is in a's value
		{"%ZZ=1&p=2", "2", true, true},    // a name that does not decode
		{"p=a+b", "a b", true, true},      // as net/url decodes
		{"q=1&&p=3&p=4", "3", true, true}, // empty pairs
		{"p=a=b", "a=b", true, true},      // the first '=' splits
		{"x=%ZZ&p=5", "5", true, true},    // another's bad escape
		{"p%3Bx=1&p=6", "6", true, true},  // "p;x" once decoded: not p
	} {
		value, found, ok := query.First(tt.raw, "p")
		if value != tt.value || found != tt.found || ok != tt.ok {
			t.Errorf("First(%q, p) = %q, %v, %v; want %q, %v, %v", tt.raw, value, found, ok, tt.value, tt.found, tt.ok)
		}
	}
}

// FuzzFirst: where net/url reads the whole query, First reads what it
// does; it never panics.
func FuzzFirst(f *testing.F) {
	for _, s := range []string{"p=1", "p=1&p=2", "x;p=1&p=2", "p=%ZZ", "p=a+b%20c", "%70=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		value, found, ok := query.First(raw, "p")
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if !ok || found != q.Has("p") || value != q.Get("p") {
			t.Fatalf("First(%q) = %q, %v, %v; net/url reads %q (has %v)", raw, value, found, ok, q.Get("p"), q.Has("p"))
		}
	})
}
