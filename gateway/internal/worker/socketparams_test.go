package worker

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// firstParam is an independent reading of what socketParams documents for
// each parameter: the first pair of the query named name, as auth reads
// the token (query.First): pairs split on '&', the name before the first
// '=', %-decoded; a name that does not decode or holds a ';' names no
// parameter. asked is false when no pair names it; readable is false when
// that first pair's value does not decode (a bad %-escape, or a ';'
// net/url refuses): for a resume, the client then asked for a resume the
// query cannot decode (docs/protocol.md section 6: recovered false); a
// heartbeat is then not asked for, and a prev names nothing (section 2,
// section 6).
func firstParam(rawQuery, name string) (value string, asked, readable bool) {
	for _, pair := range strings.Split(rawQuery, "&") {
		kv := strings.SplitN(pair, "=", 2)
		if pair == "" || strings.Contains(kv[0], ";") {
			continue
		}
		if k, err := url.QueryUnescape(kv[0]); err != nil || k != name {
			continue
		}
		if len(kv) == 1 {
			return "", true, true
		}
		value, err := url.QueryUnescape(kv[1])
		return value, true, err == nil && !strings.Contains(kv[1], ";")
	}
	return "", false, false
}

// checkSocketParams holds socketParams(rawQuery) to its documentation and
// to the contract (PROTOCOL.md sections 2 and 6, docs/protocol.md).
func checkSocketParams(t *testing.T, rawQuery string) {
	t.Helper()
	p := socketParams(rawQuery)
	q, err := url.ParseQuery(rawQuery)

	// Where net/url reads the query, socketParams reads what it does.
	if err == nil {
		// An empty resume or bresume is there, and malformed: unreadable.
		want := func(name string) string {
			if v := q.Get(name); v != "" || !q.Has(name) {
				return v
			}
			return unreadable
		}
		if p.resume != want("resume") || p.bresume != want("bresume") {
			t.Fatalf("socketParams(%q): resume %q bresume %q; url.ParseQuery reads %q and %q (an empty one is unreadable)",
				rawQuery, p.resume, p.bresume, q.Get("resume"), q.Get("bresume"))
		}
		if p.heartbeat != (q.Get(proto.QueryHeartbeat) == "1") {
			t.Fatalf("socketParams(%q): heartbeat %v; url.ParseQuery reads %q", rawQuery, p.heartbeat, q.Get(proto.QueryHeartbeat))
		}
		if want := proto.ParsePrev(q.Get(proto.QueryPrev)); !slices.Equal(p.prev, want) {
			t.Fatalf("socketParams(%q): prev %q; url.ParseQuery reads %q", rawQuery, p.prev, want)
		}
	}

	for _, r := range []struct{ name, got string }{{"resume", p.resume}, {"bresume", p.bresume}} {
		value, asked, readable := firstParam(rawQuery, r.name)
		switch {
		case !asked && r.got != "":
			// A resume the client never named would have connected say
			// recovered (false) to a client that did not ask.
			t.Fatalf("socketParams(%q): %s %q, but no pair names %s", rawQuery, r.name, r.got, r.name)
		case asked && readable && value == "" && r.got != unreadable:
			// Named but empty: a malformed position, so connected says
			// recovered (false) to a client that asked.
			t.Fatalf("socketParams(%q): %s %q; its first %s parameter is empty: the client asked for a resume", rawQuery, r.name, r.got, r.name)
		case asked && readable && value != "" && r.got != value:
			// The first of each: a later pair never wins over it.
			t.Fatalf("socketParams(%q): %s %q; its first %s parameter is %q", rawQuery, r.name, r.got, r.name, value)
		case asked && !readable && r.got == "":
			// Asked for, so connected must say recovered (false).
			t.Fatalf("socketParams(%q): %s \"\", but its first %s parameter does not decode: the client asked for a resume", rawQuery, r.name, r.name)
		case asked && !readable && r.got != unreadable:
			// Whatever a later pair says, the resume the client asked
			// for first is malformed: never a position to recover from.
			t.Fatalf("socketParams(%q): %s %q, but its first %s parameter does not decode", rawQuery, r.name, r.got, r.name)
		}
		// A position it returns is one the client sent, so it is no longer
		// than the query; and any it accepts, ParsePos decodes whole.
		if r.got != unreadable && len(r.got) > len(rawQuery) {
			t.Fatalf("socketParams(%q): %s of %d bytes, from a query of %d", rawQuery, r.name, len(r.got), len(rawQuery))
		}
		if pos, ok := proto.ParsePos(r.got); ok && pos.String() != r.got {
			t.Fatalf("socketParams(%q): %s %q decodes as %q", rawQuery, r.name, r.got, pos.String())
		}
	}
	// heartbeat and prev: the first pair decides likewise; one that does
	// not decode asks for nothing, whatever a later pair says.
	if value, asked, readable := firstParam(rawQuery, proto.QueryHeartbeat); p.heartbeat != (asked && readable && value == "1") {
		t.Fatalf("socketParams(%q): heartbeat %v; its first heartbeat parameter is %q (named %v, decodes %v)",
			rawQuery, p.heartbeat, value, asked, readable)
	}
	if value, asked, readable := firstParam(rawQuery, proto.QueryPrev); asked && !readable && p.prev != nil ||
		asked && readable && !slices.Equal(p.prev, proto.ParsePrev(value)) || !asked && p.prev != nil {
		t.Fatalf("socketParams(%q): prev %q; its first prev parameter is %q (named %v, decodes %v)",
			rawQuery, p.prev, value, asked, readable)
	}
	if _, ok := proto.ParsePos(unreadable); ok {
		t.Fatalf("unreadable (%q) parses as a position", unreadable)
	}

	// prev: at most MaxPrev ids of 1 to MaxPrevConn bytes of printable
	// ASCII, or nil (docs/protocol.md section 6); only from a prev the
	// client sent.
	if len(p.prev) > proto.MaxPrev {
		t.Fatalf("socketParams(%q): %d prev ids, more than %d", rawQuery, len(p.prev), proto.MaxPrev)
	}
	for _, id := range p.prev {
		if id == "" || len(id) > proto.MaxPrevConn {
			t.Fatalf("socketParams(%q): prev id %q of %d bytes", rawQuery, id, len(id))
		}
		for i := 0; i < len(id); i++ {
			if id[i] <= ' ' || id[i] > '~' {
				t.Fatalf("socketParams(%q): prev id %q holds byte %#x", rawQuery, id, id[i])
			}
		}
	}
	if p.prev != nil && !strings.Contains(rawQuery, "=") {
		t.Fatalf("socketParams(%q): prev %q from a query without a value", rawQuery, p.prev)
	}
	if p.heartbeat && !strings.Contains(rawQuery, "=") {
		t.Fatalf("socketParams(%q): heartbeat from a query without a value", rawQuery)
	}
}

