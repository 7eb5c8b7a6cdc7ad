package loadgen

import (
	"bytes"
	"strconv"
)

// The frames of the scenario are parsed by hand: the load generator shares
// the machine with the gateway, so it spends as little CPU per frame as it
// can. Only the gateway's own compact encoding (proto.AppendEvent and
// friends) is expected.

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
	kind  Kind // Message, MessageSent or Ack; kindError; kindOther
	run   int
	seq   int
	at    int64 // scheduled send time, unix ns (Message, MessageSent)
	valid bool  // run and seq were found
}

const (
	kindError Kind = 100 + iota
	kindOther
)

var (
	eventKey = []byte(`"event":"`)
	textKey  = []byte(`"text":"`)
	refKey   = []byte(`"ref":"`)
	codeKey  = []byte(`"code":"`)
)

// stringAfter returns the JSON string content after key, which must not
// contain escapes to be of interest here.
func stringAfter(data, key []byte) []byte {
	i := bytes.Index(data, key)
	if i < 0 {
		return nil
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}

// parseFrame reads a frame from the gateway.
func parseFrame(data []byte) parsed {
	var p parsed
	switch string(stringAfter(data, eventKey)) {
	case "message":
		p.kind = Message
	case "message_sent":
		p.kind = MessageSent
	case "ack":
		p.kind = Ack
	case "error":
		p.kind = kindError
	default:
		p.kind = kindOther
		return p
	}
	if p.kind == Ack || p.kind == kindError {
		// ref: "<run>.<seq>"
		ref := stringAfter(data, refKey)
		dot := bytes.IndexByte(ref, '.')
		if dot < 0 {
			return p
		}
		run, ok1 := atoi(ref[:dot])
		seq, ok2 := atoi(ref[dot+1:])
		p.run, p.seq, p.valid = run, seq, ok1 && ok2
		return p
	}
	// text: "r<run>s<seq>t<unix ns>"
	text := stringAfter(data, textKey)
	if len(text) < 2 || text[0] != 'r' {
		return p
	}
	s := bytes.IndexByte(text, 's')
	t := bytes.IndexByte(text, 't')
	if s < 0 || t < s {
		return p
	}
	run, ok1 := atoi(text[1:s])
	seq, ok2 := atoi(text[s+1 : t])
	at, ok3 := atoi(text[t+1:])
	p.run, p.seq, p.at, p.valid = run, seq, int64(at), ok1 && ok2 && ok3
	return p
}

// atoi parses a non-negative decimal.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
