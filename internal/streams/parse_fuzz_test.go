package streams

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

// FuzzParseReadResult: the read script's answer carries stream entries
// any publisher may have written (its own, or one that does not check),
// and meta that may be of another version. parseResult never panics,
// never refuses a well-formed answer, and an entry it does not mark
// Undeliverable makes a frame a socket can take: valid JSON, UTF-8, not
// one of the gateway's own events. shape varies the form of the answer:
// bit 0 numbers as Redis integers, bit 1 no "x" field, bit 2 an odd
// trailing field name, bit 3 the entry's values as integers, bit 4 a
// malformed entry after it, bit 5 the entry twice.
func FuzzParseReadResult(f *testing.F) {
	for _, s := range []struct {
		epoch, top, ms, id, event, args, except string
		shape                                   uint8
	}{
		{"k3x9q2", "2", "1700000000001", "1700000000001-0", "message", `{"text":"hi"}`, "", 0},
		{"k3x9q2", "7", "1700000000001", "1700000000001-6", "message", `{}`, `["c1","c\"2"]`, 0},
		{"a", "0", "0", "0-0", "e", "null", "", 1},
		{"z9", "18446744073709551615", "18446744073709551615", "18446744073709551615-18446744073709551615", "e", "[1,2]", "", 2},
		{"k3x9q2", "1", "1", "1-1", "connected", `{}`, "", 0},  // reserved: undeliverable
		{"k3x9q2", "1", "1", "1-1", "message", "\xff", "", 0},  // not UTF-8: undeliverable
		{"k3x9q2", "1", "1", "1-1", "message", `{"a":`, "", 0}, // not JSON: undeliverable
		{"k3x9q2", "1", "1", "01-1", "message", `{}`, "", 0},   // not canonical: refused
		{"K3", "1", "1", "1-1", "message", `{}`, "", 0},        // bad epoch: refused
		{"k3", "-1", "1", "1-1", "message", `{}`, "", 1},       // negative top: refused
		{"k3", "1", "1", "1-1", "", `{}`, "", 8},               // no event: refused
		{"k3", "1", "1", "1-1", "message", "", `[1]`, 4 | 16},  // no args, an except that does not read
		{"k3", "1", "1", "1-1", "message", `[` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `]`, "null", 32},
		{"k3x9q2", "7", "1700000000001", "1700000000001-6", "message", `{}`, "", 64},  // with the oldest entry's id
		{"k3x9q2", "7", "1700000000001", "1700000000001-6", "message", `{}`, "", 128}, // an oldest id that does not read: refused
	} {
		f.Add(s.epoch, s.top, s.ms, s.id, s.event, s.args, s.except, s.shape)
	}
	f.Fuzz(func(t *testing.T, epoch, top, ms, id, event, args, except string, shape uint8) {
		// num is s as the answer carries it: a Redis integer, with shape
		// bit on, when it reads as one.
		num := func(s string, bit uint8) any {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && shape&bit != 0 {
				return n
			}
			return s
		}
		// str is what the parser makes of a value: an integer is no string.
		str := func(v any) string { s, _ := v.(string); return s }
		e, a, x := num(event, 8), num(args, 8), num(except, 8)
		fields := []any{"e", e, "a", a}
		if shape&2 == 0 {
			fields = append(fields, "x", x)
		}
		if shape&4 != 0 {
			fields = append(fields, "e")
		}
		entries := []any{[]any{id, fields}}
		if shape&32 != 0 {
			entries = append(entries, entries[0])
		}
		if shape&16 != 0 {
			entries = append(entries, []any{id})
		}
		// The oldest entry's id, which the script adds when the entries
		// read do not follow the reader's offset: none, the entry's (bit
		// 64), or one that does not read (bit 128).
		oldest := ""
		if shape&64 != 0 {
			oldest = id
		}
		if shape&128 != 0 {
			oldest = "1-x"
		}
		res, err := parseResult([]any{epoch, num(top, 1), num(ms, 1), entries, oldest})

		event, args = str(e), str(a)
		except = ""
		if shape&2 == 0 {
			except = str(x)
		}
		wellFormed := proto.ValidEpoch(epoch) && isUint(top) && isUint(ms) && validID(id) && shape&16 == 0 &&
			shape&128 == 0 && proto.ValidEventName(event)
		if wellFormed && err != nil {
			t.Fatalf("refused a well-formed answer: %v", err)
		}
		if err != nil {
			return
		}
		if !wellFormed {
			t.Fatalf("accepted epoch %q, top %q at %q, entry %q of event %q: %+v", epoch, top, ms, id, event, res)
		}
		if p, ok := proto.ParsePos(res.Top.String()); len(res.Top.String()) <= proto.MaxPosLen && (!ok || p != res.Top) {
			t.Fatalf("top %+v does not read back from %q", res.Top, res.Top.String())
		}
		if _, off, _ := proto.ParseStreamID(oldest); res.Oldest != off {
			t.Fatalf("oldest %q read as %d", oldest, res.Oldest)
		}
		if want := 1 + int(shape>>5&1); len(res.Entries) != want {
			t.Fatalf("%d entries, want %d", len(res.Entries), want)
		}
		for _, e := range res.Entries {
			if e.Pos.Epoch != epoch || e.Pos.ID() != id {
				t.Fatalf("entry %q of epoch %q read as %+v", id, epoch, e.Pos)
			}
			if e.Event != event {
				t.Fatalf("event %q read as %q", event, e.Event)
			}
			if string(e.Args) != args {
				t.Fatalf("args %q read as %q", args, e.Args)
			}
			deliverable := !proto.Reserved(e.Event) && (len(e.Args) == 0 || proto.ValidArgs(e.Args))
			if e.Undeliverable == deliverable {
				t.Fatalf("entry of %q with args %q: Undeliverable %v", e.Event, e.Args, e.Undeliverable)
			}
			if !e.Undeliverable {
				frame := proto.AppendEventAt(nil, e.Event, "bob", e.Args, proto.KeyPos, e.Pos.Append(nil))
				if !proto.ValidJSON(frame) || !utf8.Valid(frame) {
					t.Fatalf("deliverable entry makes the frame %q", frame)
				}
			}
			var want []string
			if json.Unmarshal([]byte(except), &want) != nil {
				want = nil
			}
			if !slices.Equal(e.Except, want) {
				t.Fatalf("except %q read as %q, want %q", except, e.Except, want)
			}
		}
	})
}