// FuzzSocketParams: the query of a client's upgrade request, which the
// gateway reads after admission (which read the token from it) and before
// anything else: it never panics, agrees with net/url where net/url reads
// the query, and never drops or invents a resume (see checkSocketParams).
func FuzzSocketParams(f *testing.F) {
	pos, bpos := "k3x9.1700000000000-42", "b0.1700000000001-7"
	for _, q := range []string{
		"",
		"token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
		"token=a.b.c&resume=" + pos,
		"resume=" + pos + "&bresume=" + bpos + "&prev=c1,c2&heartbeat=1",
		"bresume=" + bpos,
		"resume=k3x9%2E1700000000000-42",
		"resume=" + pos + "+",
		"resume=garbage&bresume=0.0-0",
		"resume=&bresume=",
		"resume",
		"&&resume=&",
		"resume=%ZZ",
		"bresume=a.1-%Z1",
		"resume=a.1-1;bresume=x",
		"x=1&bresume=a.1-1;",
		"%72esume=%ZZ",
		"re%73ume=a.1-1",
		"resume%=a.1-1",
		"resume=a.1-1&x=%ZZ",
		"x=%ZZ&heartbeat=1&prev=c1",
		"heartbeat=1;x",
		"heartbeat=01&prev=%ZZ",
		"prev=c1,c2,c3,c4,c5,c6,c7,c8",
		"prev=c1,c2,c3,c4,c5,c6,c7,c8,c9",
		"prev=c1,,c2",
		"prev=c%20d",
		"resume=a." + strings.Repeat("9", 125),
		"resume=%E2%82%AC.1-1",
		"resume=a.1-1#frag",
		"token=%ZZ&resume=" + pos,
		"token=a;b&bresume=" + bpos,
		"t%6Fken=a&b%72esume=" + bpos,
		"heartbeat=%ZZ&heartbeat=1",
		"heartbeat=1;x&heartbeat=1",
		"prev=%ZZ&prev=c1",
		"prev=c1;x&prev=c2&x=%ZZ",
	} {
		f.Add(q)
	}
	f.Fuzz(checkSocketParams)
}

