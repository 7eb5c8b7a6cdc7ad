package proto

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ControlDisconnect is the value of "control" in a Disconnect message.
const ControlDisconnect = "disconnect"

// Disconnect is a control message handlers-svc publishes on Channel
// (docs/protocol.md sections 4 and 7, an extension): close every local
// socket of each of Users and each of Conns, with CloseDisconnected and
// Reason, or, with Reconnect, with CloseReconnect, telling the client to
// reconnect at once with a fresh token.
//
// It is no dispatch: it has no "event", so a worker of a release that does
// not know it fails to decode it as a dispatch and drops it (counted as
// malformed), delivering nothing to any client. It is never recorded in
// the streams.
type Disconnect struct {
	Control   string   `json:"control"` // ControlDisconnect
	Users     []string `json:"users"`
	Conns     []string `json:"conns"`
	Reason    string   `json:"reason,omitempty"`
	Reconnect bool     `json:"reconnect,omitempty"`
	// RevokeBefore, when not 0, revokes the tokens of Users issued before
	// it, in Unix milliseconds: a worker refuses a token of one of them
	// whose iat is missing or whose iat*1000 <= RevokeBefore (the same
	// second included, since iat has seconds only). Handlers-svc records
	// it in RevokedKey before it publishes the message, for the workers
	// that miss the message.
	RevokeBefore int64 `json:"revoke_before,omitempty"`
}

// RevokedKey is the Redis hash of revoked tokens: user id -> the Unix
// milliseconds before which that user's tokens are refused (Disconnect's
// RevokeBefore), the later one kept. Handlers-svc deletes a field once it
// is older than its revoke TTL; a worker ignores one older than its own
// (GATEWAY_REVOKE_TTL). One hash, so one slot on a Redis Cluster.
const RevokedKey = "sb:revoked"

// RevokedReconnectKey is the Redis hash beside RevokedKey, in its hash
// slot: user id -> the moment (RevokedKey's value) of that user's latest
// revoke whose disconnect asked the clients to reconnect. A worker that
// missed the disconnect message closes the user's sockets on revoked
// tokens with CloseReconnect when this field equals the user's
// RevokedKey field, else with CloseDisconnected. Handlers-svc writes both
// in one script; a field that no longer equals its RevokedKey field is
// stale and ignored.
const RevokedReconnectKey = "{sb:revoked}:reconnect"

// MaxCloseReason is the most bytes of a WebSocket close reason: a control
// frame's payload is at most 125 bytes, two of which are the code
// (RFC 6455 section 5.5).
const MaxCloseReason = 123

// Close codes and default reasons of a Disconnect (extensions, in the
// private range 4000-4999 like CloseTokenExpired).
const (
	// CloseReconnect: a backend asked the client to reconnect; it does so
	// at once, with a fresh token, and resumes.
	CloseReconnect = 4002
	// CloseDisconnected: a backend disconnected the user or the
	// connection for good (logged out everywhere, banned, a leaked
	// token); the client stops and does not reconnect.
	CloseDisconnected = 4003

	ReasonReconnect    = "reconnect"    // CloseReconnect's reason when the backend gave none
	ReasonDisconnected = "disconnected" // CloseDisconnected's reason when the backend gave none
)

// CloseCode returns the close code and reason a socket gets for d: the
// reason d gives, truncated to MaxCloseReason bytes at a character
// boundary, or the default of the code.
func (d *Disconnect) CloseCode() (int, string) {
	code, reason := CloseDisconnected, ReasonDisconnected
	if d.Reconnect {
		code, reason = CloseReconnect, ReasonReconnect
	}
	if d.Reason != "" {
		reason = TruncateReason(d.Reason)
	}
	return code, reason
}

// TruncateReason returns s cut to at most MaxCloseReason bytes, at the
// start of a UTF-8 character, so that the close frame stays valid UTF-8
// (RFC 6455 section 5.5.1); invalid UTF-8 is replaced first.
func TruncateReason(s string) string {
	if !utf8.ValidString(s) {
		s = string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
	}
	if len(s) <= MaxCloseReason {
		return s
	}
	n := MaxCloseReason
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ValidReason reports whether s may be a Disconnect's reason: valid UTF-8
// whose every character is printable, as a user id's (ValidUser), since
// the gateway logs it and the client shows it; its length is not bounded
// here (CloseCode truncates it).
func ValidReason(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// AppendDisconnect appends the JSON body of d to dst: "control" first, so
// a worker tells it from a dispatch by its first bytes (IsControl). Nil
// lists are written as empty arrays.
func AppendDisconnect(dst []byte, d *Disconnect) []byte {
	dst = append(dst, `{"control":"`+ControlDisconnect+`","users":`...)
	dst = appendStrings(dst, d.Users)
	dst = append(dst, `,"conns":`...)
	dst = appendStrings(dst, d.Conns)
	if d.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = AppendString(dst, d.Reason)
	}
	if d.Reconnect {
		dst = append(dst, `,"reconnect":true`...)
	}
	if d.RevokeBefore != 0 {
		dst = append(dst, `,"revoke_before":`...)
		dst = strconv.AppendInt(dst, d.RevokeBefore, 10)
	}
	return append(dst, '}')
}

// controlPrefix is how every control message AppendDisconnect writes
// begins; no dispatch AppendDispatch writes does.
const controlPrefix = `{"control":`

// IsControl reports whether data begins as a control message written by
// AppendDisconnect: a cheap test a worker makes of every body it reads,
// before decoding it as a dispatch. It takes the body as Redis hands it
// over, a string, so the test copies nothing.
func IsControl(data string) bool { return strings.HasPrefix(data, controlPrefix) }

// DecodeDisconnect parses a Disconnect message and checks it: "control" is
// ControlDisconnect, there is no "event" (a body with one is a dispatch),
// and every user id is one a token may carry. It accepts any JSON form of
// the message, not only AppendDisconnect's.
func DecodeDisconnect(data []byte) (Disconnect, error) {
	var m struct {
		Disconnect
		Event *json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return Disconnect{}, &Error{Code: CodeBadRequest, Message: "control message is not a valid JSON object: " + err.Error()}
	}
	switch {
	case m.Control != ControlDisconnect:
		return Disconnect{}, &Error{Code: CodeBadRequest, Message: "control message is not " + ControlDisconnect}
	case m.Event != nil:
		return Disconnect{}, &Error{Code: CodeBadRequest, Message: "control message has an event"}
	}
	if m.RevokeBefore < 0 {
		return Disconnect{}, &Error{Code: CodeBadRequest, Message: "control message has a negative revoke_before"}
	}
	for _, u := range m.Users {
		if !ValidUser(u) {
			return Disconnect{}, &Error{Code: CodeBadRequest, Message: "control message names an invalid user id"}
		}
	}
	return m.Disconnect, nil
}
