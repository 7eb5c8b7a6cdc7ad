package proto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Limits of the client envelope (docs/protocol.md section 2).
const (
	MaxEventLen = 64 // characters of an event name
	MaxRefLen   = 64 // characters (Unicode code points) of a ref
)

// EventPattern is the pattern every event name matches, for error messages
// and documentation; ValidEventName implements it without regexp.
const EventPattern = `^[A-Za-z][A-Za-z0-9_-]{0,63}$`

// Envelope is a message a client sends over its WebSocket:
// {"event": "...", "args": <any JSON>, "ref": "..."}.
type Envelope struct {
	// Event is the handler to run; it always matches EventPattern.
	Event string
	// Args is the raw JSON value of "args", or nil when it was absent.
	// It aliases the buffer passed to DecodeEnvelope.
	Args json.RawMessage
	// Ref is the client's correlation id.
	Ref string
	// HasRef reports whether the client sent a valid ref, even "": only
	// then is an ack sent and the ref echoed in error frames.
	HasRef bool
	// Idem is the client's idempotency key (ValidIdem), "" without one:
	// handlers-svc runs the handler at most once per user and key, and
	// answers a repeat with the first one's answer (docs/protocol.md
	// section 2, "Idempotent emits").
	Idem string
}

var (
	errNotJSON      = &Error{Code: CodeBadRequest, Message: "frame is not valid JSON"}
	errNotObject    = &Error{Code: CodeBadRequest, Message: "frame must be a JSON object"}
	errEventMissing = &Error{Code: CodeBadRequest, Message: "event is required"}
	errEventType    = &Error{Code: CodeBadRequest, Message: "event must be a string"}
	errEventName    = &Error{Code: CodeBadRequest, Message: "event must match " + EventPattern}
	errRefType      = &Error{Code: CodeBadRequest, Message: "ref must be a string"}
	errRefLen       = &Error{Code: CodeBadRequest, Message: "ref must be at most 64 characters"}
	errRefUTF8      = &Error{Code: CodeBadRequest, Message: "ref is not valid UTF-8: it holds an escaped surrogate that is not half of a pair"}
	errIdem         = &Error{Code: CodeBadRequest, Message: "idem must be a string of 1 to 64 of A-Z a-z 0-9 _ . -"}
	errArgsDepth    = &Error{Code: CodeBadRequest, Message: fmt.Sprintf("args are nested deeper than %d levels", MaxArgsDepth)}
	errFrameDepth   = &Error{Code: CodeBadRequest, Message: fmt.Sprintf("frame is nested deeper than %d levels", maxJSONDepth)}
)

