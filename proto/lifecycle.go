package proto

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Lifecycle subjects (docs/protocol.md section 3, an extension): a gateway
// worker publishes a Lifecycle message on LifecycleConnect once a socket
// is registered and has been sent "connected", and on LifecycleDisconnect
// once it is unregistered. They lie outside SubjectAll, so no client event
// can name them, and handlers-svc subscribes to them in QueueGroup only
// when it has a hook: one instance gets each message. A publish is fire
// and forget: at most once, never answered.
const (
	LifecycleConnect    = "switchboard.lifecycle.connect"
	LifecycleDisconnect = "switchboard.lifecycle.disconnect"
)

// Types of a Lifecycle message, the last word of its subject.
const (
	LifecycleTypeConnect    = "connect"
	LifecycleTypeDisconnect = "disconnect"
)

// Lifecycle is the body of a lifecycle message: a socket of User, with the
// connection id Conn, opened (Type connect) or closed (Type disconnect) on
// gateway worker Worker at At (Unix milliseconds). Resumed is set on a
// connect whose client asked to resume (resume or bresume): a resumed
// socket is a new connection. A disconnect carries the WebSocket close
// Code and a short Reason, one of the gateway's bounded close reasons
// (client, lost, ping_timeout, slow_consumer, shutdown, token_expired,
// disconnected, ...; docs/protocol.md section 3).
type Lifecycle struct {
	Type    string `json:"type"`
	User    string `json:"user"`
	Conn    string `json:"conn"`
	Worker  int    `json:"worker"`
	At      int64  `json:"at"`
	Resumed bool   `json:"resumed,omitempty"`
	Code    int    `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Sockets, with presence on, is the user's sockets with an unexpired
	// presence lease right after this socket's lease was written (a
	// connect: at least 1) or removed (a disconnect), counted by Redis in
	// the same step: of two sockets of one user opened at once, exactly
	// one is told 1; of two closed at once, exactly one 0. Absent when
	// not known (presence off, or Redis did not answer in time).
	Sockets *int `json:"sockets,omitempty"`
}

// MaxLifecycleReason is the longest Reason DecodeLifecycle accepts, in
// bytes: the gateway's reasons are short labels.
const MaxLifecycleReason = 64

// LifecycleSubject returns the subject of a message of type typ, and
// false for an unknown type.
func LifecycleSubject(typ string) (string, bool) {
	switch typ {
	case LifecycleTypeConnect:
		return LifecycleConnect, true
	case LifecycleTypeDisconnect:
		return LifecycleDisconnect, true
	}
	return "", false
}

// AppendLifecycle appends the JSON of l to b.
func AppendLifecycle(b []byte, l *Lifecycle) []byte {
	body, err := json.Marshal(l)
	if err != nil { // only strings, ints and a bool: cannot fail
		panic(fmt.Sprintf("proto: marshal lifecycle: %v", err))
	}
	return append(b, body...)
}

// errLifecycle is the error of every lifecycle body DecodeLifecycle
// refuses, wrapped with what is wrong.
var errLifecycle = errors.New("bad lifecycle message")

// DecodeLifecycle decodes a lifecycle body and checks it: a known type,
// a valid user (ValidUser), a connection id of 1 to maxLifecycleConn
// printable ASCII bytes,
// a worker and time not below 0, a close code and reason on a
// disconnect only (the reason at most MaxLifecycleReason bytes),
// resumed on a connect only, and sockets, when present, not below 0 (1 on
// a connect). Unknown fields are ignored, so a later
// gateway may add some.
func DecodeLifecycle(data []byte) (*Lifecycle, error) {
	var l Lifecycle
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%w: %w", errLifecycle, err)
	}
	switch {
	case l.Type != LifecycleTypeConnect && l.Type != LifecycleTypeDisconnect:
		return nil, fmt.Errorf("%w: type %q", errLifecycle, l.Type)
	case !ValidUser(l.User):
		return nil, fmt.Errorf("%w: user", errLifecycle)
	case !validLifecycleConn(l.Conn):
		return nil, fmt.Errorf("%w: conn", errLifecycle)
	case l.Worker < 0 || l.At < 0:
		return nil, fmt.Errorf("%w: worker or at below 0", errLifecycle)
	case l.Type == LifecycleTypeConnect && (l.Code != 0 || l.Reason != ""):
		return nil, fmt.Errorf("%w: a connect with a close code or reason", errLifecycle)
	case l.Type == LifecycleTypeDisconnect && l.Resumed:
		return nil, fmt.Errorf("%w: a disconnect with resumed", errLifecycle)
	case l.Code < 0 || l.Code > 4999 || len(l.Reason) > MaxLifecycleReason:
		return nil, fmt.Errorf("%w: code or reason", errLifecycle)
	case l.Sockets != nil && (*l.Sockets < 0 || l.Type == LifecycleTypeConnect && *l.Sockets < 1):
		return nil, fmt.Errorf("%w: sockets %d", errLifecycle, *l.Sockets)
	}
	return &l, nil
}

// maxLifecycleConn is the longest connection id DecodeLifecycle accepts:
// the gateway's are under 30 bytes.
const maxLifecycleConn = 128

// validLifecycleConn reports whether conn is 1 to maxLifecycleConn
// printable ASCII bytes other than space, as every connection id the
// gateway makes is.
func validLifecycleConn(conn string) bool {
	if conn == "" || len(conn) > maxLifecycleConn {
		return false
	}
	for i := 0; i < len(conn); i++ {
		if conn[i] <= ' ' || conn[i] > '~' {
			return false
		}
	}
	return true
}
