package loadgen

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
)

// The frames of the scenario are parsed by hand: the load generator shares
// the machine with the gateway, so it spends as little CPU per frame as it
// can. The frames are the gateway's (proto.AppendEvent and friends), but
// they come from outside: parseFrame takes any JSON, and calls what is not
// JSON bad rather than guess.

// appendSend appends the sendMessage envelope of send seq of run to user
// partner, scheduled at unix nanoseconds at: the text carries run, seq and
// at, the ref carries run and seq.
func appendSend(dst []byte, run, seq, partner int, at int64) []byte {
	dst = append(dst, `{"event":"sendMessage","args":{"to":"u`...)
	dst = strconv.AppendInt(dst, int64(partner), 10)
	dst = append(dst, `","text":"r`...)
	dst = strconv.AppendInt(dst, int64(run), 10)
	dst = append(dst, 's')
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, 't')
	dst = strconv.AppendInt(dst, at, 10)
	dst = append(dst, `"},"ref":"`...)
	dst = strconv.AppendInt(dst, int64(run), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(seq), 10)
	return append(dst, `"}`...)
}

// parsed is what a received frame says about the scenario.
type parsed struct {
	kind  Kind // Message, MessageSent or Ack; kindError; kindOther; kindBad
	run   int
	seq   int
	at    int64  // scheduled send time, unix ns (Message, MessageSent)
	valid bool   // run and seq were found
	code  []byte // an error frame's args.code; may alias the frame
	pos   []byte // the event's position in its user's stream ("pos"); may alias the frame
}

const (
	kindError Kind = 100 + iota // an error frame
	kindOther                   // a frame of an event the scenario does not expect, such as connected
	kindBad                     // not a JSON object with a string event
	kindFan                     // a dispatch of the 1→N scenario (OneToManyEvent)
)

// maxDepth is the deepest nesting of JSON values parseFrame follows; the
// gateway's frames nest three deep.
const maxDepth = 32

// parseFrame reads a frame from the gateway: a JSON object whose string
// "event" names it. It takes what the scenario needs, "ref", "pos" and in
// "args" "text" and "code", and walks the rest only to check that the frame is
// JSON, without decoding it or allocating: anything that is not JSON, not
// an object or has no string event is kindBad. Keys are matched exactly,
// and the last of repeated keys counts, as encoding/json does into a map.
func parseFrame(data []byte) parsed {
	var (
		s              = scanner{data: data}
		event, ref     []byte
		text, code     []byte
		pos            []byte
		hasEvent       bool
		hasRef, hasTxt bool
	)
	s.space()
	if !s.at('{') {
		return parsed{kind: kindBad}
	}
	for more := s.enter('{', '}'); more; more = s.next('}') {
		switch string(s.key()) {
		case "event":
			event, hasEvent = s.str()
		case "ref":
			ref, hasRef = s.str()
		case "pos":
			pos, _ = s.str()
		case "args":
			text, hasTxt, code = nil, false, nil
			if !s.at('{') {
				s.skip()
				break
			}
			for more := s.enter('{', '}'); more; more = s.next('}') {
				switch string(s.key()) {
				case "text":
					text, hasTxt = s.str()
				case "code":
					code, _ = s.str()
				default:
					s.skip()
				}
			}
		default:
			s.skip()
		}
	}
	s.space()
	if s.bad || s.i != len(data) || !hasEvent {
		return parsed{kind: kindBad}
	}
	p := parsed{kind: eventKind(event), code: code, pos: pos}
	if p.kind == kindOther {
		return p
	}
	if p.kind == Ack || p.kind == kindError {
		if hasRef {
			p.run, p.seq, p.valid = parseRef(ref)
		}
		return p
	}
	if hasTxt {
		p.run, p.seq, p.at, p.valid = parseText(text)
	}
	return p
}

// parseRef reads the ref of a send: "<run>.<seq>".
func parseRef(ref []byte) (run, seq int, ok bool) {
	dot := bytes.IndexByte(ref, '.')
	if dot < 0 {
		return 0, 0, false
	}
	r, ok1 := atoi(ref[:dot])
	q, ok2 := atoi(ref[dot+1:])
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return int(r), int(q), true
}

// parseText reads the text of a send: "r<run>s<seq>t<unix ns>".
func parseText(text []byte) (run, seq int, at int64, ok bool) {
	if len(text) < 2 || text[0] != 'r' {
		return 0, 0, 0, false
	}
	s := bytes.IndexByte(text, 's')
	t := bytes.IndexByte(text, 't')
	if s < 0 || t < s {
		return 0, 0, 0, false
	}
	r, ok1 := atoi(text[1:s])
	q, ok2 := atoi(text[s+1 : t])
	a, ok3 := atoi(text[t+1:])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, false
	}
	return int(r), int(q), a, true
}