// DecodeEnvelope parses and validates one client frame. On failure it returns
// a *Error with code bad_request whose message names what is wrong; the
// returned Envelope then still carries Ref when the frame held a valid one, so
// the error frame can echo it (HasRef). Unknown fields are ignored; when a key repeats,
// the last value wins, as with encoding/json. Keys match exactly (unlike
// encoding/json, "Event" is not "event"). The returned Args aliases data.
//
// A frame nested deeper than encoding/json takes (args deeper than
// MaxArgsDepth) is refused saying so, with its ref, rather than as "not
// valid JSON": it is JSON, only more than the gateway reads.
func DecodeEnvelope(data []byte) (Envelope, error) {
	var env Envelope
	deep := false
	if ok, atLimit := validAtDepth(data, maxJSONDepth); !ok {
		// Scanned again only when the scan stopped at the limit of
		// nesting: other garbage is refused at once.
		if !atLimit || !validUnbounded(data) {
			return env, errNotJSON
		}
		deep = true
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return env, errNotObject
	}
	var event, ref, idem []byte
	i++
	for {
		i = skipSpace(data, i)
		if data[i] == '}' {
			break
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		keyEnd := stringEnd(data, i)
		key := data[i:keyEnd]
		i = skipSpace(data, keyEnd) + 1 // past ':'
		i = skipSpace(data, i)
		valEnd := valueEnd(data, i)
		val := data[i:valEnd]
		i = valEnd
		switch keyName(key) {
		case "event":
			event = val
		case "ref":
			ref = val
		case "args":
			env.Args = json.RawMessage(val)
		case "idem":
			idem = val
		}
	}
	if ref != nil && !isNull(ref) {
		if ref[0] != '"' {
			return env, errRefType
		}
		// Only a ref with an escape can hold a lone surrogate (raw bytes
		// that are not UTF-8 never reach the gateway's decoder: such a frame
		// is closed with 1007), so a plain one costs nothing more. Decoded,
		// it would be U+FFFD, and the answer would carry a ref the client
		// never sent.
		if bytes.IndexByte(ref, '\\') >= 0 && JSONStringReplaced(ref) {
			return env, errRefUTF8
		}
		s := decodeString(ref)
		if utf8.RuneCountInString(s) > MaxRefLen {
			return env, errRefLen
		}
		env.Ref, env.HasRef = s, true
	}
	if deep {
		args := env.Args
		env.Args = nil
		if args != nil && !validDepth(args, MaxArgsDepth) {
			return env, errArgsDepth
		}
		return env, errFrameDepth
	}
	if idem != nil && !isNull(idem) {
		// The allowed characters need no escape: an escaped key is refused.
		if idem[0] != '"' || !ValidIdem(string(idem[1:len(idem)-1])) {
			return env, errIdem
		}
		env.Idem = string(idem[1 : len(idem)-1])
	}
	if event == nil || isNull(event) {
		return env, errEventMissing
	}
	if event[0] != '"' {
		return env, errEventType
	}
	name := event[1 : len(event)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		// An escaped name cannot match the pattern unless the escape spelled
		// an allowed ASCII character; decode and check it like any other.
		s := decodeString(event)
		if !ValidEventName(s) {
			return env, errEventName
		}
		env.Event = s
		return env, nil
	}
	if !validEventBytes(name) {
		return env, errEventName
	}
	env.Event = string(name)
	return env, nil
}

// MaxIdemLen is the longest idempotency key of an envelope, in bytes.
const MaxIdemLen = 64

// ValidIdem reports whether s is a valid idempotency key of an envelope:
// 1 to MaxIdemLen of A-Z a-z 0-9 _ . - (a UUID, or base64url, fits). It
// is part of a Redis key (UserIdemKey), so it holds no ':' and cannot
// reach another user's keys.
func ValidIdem(s string) bool {
	if len(s) == 0 || len(s) > MaxIdemLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// ValidEventName reports whether s matches EventPattern.
func ValidEventName(s string) bool {
	if len(s) == 0 || len(s) > MaxEventLen || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func validEventBytes(b []byte) bool {
	if len(b) == 0 || len(b) > MaxEventLen || !isLetter(b[0]) {
		return false
	}
	for _, c := range b[1:] {
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func isNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

// The scanning helpers below assume data is valid JSON (checked by ValidJSON
// first), so they only find boundaries and never validate.

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index just past the string that starts at data[i].
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// valueEnd returns the index just past the value that starts at data[i].
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = stringEnd(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
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

// keyName returns the name of a quoted key if it is one of the
// envelope's, else "". It never allocates, for escaped keys neither
// (asciiKey).
func keyName(key []byte) string {
	name := key[1 : len(key)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		var buf [8]byte
		n, ok := asciiKey(key, &buf)
		if !ok {
			return ""
		}
		name = buf[:n]
	}
	switch string(name) { // no allocation: compared, not converted
	case "event":
		return "event"
	case "ref":
		return "ref"
	case "args":
		return "args"
	case "idem":
		return "idem"
	}
	return ""
}

// decodeString returns the text of a valid quoted JSON string.
func decodeString(quoted []byte) string {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner)
	}
	var s string
	_ = json.Unmarshal(quoted, &s) // cannot fail: quoted is a valid JSON string
	return s
}
