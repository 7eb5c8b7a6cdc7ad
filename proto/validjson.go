package proto

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// maxJSONDepth is encoding/json's limit on nesting (maxNestingDepth in its
// scanner.go): a value nested deeper than this many arrays and objects is
// not valid to json.Valid, so it is not valid to ValidJSON either.
const maxJSONDepth = 10000

// ValidJSON reports whether data is one JSON value, with optional
// whitespace around it, exactly as encoding/json's json.Valid does: the
// grammar of RFC 8259, at most maxJSONDepth levels of nesting, and, like
// json.Valid, any bytes other than '"', '\\' and control characters inside
// strings, invalid UTF-8 included. Callers that need UTF-8 check it apart,
// as they did with json.Valid.
//
// It exists because json.Valid runs a function pointer per byte and showed
// up in the gateway's and handlers-svc's CPU profiles on every client frame,
// dispatch and request. ValidJSON never allocates.
func ValidJSON(data []byte) bool { return validDepth(data, maxJSONDepth) }

// MaxArgsDepth is the most levels of nesting of args, a client
// envelope's or a dispatch's: one less than ValidJSON takes, for the
// object that carries them one level down.
const MaxArgsDepth = maxJSONDepth - 1

// ValidArgs reports whether data can be a dispatch's args, which every
// gateway can deliver: valid JSON (ValidJSON) nested at most MaxArgsDepth
// levels, and UTF-8, since a socket's text frame may carry nothing else
// (RFC 6455 section 8.1: a client fails the connection on such a frame).
func ValidArgs(data []byte) bool { return utf8.Valid(data) && validDepth(data, MaxArgsDepth) }

// validDepth is ValidJSON with at most max levels of nesting.
func validDepth(data []byte, max int) bool {
	ok, _ := validAtDepth(data, max)
	return ok
}

// validAtDepth is validDepth that also reports, when data is refused,
// whether the scan stopped at the limit of max levels (atLimit): only
// then may data be valid JSON nested deeper (validUnbounded).
func validAtDepth(data []byte, max int) (ok, atLimit bool) {
	// Nesting up to 256 levels (every real frame) is tracked in a few words;
	// deeper input is scanned again with room for the whole limit, so
	// only such input pays for zeroing that room.
	var kinds [4]uint64
	ok, deep := validJSON(data, kinds[:], max)
	if deep {
		return validJSONDeep(data, max)
	}
	return ok, false
}

// validUnbounded reports whether data is valid JSON but for the limit on
// nesting, which ValidJSON keeps: it tells a frame refused for its depth
// alone from one that is not JSON at all. It allocates room for as many
// levels as data has bytes, so it is for input ValidJSON refused.
func validUnbounded(data []byte) bool {
	kinds := make([]uint64, len(data)/64+1)
	ok, _ := validJSON(data, kinds, len(data)+1)
	return ok
}

// validJSONDeep is ValidJSON for input nested deeper than ValidJSON's small
// stack holds. It is a separate function so that its large stack is not
// part of ValidJSON's frame.
//
//go:noinline
func validJSONDeep(data []byte, max int) (ok, atLimit bool) {
	var kinds [(maxJSONDepth + 63) / 64]uint64
	return validJSON(data, kinds[:], max)
}

// Kinds of container a scan is in.
const (
	inTop    = iota // not in any: at the top level
	inObject        // in an object
	inArray         // in an array
)