// TestFirstResumeParameterUnreadable: socketParams documents the first of
// each parameter, and a resume that does not decode as unreadable (so
// connected says recovered false, docs/protocol.md section 6). When a
// later pair of the same name decodes, that later one is what it returns
// now: an empty one leaves recovered out as if the client had not asked,
// and a position is resumed from though the resume the client sent first
// is malformed. (auth's tokenParam, reading the same query, refuses a
// first token parameter that does not decode whatever follows it.)
// FuzzSocketParams found the first case (testdata/fuzz/FuzzSocketParams).
func TestFirstResumeParameterUnreadable(t *testing.T) {
	for _, tt := range []struct{ query, resume, bresume string }{
		{"resume=%ZZ&resume=", unreadable, ""},
		{"bresume=%&bresume", "", unreadable},
		{"resume=%ZZ&resume=k3x9.1700000000000-42", unreadable, ""},
		{"bresume=b0.1-1;x&bresume=b0.1-1", "", unreadable},
	} {
		p := socketParams(tt.query)
		if p.resume != tt.resume || p.bresume != tt.bresume {
			t.Errorf("socketParams(%q): resume %q bresume %q, want %q and %q", tt.query, p.resume, p.bresume, tt.resume, tt.bresume)
		}
	}
}

// TestFirstHeartbeatAndPrevDecide: heartbeat and prev are read as resume
// is (TestFirstResumeParameterUnreadable): the first pair of each name
// decides, and one that does not decode (a bad escape, a ';') asks for
// nothing, no heartbeats and no previous connections. They took q.Get,
// which, once net/url had dropped that first pair, was a later pair of
// the same name: the query the client sent first was not what decided.
func TestFirstHeartbeatAndPrevDecide(t *testing.T) {
	for _, tt := range []struct {
		query     string
		heartbeat bool
		prev      []string
	}{
		{"heartbeat=%ZZ&heartbeat=1", false, nil},
		{"heartbeat=1;x&heartbeat=1", false, nil},
		{"x=%ZZ&heartbeat=1&heartbeat=0", true, nil},
		{"prev=%ZZ&prev=c1", false, nil},
		{"prev=c1;x&prev=c2", false, nil},
		{"x=%ZZ&prev=c1&prev=c2", false, []string{"c1"}},
	} {
		p := socketParams(tt.query)
		if p.heartbeat != tt.heartbeat || !slices.Equal(p.prev, tt.prev) {
			t.Errorf("socketParams(%q): heartbeat %v prev %q, want %v and %q", tt.query, p.heartbeat, p.prev, tt.heartbeat, tt.prev)
		}
	}
}