// atoi parses a non-empty run of decimal digits that fits an int64.
func atoi(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// scanner walks one JSON text (RFC 8259) without decoding it. Its methods
// stop at the first error: they set bad, move to the end, and return zero
// values from then on, so a loop over members ends.
type scanner struct {
	data  []byte
	i     int
	depth int
	bad   bool
}

func (s *scanner) fail() {
	s.bad = true
	s.i = len(s.data)
}

func (s *scanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// at reports whether the next byte is c.
func (s *scanner) at(c byte) bool { return s.i < len(s.data) && s.data[s.i] == c }

// enter consumes the opening bracket under s.i and reports whether a
// member follows (false for an empty object or array, and on error).
func (s *scanner) enter(open, close byte) bool {
	if !s.at(open) {
		s.fail()
		return false
	}
	if s.depth++; s.depth > maxDepth {
		s.fail()
		return false
	}
	s.i++
	s.space()
	if s.at(close) {
		s.i++
		s.depth--
		return false
	}
	return !s.bad
}

// next consumes what follows a member: a comma, then reports true, or the
// closing bracket, then reports false.
func (s *scanner) next(close byte) bool {
	s.space()
	switch {
	case s.at(','):
		s.i++
		s.space()
		return true
	case s.at(close):
		s.i++
		s.depth--
		return false
	}
	s.fail()
	return false
}

// key consumes a member's name and its colon, and returns the name
// (decoded, if it has escapes: see str).
func (s *scanner) key() []byte {
	name, ok := s.str()
	s.space()
	if !ok || !s.at(':') {
		s.fail()
		return nil
	}
	s.i++
	s.space()
	return name
}

// str consumes a string and returns its content, or (nil, false) where
// the value is not a string, which it skips. Content with escapes is
// returned decoded, in a new slice: that allocates, but the gateway's
// frames have none where the scenario looks.
func (s *scanner) str() ([]byte, bool) {
	if !s.at('"') {
		s.skip()
		return nil, false
	}
	start := s.i + 1
	esc := false
	for j := start; j < len(s.data); j++ {
		switch c := s.data[j]; {
		case c == '"':
			s.i = j + 1
			if esc {
				return unescape(s.data[start-1 : j+1]), true
			}
			return s.data[start:j], true
		case c == '\\':
			esc = true
			j++
			if j >= len(s.data) {
				s.fail()
				return nil, false
			}
			switch s.data[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.data) || !isHex(s.data[j+1]) || !isHex(s.data[j+2]) || !isHex(s.data[j+3]) || !isHex(s.data[j+4]) {
					s.fail()
					return nil, false
				}
				j += 4
			default:
				s.fail()
				return nil, false
			}
		case c < 0x20:
			s.fail()
			return nil, false
		}
	}
	s.fail()
	return nil, false
}

// skip consumes one value of any kind.
func (s *scanner) skip() {
	if s.i >= len(s.data) {
		s.fail()
		return
	}
	switch c := s.data[s.i]; {
	case c == '"':
		s.str()
	case c == '{':
		for more := s.enter('{', '}'); more; more = s.next('}') {
			s.key()
			s.skip()
		}
	case c == '[':
		for more := s.enter('[', ']'); more; more = s.next(']') {
			s.skip()
		}
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
	case c == '-' || isDigit(c):
		s.number()
	default:
		s.fail()
	}
}

func (s *scanner) literal(lit string) {
	if len(s.data)-s.i < len(lit) || string(s.data[s.i:s.i+len(lit)]) != lit {
		s.fail()
		return
	}
	s.i += len(lit)
}

// number consumes -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *scanner) number() {
	if s.at('-') {
		s.i++
	}
	switch {
	case s.at('0'):
		s.i++
	case s.i < len(s.data) && s.data[s.i] >= '1' && s.data[s.i] <= '9':
		s.digits()
	default:
		s.fail()
		return
	}
	if s.at('.') {
		s.i++
		if !s.digits() {
			s.fail()
			return
		}
	}
	if s.at('e') || s.at('E') {
		s.i++
		if s.at('+') || s.at('-') {
			s.i++
		}
		if !s.digits() {
			s.fail()
		}
	}
}

// digits consumes a run of digits and reports whether there was one.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.data) && isDigit(s.data[s.i]) {
		s.i++
	}
	return s.i > start
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }

// unescape decodes a quoted JSON string whose escapes str has checked.
func unescape(quoted []byte) []byte {
	var out string
	if err := json.Unmarshal(quoted, &out); err != nil {
		return nil
	}
	return []byte(out)
}

// eventKind is the Kind of a frame of event name.
func eventKind(name []byte) Kind {
	switch string(name) {
	case "message":
		return Message
	case "message_sent":
		return MessageSent
	case "ack":
		return Ack
	case "error":
		return kindError
	case OneToManyEvent:
		return kindFan
	}
	return kindOther
}
