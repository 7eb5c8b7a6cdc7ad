package proto

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Frame is a message the gateway sends to a client:
// {"event": "...", "id": "<user>", "ref": "...", "args": <any JSON>}.
// It is the decoded form, for clients and tests; the gateway encodes frames
// with the Append functions, which do not allocate.
type Frame struct {
	Event string          `json:"event"`
	ID    string          `json:"id"`
	Ref   string          `json:"ref,omitempty"`
	Args  json.RawMessage `json:"args,omitempty"`
	Pos   string          `json:"pos,omitempty"`  // a user-stream event's position
	BPos  string          `json:"bpos,omitempty"` // a broadcast event's position
}

// Connected is the args of the "connected" frame.
type Connected struct {
	Conn   string `json:"conn"`
	Worker int    `json:"worker"`
	// Pos and BPos are where the socket starts in the user's and the
	// broadcast stream (docs/protocol.md section 6); empty when recovery is off.
	Pos  string `json:"pos,omitempty"`
	BPos string `json:"bpos,omitempty"`
	// Recovered and Missed answer a resume: whether every event after the
	// client's positions follows, and how many do. Absent without one.
	Recovered *bool `json:"recovered,omitempty"`
	Missed    *int  `json:"missed,omitempty"`
	// Heartbeat is the interval in milliseconds of the socket's heartbeat
	// frames (EventHeartbeat); 0, left out, when the client did not ask
	// for them (QueryHeartbeat).
	Heartbeat int64 `json:"heartbeat,omitempty"`
	// MaxFrame is GATEWAY_MAX_FRAME: the largest message, in bytes, the
	// gateway reads from the client; a larger one closes the socket (1009).
	MaxFrame int64 `json:"max_frame,omitempty"`
}

// Resync is the args of the "resync" frame: the socket's stream had a gap
// that could not be filled, and it carries on after Pos (user stream) or
// BPos (broadcast stream); the client reloads its state.
type Resync struct {
	Pos    string `json:"pos,omitempty"`
	BPos   string `json:"bpos,omitempty"`
	Reason string `json:"reason"`
}

// Frame keys of positions: "pos" for a user stream's event, "bpos" for the
// broadcast stream's.
const (
	KeyPos  = "pos"
	KeyBPos = "bpos"
)

// AppendEvent appends the frame {"event":event,"id":user,"args":args} to dst.
// args must be valid JSON, or empty (nil or zero-length: then "args" is left
// out, so the frame is valid JSON either way).
func AppendEvent(dst []byte, event, user string, args json.RawMessage) []byte {
	dst = append(dst, `{"event":`...)
	dst = AppendString(dst, event)
	dst = append(dst, `,"id":`...)
	dst = AppendString(dst, user)
	if len(args) != 0 {
		dst = append(dst, `,"args":`...)
		dst = append(dst, args...)
	}
	return append(dst, '}')
}

// AppendEventAt appends the frame of a recoverable event: AppendEvent's
// frame plus its position under key (KeyPos or KeyBPos). pos is a position
// the gateway wrote itself, so it needs no escaping.
func AppendEventAt(dst []byte, event, user string, args json.RawMessage, key string, pos []byte) []byte {
	dst = AppendEvent(dst, event, user, args)
	dst = dst[:len(dst)-1]
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':', '"')
	dst = append(dst, pos...)
	return append(dst, '"', '}')
}

// AppendConnected appends the "connected" frame of a socket without
// positions (recovery off).
func AppendConnected(dst []byte, user, conn string, worker int) []byte {
	return AppendConnectedFrame(dst, user, &Connected{Conn: conn, Worker: worker})
}

// AppendConnectedFrame appends the "connected" frame sent first on every
// socket.
func AppendConnectedFrame(dst []byte, user string, c *Connected) []byte {
	dst = append(dst, `{"event":"connected","id":`...)
	dst = AppendString(dst, user)
	dst = append(dst, `,"args":{"conn":`...)
	dst = AppendString(dst, c.Conn)
	dst = append(dst, `,"worker":`...)
	dst = strconv.AppendInt(dst, int64(c.Worker), 10)
	if c.Pos != "" {
		dst = append(dst, `,"pos":`...)
		dst = AppendString(dst, c.Pos)
	}
	if c.BPos != "" {
		dst = append(dst, `,"bpos":`...)
		dst = AppendString(dst, c.BPos)
	}
	if c.Recovered != nil {
		dst = append(dst, `,"recovered":`...)
		dst = strconv.AppendBool(dst, *c.Recovered)
	}
	if c.Missed != nil {
		dst = append(dst, `,"missed":`...)
		dst = strconv.AppendInt(dst, int64(*c.Missed), 10)
	}
	if c.Heartbeat != 0 {
		dst = append(dst, `,"heartbeat":`...)
		dst = strconv.AppendInt(dst, c.Heartbeat, 10)
	}
	if c.MaxFrame != 0 {
		dst = append(dst, `,"max_frame":`...)
		dst = strconv.AppendInt(dst, c.MaxFrame, 10)
	}
	return append(dst, "}}"...)
}

