package proto

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzAsciiKey: asciiKey decodes a JSON string as encoding/json does
// whenever it says ok, and says ok for every string whose text is ASCII of
// at most 8 bytes.
func FuzzAsciiKey(f *testing.F) {
	for _, s := range []string{`"event"`, `"\u0065vent"`, `"r\u0065f"`, `"\u00e9"`, `"a\/b"`, `"\"\\"`,
		`"\ud800"`, `"abcdefghi"`, `"\u0041\u0042\u0043\u0044\u0045\u0046\u0047\u0048"`, `"\x"`, `"\u12"`, `""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, quoted string) {
		var buf [8]byte
		n, ok := asciiKey([]byte(quoted), &buf)
		var s string
		if len(quoted) < 2 || quoted[0] != '"' || quoted[len(quoted)-1] != '"' ||
			json.Unmarshal([]byte(quoted), &s) != nil || !utf8.ValidString(quoted) {
			return // a key is one string, quotes first and last
		}
		if ok && string(buf[:n]) != s {
			t.Fatalf("asciiKey(%s) = %q, encoding/json reads %q", quoted, buf[:n], s)
		}
		ascii := len(s) <= len(buf)
		for i := 0; i < len(s); i++ {
			ascii = ascii && s[i] < 0x80
		}
		if ascii && !ok {
			t.Fatalf("asciiKey(%s) refused %q, ASCII of %d bytes", quoted, s, len(s))
		}
	})
}
