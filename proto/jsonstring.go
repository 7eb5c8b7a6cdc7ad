package proto

import "unicode/utf8"

// JSONStringReplaced reports whether decoding the quoted JSON string raw
// replaces something with U+FFFD, as encoding/json does with bytes that
// are not UTF-8 and with an escaped surrogate that is not half of a pair
// ("\ud800", "\udc00", "\ud800x"). Such a string decodes to text its
// writer never wrote, and two different ones to the same text, so a
// value that must come back as sent (a ref) or must name one thing (a
// token's sub) is refused instead. U+FFFD written as itself or as
// "\ufffd" is not a replacement. It never panics; on input that is not a
// JSON string its answer means nothing.
func JSONStringReplaced(raw []byte) bool {
	if !utf8.Valid(raw) {
		return true
	}
	high := false // the last escape was a high surrogate, awaiting its low half
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			if high {
				return true
			}
			continue
		}
		i++
		if raw[i] != 'u' || i+4 >= len(raw) {
			if high {
				return true
			}
			continue
		}
		r, ok := hex4(raw[i+1 : i+5])
		i += 4
		switch {
		case !ok:
			return true
		case r >= 0xD800 && r < 0xDC00:
			if high {
				return true
			}
			high = true
		case r >= 0xDC00 && r < 0xE000:
			if !high {
				return true
			}
			high = false
		case high:
			return true
		}
	}
	return high
}

// hex4 returns the value of four hex digits.
func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			c = (c | 0x20) - 'a' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