// validJSON reports whether data is valid JSON. deep is true (and ok
// false) when the scan stopped for the nesting: past maxDepth levels, or
// past what kinds can record (64 levels a word), so that a caller can tell
// those from other refusals (validAtDepth). Bit d of kinds says whether
// the container at depth d+1 is an array (1) or an object (0); the innermost one's kind is also kept in a
// variable, as it is needed after every value.
//
// The scan is a loop over a few places in the grammar, joined by goto: a
// value is expected (value), an object's key and colon are expected
// (key), or a value has just ended (end); pop closes a container. Each
// place takes the next byte that is not whitespace (nextToken), which on
// compact input is the next byte.
func validJSON(data []byte, kinds []uint64, maxDepth int) (ok, deep bool) {
	var (
		i, depth int
		c        byte
		kind     = inTop
	)
	n := len(data)

value:
	if c, i = nextToken(data, i); i < 0 {
		return false, false
	}
	switch c {
	case '"':
		if i = validString(data, i); i < 0 {
			return false, false
		}
	case '{', '[':
		if depth == maxDepth {
			return false, true
		}
		if depth == len(kinds)*64 {
			return false, true
		}
		w, b := depth>>6, uint(depth&63)
		depth++
		for i < n && isJSONSpace(data[i]) {
			i++
		}
		if c == '[' {
			kinds[w] |= 1 << b
			kind = inArray
			if i < n && data[i] == ']' {
				i++
				goto pop
			}
			goto value
		}
		kinds[w] &^= 1 << b
		kind = inObject
		if i < n && data[i] == '}' {
			i++
			goto pop
		}
		goto key
	case 't':
		if n-i < 3 || string(data[i:i+3]) != "rue" {
			return false, false
		}
		i += 3
	case 'f':
		if n-i < 4 || string(data[i:i+4]) != "alse" {
			return false, false
		}
		i += 4
	case 'n':
		if n-i < 3 || string(data[i:i+3]) != "ull" {
			return false, false
		}
		i += 3
	default:
		if i = validNumber(data, i-1); i < 0 {
			return false, false
		}
	}

end:
	if c, i = nextToken(data, i); i < 0 {
		return kind == inTop, false
	}
	switch c {
	case ',':
		switch kind {
		case inArray:
			goto value
		case inObject:
			goto key
		}
	case ']':
		if kind == inArray {
			goto pop
		}
	case '}':
		if kind == inObject {
			goto pop
		}
	}
	return false, false

pop:
	depth--
	switch {
	case depth == 0:
		kind = inTop
	case kinds[(depth-1)>>6]&(1<<uint((depth-1)&63)) != 0:
		kind = inArray
	default:
		kind = inObject
	}
	goto end

key:
	if c, i = nextToken(data, i); i < 0 || c != '"' {
		return false, false
	}
	if i = validString(data, i); i < 0 {
		return false, false
	}
	if c, i = nextToken(data, i); i < 0 || c != ':' {
		return false, false
	}
	goto value
}

// nextToken returns the first byte at or after data[i] that is not JSON
// whitespace, and the index just past it; the index is -1 when there is
// none.
func nextToken(data []byte, i int) (byte, int) {
	for ; i < len(data); i++ {
		if c := data[i]; !isJSONSpace(c) {
			return c, i + 1
		}
	}
	return 0, -1
}

// isJSONSpace reports whether c is whitespace to JSON: space, tab, newline
// or carriage return, and nothing else.
func isJSONSpace(c byte) bool {
	return c <= ' ' && (c == ' ' || c == '\t' || c == '\n' || c == '\r')
}

// SWAR constants: one byte repeated in each of a word's eight bytes.
const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// stringStops returns a word with the high bit set in the byte of x (read
// little-endian) that is the first '"', '\\' or control character, and
// possibly in later bytes; 0 if there is none. Each test is the classic
// "has a zero byte" trick, whose borrows only ever flag bytes above a byte
// that is truly flagged, so the lowest set bit is exact.
func stringStops(x uint64) uint64 {
	quote := x ^ ('"' * swarOnes)
	slash := x ^ ('\\' * swarOnes)
	return ((x-0x20*swarOnes)&^x | (quote-swarOnes)&^quote | (slash-swarOnes)&^slash) & swarHighs
}

// validString returns the index just past the closing quote of the string
// whose contents start at data[i], or -1 if it is not a valid string:
// unterminated, holding a control character, or a bad escape.
func validString(data []byte, i int) int {
	n := len(data)
	for {
		// Skip ordinary bytes eight at a time, then one at a time.
		for n-i >= 8 {
			if m := stringStops(binary.LittleEndian.Uint64(data[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto stop
			}
			i += 8
		}
		for ; i < n; i++ {
			if c := data[i]; c < 0x20 || c == '"' || c == '\\' {
				goto stop
			}
		}
		return -1
	stop:
		switch data[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= n {
				return -1
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if n-i < 6 || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

func isHex(c byte) bool {
	return c-'0' < 10 || (c|0x20)-'a' < 6
}

// validNumber returns the index just past the number that starts at
// data[i], or -1 if none does: an optional '-', then 0 or a digit 1-9 and
// more digits, then optionally '.' and digits, then optionally 'e' or 'E',
// a sign and digits. What follows the number is for the caller to judge.
func validNumber(data []byte, i int) int {
	n := len(data)
	if data[i] == '-' {
		i++
		if i >= n {
			return -1
		}
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c-'1' < 9:
		i++
		for i < n && data[i]-'0' < 10 {
			i++
		}
	default:
		return -1
	}
	if i < n && data[i] == '.' {
		if i = digits(data, i+1); i < 0 {
			return -1
		}
	}
	if i < n && data[i]|0x20 == 'e' {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i = digits(data, i); i < 0 {
			return -1
		}
	}
	return i
}

// digits returns the index just past the run of digits that starts at
// data[i], or -1 if there is none.
func digits(data []byte, i int) int {
	start := i
	for i < len(data) && data[i]-'0' < 10 {
		i++
	}
	if i == start {
		return -1
	}
	return i
}
