package proto

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Peek returns the event and the ref of a client frame without validating
// the frame: the answer to a frame refused before it is decoded (over a
// rate limit) echoes its ref and is counted under its event, and a full
// DecodeEnvelope of a large frame costs tens of microseconds that an
// abusive client must not be able to buy by the thousand. It looks for the
// top-level "event" and "ref" keys (the last of each, as DecodeEnvelope),
// skipping other values by their brackets and quotes without checking
// them. event is "" unless it is a plain string matching EventPattern;
// hasRef is false unless "ref" is a string of at most MaxRefLen
// characters without a lone surrogate escape (as DecodeEnvelope), and
// both are empty when the frame is not an object as far as Peek reads.
// It never panics, and on every valid envelope it agrees with
// DecodeEnvelope's Event, Ref and HasRef.
func Peek(data []byte) (event, ref string, hasRef bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return "", "", false
	}
	var val, ev []byte
	i++
	for {
		i = skipSpace(data, i)
		if i >= len(data) {
			return "", "", false
		}
		if data[i] == '}' {
			break
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		if i >= len(data) || data[i] != '"' {
			return "", "", false
		}
		keyEnd := peekStringEnd(data, i)
		if keyEnd < 0 {
			return "", "", false
		}
		key := data[i:keyEnd]
		i = skipSpace(data, keyEnd)
		if i >= len(data) || data[i] != ':' {
			return "", "", false
		}
		i = skipSpace(data, i+1)
		end := peekValueEnd(data, i)
		if end < 0 {
			return "", "", false
		}
		switch peekKey(key) {
		case "ref":
			val = data[i:end]
		case "event":
			ev = data[i:end]
		}
		i = end
	}
	if len(ev) > 2 && ev[0] == '"' && ev[len(ev)-1] == '"' {
		if name := ev[1 : len(ev)-1]; validEventBytes(name) {
			event = string(name)
		} else if s, ok := peekString(ev); ok && ValidEventName(s) {
			event = s
		}
	}
	if len(val) == 0 || val[0] != '"' {
		return event, "", false // none, null, or not a string
	}
	s, ok := peekString(val)
	if !ok || utf8.RuneCountInString(s) > MaxRefLen || (bytes.IndexByte(val, '\\') >= 0 && JSONStringReplaced(val)) {
		return event, "", false
	}
	return event, s, true
}

// peekString returns the text of a quoted JSON string, checking it when it
// holds escapes.
func peekString(quoted []byte) (string, bool) {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1]), true
	}
	var s string
	return s, json.Unmarshal(quoted, &s) == nil
}

// peekKey returns "ref" or "event" when the quoted key spells one, else "".
func peekKey(key []byte) string {
	if name := keyName(key); name == "ref" || name == "event" {
		return name
	}
	return ""
}

// peekStringEnd returns the index just past the string that starts at
// data[i] (a quote), or -1 when it does not end: it jumps from quote to
// quote, which is fast for long strings.
func peekStringEnd(data []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(data[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		// The quote is escaped when an odd number of backslashes ends
		// what comes before it.
		n := 0
		for p := q - 1; p > i && data[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
}

// peekValueEnd returns the index just past the value that starts at
// data[i], by its quotes and brackets only, or -1 when it does not end.
func peekValueEnd(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		return peekStringEnd(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); {
			k := bytes.IndexAny(data[j:], "\"{}[]")
			if k < 0 {
				return -1
			}
			j += k
			switch data[j] {
			case '"':
				if j = peekStringEnd(data, j); j < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			default:
				if depth--; depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return -1
	default:
		for j := i; j < len(data); j++ {
			switch data[j] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return j
			}
		}
		return len(data)
	}
}
