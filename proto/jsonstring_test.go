package proto_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

func TestJSONStringReplaced(t *testing.T) {
	for raw, want := range map[string]bool{
		`""`:                   false,
		`"abc"`:                false,
		`"\ud83d\ude00"`:       false, // a pair
		`"\uD83D\uDE00x"`:      false,
		`"\u00e9\"\\\/\n"`:     false,
		`"\ufffd"`:             false, // U+FFFD written as such
		"\"\uFFFD\"":           false,
		`"a\\ud800"`:           false, // an escaped backslash, then text
		`"\\\ud83d\ude00"`:     false,
		`"\ud800"`:             true, // lone high
		`"\udbff"`:             true,
		`"\udc00"`:             true, // lone low
		`"\udfff"`:             true,
		`"\ud800x"`:            true, // high, then no escape
		`"\ud800\n"`:           true, // high, then another escape
		`"\ud800\u0041"`:       true, // high, then a BMP escape
		`"\ud800\ud800"`:       true, // two highs
		`"\ude00\ud83d"`:       true, // the halves swapped
		`"\ud83d\ude00\ude00"`: true,
		"\"Zo\xe9\"":           true, // not UTF-8
		"\"\xff\\u0041\"":      true,
	} {
		if got := proto.JSONStringReplaced([]byte(raw)); got != want {
			t.Errorf("JSONStringReplaced(%s) = %v, want %v", raw, got, want)
		}
	}
}

// FuzzJSONStringReplaced checks JSONStringReplaced against encoding/json:
// a string is replaced exactly when its decoding holds more U+FFFD than
// its writer put there, as the character itself or as a "\ufffd" escape.
func FuzzJSONStringReplaced(f *testing.F) {
	for _, s := range []string{`"\ud800"`, `"\ud83d\ude00"`, `"\ufffd\\ufffd"`, "\"\uFFFD\\udc00\"", "\"\xff\"", `"a\\\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := proto.JSONStringReplaced(raw)
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return // not a JSON string: the answer means nothing
		}
		want := !utf8.Valid(raw) || strings.Count(s, "\uFFFD") != writtenFFFD(raw)
		if got != want {
			t.Fatalf("JSONStringReplaced(%q) = %v; encoding/json decodes it to %q", raw, got, s)
		}
	})
}

// writtenFFFD counts the U+FFFD a valid UTF-8 JSON string raw holds as
// itself or as an escape: a backslash starts an escape when an even number
// of backslashes precedes it.
func writtenFFFD(raw []byte) int {
	n := bytes.Count(raw, []byte("\uFFFD"))
	for i := 0; i+6 <= len(raw); i++ {
		if raw[i] != '\\' || !strings.EqualFold(string(raw[i:i+6]), `\ufffd`) {
			continue
		}
		before := 0
		for j := i - 1; j >= 0 && raw[j] == '\\'; j-- {
			before++
		}
		if before%2 == 0 {
			n++
		}
	}
	return n
}