// isUint reports whether s is what uintOf takes from a string.
func isUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// validID reports whether id is a canonical stream ID: decimals without
// sign or leading zero, each at most 2^64-1.
func validID(id string) bool {
	a, b, ok := strings.Cut(id, "-")
	return ok && canonical(a) && canonical(b)
}

func canonical(s string) bool {
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && strconv.FormatUint(n, 10) == s
}

// FuzzParsePublishResult: the publish script's reply, positions, failed
// units and the count of unheard publishes, never panics ParseResult; what
// it reads accounts for every element, and written back as the script
// writes it (publish.lua), reads the same. The reply's elements are
// data's lines.
func FuzzParsePublishResult(f *testing.F) {
	for _, s := range []string{
		"k3x9q2.1700000000001-0\n0",
		"k3x9q2.1700000000001-0\nk3x9q2.1700000000001-1\n2",
		"k3x9q2.1-1\n\n!2w WRONGTYPE Operation against a key holding the wrong kind of value\n!3- ERR z\n4",
		"!1- ERR\n0",
		"0",
		"",
		"!x\n0",
		"!1 e\n0",
		"!0w e\n0",
		"!w e\n0",
		"!1w\n0",
		"a\n!1w e\nb\n0",
		"!+1w e\n-3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var res []string
		if data != "" {
			res = strings.Split(data, "\n")
		}
		r, err := ParseResult(res)
		if err != nil {
			return
		}
		if len(r.Pos)+len(r.Failed)+1 != len(res) {
			t.Fatalf("%q read as %d positions and %d failures", res, len(r.Pos), len(r.Failed))
		}
		if n := len(r.Pos); n > 0 && strings.HasPrefix(r.Pos[n-1], "!") {
			t.Fatalf("%q: a failure %q read as a position", res, r.Pos[n-1])
		}
		again := slices.Clone(r.Pos)
		for _, u := range r.Failed {
			if u.Unit < 0 {
				t.Fatalf("%q: unit %d", res, u.Unit)
			}
			wrote := "-"
			if u.Wrote {
				wrote = "w"
			}
			again = append(again, "!"+strconv.Itoa(u.Unit+1)+wrote+" "+u.Err)
		}
		again = append(again, strconv.Itoa(r.Unheard))
		r2, err := ParseResult(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("%q read as %+v; written back %q reads as %+v, %v", res, r, again, r2, err)
		}
	})
}