// AppendHeartbeat appends the heartbeat frame of user's sockets,
// {"event":"$ping","id":user}: no args, so a socket can keep one and send
// it every interval.
func AppendHeartbeat(dst []byte, user string) []byte {
	return AppendEvent(dst, EventHeartbeat, user, nil)
}

// AppendHeartbeatAt appends the heartbeat frame of a socket whose place in
// its streams moved past events it was left out of (Dispatch.Except) since
// the last frame that told it its place: AppendHeartbeat's frame plus pos
// and bpos, each left out when empty,
// {"event":"$ping","id":user,"pos":pos,"bpos":bpos}. They are positions
// the gateway wrote itself, so they need no escaping.
func AppendHeartbeatAt(dst []byte, user string, pos, bpos []byte) []byte {
	dst = AppendHeartbeat(dst, user)
	dst = dst[:len(dst)-1]
	for _, f := range [...]struct {
		key string
		pos []byte
	}{{KeyPos, pos}, {KeyBPos, bpos}} {
		if len(f.pos) == 0 {
			continue
		}
		dst = append(dst, ',', '"')
		dst = append(dst, f.key...)
		dst = append(dst, '"', ':', '"')
		dst = append(dst, f.pos...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// AppendResync appends a "resync" frame.
func AppendResync(dst []byte, user string, r *Resync) []byte {
	dst = append(dst, `{"event":"resync","id":`...)
	dst = AppendString(dst, user)
	dst = append(dst, `,"args":{`...)
	if r.Pos != "" {
		dst = append(dst, `"pos":`...)
		dst = AppendString(dst, r.Pos)
		dst = append(dst, ',')
	}
	if r.BPos != "" {
		dst = append(dst, `"bpos":`...)
		dst = AppendString(dst, r.BPos)
		dst = append(dst, ',')
	}
	dst = append(dst, `"reason":`...)
	dst = AppendString(dst, r.Reason)
	return append(dst, "}}"...)
}

// AppendAck appends the "ack" frame for ref.
func AppendAck(dst []byte, user, ref string) []byte {
	return AppendAckResult(dst, user, ref, nil)
}

// AppendAckResult appends the "ack" frame for ref carrying the handler's
// result as its args (docs/protocol.md section 2); without a result (nil or
// zero-length) it is AppendAck's frame. result must be valid JSON.
func AppendAckResult(dst []byte, user, ref string, result json.RawMessage) []byte {
	dst = append(dst, `{"event":"ack","id":`...)
	dst = AppendString(dst, user)
	dst = append(dst, `,"ref":`...)
	dst = AppendString(dst, ref)
	if len(result) != 0 {
		dst = append(dst, `,"args":`...)
		dst = append(dst, result...)
	}
	return append(dst, '}')
}

// AppendError appends an "error" frame; ref is written only when hasRef
// (the client sent a valid one, which may be "").
func AppendError(dst []byte, user, ref string, hasRef bool, e *Error) []byte {
	dst = append(dst, `{"event":"error","id":`...)
	dst = AppendString(dst, user)
	if hasRef {
		dst = append(dst, `,"ref":`...)
		dst = AppendString(dst, ref)
	}
	dst = append(dst, `,"args":`...)
	dst = appendErrorObject(dst, e)
	return append(dst, '}')
}

func appendErrorObject(dst []byte, e *Error) []byte {
	dst = append(dst, `{"code":`...)
	dst = AppendString(dst, string(e.Code))
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, e.Message)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Like encoding/json it escapes
// control characters, quotes, backslashes, <, >, & and U+2028/U+2029, and
// replaces invalid UTF-8 with U+FFFD, so the output is always valid JSON.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
