package forward

import (
	"encoding/json"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/proto"
)

// Socket is what the forwarder needs of a client socket (a ws.Conn). Send
// and Close must not block.
type Socket interface {
	ID() string
	// User returns the verified user id of the socket.
	User() string
	// Send queues one frame; it reports false when the socket is closing
	// or its queue overflowed.
	Send(data []byte) bool
	// Close closes the socket with code and reason; only the first call
	// counts.
	Close(code int, reason string)
	// Closing is closed once the socket is closing: it takes no more
	// frames and will end.
	Closing() <-chan struct{}
}

// Session is one socket's side of the forwarder, made when the socket is
// accepted: its read loop hands it every data frame (it is a
// ws.FrameHandler). It holds the socket's policy: the allowance of its
// incoming frames (Config.Rate) and its requests in flight
// (Config.MaxInFlight). HandleFrame is called by the socket's read loop
// only, never concurrently.
type Session struct {
	f      *Forwarder
	sock   Socket
	slots  chan struct{}    // in-flight request slots, made on first use by the reader
	bucket ratelimit.Bucket // the reader's only
	user   *allowance       // what the user's sockets on the worker share; nil = no limit
	// pending counts the requests forwarded and not yet answered, under
	// f.mu: the last answer of a stopping forwarder closes the socket.
	pending int
}

// Session returns the Session of sock, a socket just accepted. Call Close
// when the socket has ended.
// A socket accepted while the forwarder stops is closed with 1001 at once.
func (f *Forwarder) Session(sock Socket) *Session {
	s := &Session{f: f, sock: sock, user: f.users.hold(sock.User())}
	f.mu.Lock()
	stopped := f.stopped
	if !stopped {
		f.sessions[s] = struct{}{}
	}
	f.mu.Unlock()
	if stopped {
		s.goAway()
	}
	return s
}

// Close gives back what the session holds of its user's allowance.
func (s *Session) Close() {
	s.f.mu.Lock()
	delete(s.f.sessions, s)
	s.f.mu.Unlock()
	s.f.users.release(s.sock.User(), s.user)
	s.user = nil
}

// goAway closes the socket as the gateway's shutdown asks: its client
// reconnects, to another gateway, and resumes (docs/protocol.md section 2).
func (s *Session) goAway() {
	s.sock.Close(proto.CloseGoingAway, proto.ReasonShuttingDown)
}

// HandleFrame answers one data frame of the client or forwards it: every
// frame counts against the socket's allowance, and one over it is answered
// rate_limited (or, from a client that keeps sending over it, closes the
// socket with 1008); a binary frame is answered bad_request; a text frame
// is an envelope for a handler.
func (s *Session) HandleFrame(data []byte, binary bool) {
	// Every frame counts against the allowance, bad ones included.
	verdict := s.bucket.Take(&s.f.rate, time.Now())
	refusal := errRateLimited
	if verdict == ratelimit.Allow && s.user != nil {
		// Over what the user's sockets share, the reader first waits for
		// the allowance (Config.UserWait) and reads nothing meanwhile, then
		// refuses like the socket's own limit, but without counting it
		// toward closing the socket, which may be the user's one that
		// behaves. A refusal costs microseconds (the frame is neither copied
		// nor decoded); closing sockets would only have them opened again,
		// which costs more.
		switch ok, ended := s.user.take(s.f.users.wait, s.sock.Closing()); {
		case ended:
			return
		case !ok:
			verdict, refusal = ratelimit.Refuse, errUserRateLimited
		}
	}
	if verdict != ratelimit.Allow {
		s.refuse(data, binary, verdict, refusal)
		return
	}
	if binary {
		s.f.rec.Envelope("", proto.CodeBadRequest, 0, false)
		s.sendError("", false, errBinary)
		return
	}
	s.f.envelope(s, data)
}

// acquireSlot takes one of the socket's request slots, waiting while all
// are taken; it reports false, at once, if the socket is closing
// meanwhile. Only the read loop calls it (through HandleFrame), so a
// client that disconnects while its read loop waits is noticed once a slot
// frees, within the handler timeout.
func (s *Session) acquireSlot() bool {
	if s.slots == nil {
		s.slots = make(chan struct{}, s.f.maxInFlight)
	}
	select {
	case s.slots <- struct{}{}:
		return true
	case <-s.sock.Closing():
		return false
	}
}

// releaseSlot returns a slot taken with acquireSlot; any goroutine may call
// it.
func (s *Session) releaseSlot() { <-s.slots }

// sendError queues an error frame, echoing ref when hasRef.
func (s *Session) sendError(ref string, hasRef bool, e *proto.Error) {
	s.sock.Send(proto.AppendError(nil, s.sock.User(), ref, hasRef, e))
}

// sendAck queues an ack frame for ref, carrying the handler's result when
// it returned one.
func (s *Session) sendAck(ref string, result json.RawMessage) {
	s.sock.Send(proto.AppendAckResult(make([]byte, 0, 64+len(result)), s.sock.User(), ref, result))
}

// refuse answers a frame over an allowance without decoding it (Peek): an
// error echoing its ref, or, for a client that keeps sending over it, a
// close with 1008.
func (s *Session) refuse(data []byte, binary bool, verdict ratelimit.Verdict, e *proto.Error) {
	var event, ref string
	var hasRef bool
	if !binary {
		event, ref, hasRef = proto.Peek(data)
	}
	s.f.rec.Envelope(event, proto.CodeRateLimited, 0, false)
	if verdict == ratelimit.Abusive {
		s.sock.Close(proto.ClosePolicy, proto.ReasonRateLimited)
		return
	}
	s.sendError(ref, hasRef, e)
}
