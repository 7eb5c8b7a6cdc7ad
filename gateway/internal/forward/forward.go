// Package forward is the gateway's protocol policy for what clients send:
// it turns client envelopes into NATS requests to handlers-svc and relays
// the reply to the socket as an ack or an error frame (docs/protocol.md sections 2
// and 3), and it answers what is not forwarded: frames over the socket's
// rate limit (rate_limited, or a close for an abusive client), binary
// frames and invalid envelopes (bad_request).
//
// Each accepted socket gets a Session, which its read loop hands every
// frame to. Each request runs in its own goroutine so a socket can have
// several in flight, up to a per-socket limit beyond which its read loop
// waits, which pushes back on the client through TCP. An envelope that has its slot is
// refused at once with unavailable instead of forwarded while the worker is
// overloaded (its fan-out lags, Config.Overloaded, or it has its limit of
// requests in flight, Config.WorkerInFlight).
// Shutdown stops new requests, closes each socket with 1001 once its own
// requests in flight have been answered, and waits for the running ones.
package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/proto"
)

// Requester is the part of a NATS connection the forwarder uses.
type Requester interface {
	RequestMsgWithContext(ctx context.Context, msg *nats.Msg) (*nats.Msg, error)
	IsConnected() bool
}

var (
	errUnavailable = proto.NewError(proto.CodeUnavailable, "handlers are unavailable, try again later")
	errShutdown    = proto.NewError(proto.CodeUnavailable, "gateway is shutting down, reconnect and retry")
	errTimeout     = proto.NewError(proto.CodeTimeout, "handler did not answer in time")
	// The same answer as handlers-svc's to a result over proto.MaxResult.
	errResultTooLarge = proto.NewError(proto.CodeHandlerError, "handler failed: its result is too large")
	// The request may have run: the client is told so before it retries.
	errLostInFlight = proto.NewError(proto.CodeUnavailable, "connection to the handlers was lost before they answered; the event may or may not have been handled")
	// Refused unforwarded while the worker is overloaded: the handler did
	// not run, so a retry is safe.
	errOverloaded      = proto.NewError(proto.CodeUnavailable, "gateway overloaded, retry later")
	errRateLimited     = proto.NewError(proto.CodeRateLimited, "too many messages: slow down")
	errUserRateLimited = proto.NewError(proto.CodeRateLimited, "too many messages from this user's connections: slow down")
	errBinary          = proto.NewError(proto.CodeBadRequest, "binary frames are not supported: send JSON in text frames")
)

// Recorder is told how every frame the forwarder handles ends, for metrics.
// It is called from many goroutines and must be cheap.
type Recorder interface {
	// Envelope reports one frame: event is "" when the frame was not a
	// valid envelope; code is "" on success, else the error code sent to
	// the client; rtt is the round trip when the handler replied, else 0.
	// It must not keep event, which may alias the frame.
	Envelope(event string, code proto.Code, rtt time.Duration, handled bool)
	// Shed reports one envelope refused unforwarded because the worker was
	// overloaded, for reason ShedFanout or ShedInFlight; Envelope reports
	// it too, as unavailable.
	Shed(reason string)
}

// Why an envelope was refused as overload (Recorder.Shed).
const (
	// ShedFanout: the worker's fan-out lagged (Config.Overloaded).
	ShedFanout = "fanout_lagging"
	// ShedInFlight: the worker had its limit of handler requests in
	// flight (Config.WorkerInFlight).
	ShedInFlight = "requests_in_flight"
)

type nopRecorder struct{}

func (nopRecorder) Envelope(string, proto.Code, time.Duration, bool) {}
func (nopRecorder) Shed(string)                                      {}

// Config is the forwarder's settings, fixed at New.
type Config struct {
	// Timeout is how long a handler has to answer a request.
	Timeout time.Duration
	// MaxInFlight is how many handler requests one socket may have in
	// flight (at least 1); its read loop waits for a free one.
	MaxInFlight int
	// Rate is the allowance of incoming frames of each socket.
	Rate ratelimit.Policy
	// UserRate and UserBurst are the allowance a user's sockets on this
	// worker share (frames per second, and at once); 0 = none.
	UserRate  float64
	UserBurst int
	// UserWait is how long a socket's reader waits for a token of its
	// user's allowance before it refuses the frame (0: refuse at once).
	// While it waits it reads nothing, so what the user sends beyond the
	// allowance waits in the socket's TCP buffers, then the sender's: a
	// flood from many sockets costs the flooder, not the worker.
	UserWait time.Duration
	// WorkerInFlight is how many handler requests of the whole worker may
	// be in flight; beyond it new envelopes are refused at once with
	// unavailable (0 = no limit): when handlers-svc or NATS fall behind,
	// requests would otherwise queue until they time out.
	WorkerInFlight int
	// WorkerInFlightBytes bounds the same requests by the bytes of their
	// args (0 = no limit), so that large envelopes cannot hold the worker's
	// memory while their handlers are slow.
	WorkerInFlightBytes int64
	// Overloaded, when set, makes the forwarder refuse every new envelope
	// at once with unavailable ("gateway overloaded, retry later") while it
	// reports true, rather than add to a load the worker cannot deliver;
	// requests already in flight go on. It is called for every envelope,
	// so it must be cheap.
	Overloaded func() bool
	// Recorder, when set, is told how every frame ends, for metrics.
	Recorder Recorder
}

// Forwarder forwards the envelopes of every socket of a worker; each socket
// hands its frames to its own Session.
type Forwarder struct {
	nc          Requester
	timeout     time.Duration
	maxInFlight int              // per socket
	rate        ratelimit.Policy // per socket
	log         *zap.Logger
	rec         Recorder
	overloaded  func() bool // nil = never
	maxPending  int64       // worker-wide requests in flight beyond which envelopes are refused; 0 = no limit
	pending     atomic.Int64
	maxBytes    int64 // worker-wide bytes of args in flight beyond which envelopes are refused; 0 = no limit
	bytes       atomic.Int64
	users       users

	mu       sync.Mutex
	stopped  bool
	sessions map[*Session]struct{} // the open ones, for Shutdown to close
	inFlight sync.WaitGroup
	conn     context.Context // cancelled when NATS disconnects, then renewed
	lose     context.CancelFunc
}

// New returns a Forwarder sending requests over nc with the settings of cfg.
func New(nc Requester, cfg Config, log *zap.Logger) *Forwarder {
	conn, lose := context.WithCancel(context.Background())
	f := &Forwarder{
		nc: nc, timeout: cfg.Timeout, maxInFlight: max(cfg.MaxInFlight, 1), rate: cfg.Rate,
		log: log, rec: cfg.Recorder, overloaded: cfg.Overloaded, maxPending: int64(cfg.WorkerInFlight),
		maxBytes: cfg.WorkerInFlightBytes, users: users{limit: rate.Limit(cfg.UserRate), burst: max(cfg.UserBurst, 1), wait: cfg.UserWait},
		conn: conn, lose: lose, sessions: make(map[*Session]struct{}),
	}
	if f.rec == nil {
		f.rec = nopRecorder{}
	}
	return f
}

// shed refuses env of s as overload, for reason.
func (f *Forwarder) shed(s *Session, env *proto.Envelope, reason string) {
	f.rec.Shed(reason)
	f.rec.Envelope(env.Event, errOverloaded.Code, 0, false)
	s.sendError(env.Ref, env.HasRef, errOverloaded)
}

// Disconnected tells the forwarder that NATS went away: the requests in
// flight cannot get their replies any more, so they end at once with
// unavailable instead of waiting for the handler timeout. Wire it to the
// connection's disconnect handler.
func (f *Forwarder) Disconnected() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lose()
	f.conn, f.lose = context.WithCancel(context.Background())
}

func (f *Forwarder) connContext() context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conn
}

// envelope validates one text frame of s and forwards it.
func (f *Forwarder) envelope(s *Session, data []byte) {
	env, err := proto.DecodeEnvelope(data)
	if err != nil {
		var pe *proto.Error
		if !errors.As(err, &pe) {
			pe = proto.NewError(proto.CodeBadRequest, "invalid frame")
		}
		f.rec.Envelope("", pe.Code, 0, false)
		s.sendError(env.Ref, env.HasRef, pe)
		return
	}
	if !s.acquireSlot() {
		return // the socket ended while waiting
	}
	// The overload checks come after the slot: the wait for one can last a
	// handler timeout, and what was true before it says nothing of now.
	if f.overloaded != nil && f.overloaded() {
		s.releaseSlot()
		f.shed(s, &env, ShedFanout)
		return
	}
	// Reserved, not checked then added, so read loops racing for the last
	// places cannot together go over the limit. request counts it out.
	size := int64(len(env.Args))
	n, b := f.pending.Add(1), f.bytes.Add(size)
	if (f.maxPending > 0 && n > f.maxPending) || (f.maxBytes > 0 && b > f.maxBytes) {
		f.pending.Add(-1)
		f.bytes.Add(-size)
		s.releaseSlot()
		f.shed(s, &env, ShedInFlight)
		return
	}
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		f.pending.Add(-1)
		f.bytes.Add(-size)
		s.releaseSlot()
		f.rec.Envelope(env.Event, errShutdown.Code, 0, false)
		s.sendError(env.Ref, env.HasRef, errShutdown)
		return
	}
	f.inFlight.Add(1)
	s.pending++
	f.mu.Unlock()
	// The frame is the read loop's buffer, reused once HandleFrame
	// returns: the request goes on without it.
	env.Args = bytes.Clone(env.Args)
	go func() {
		defer f.inFlight.Done()
		defer f.answered(s) // after the answer is queued, so it goes ahead of the close
		defer s.releaseSlot()
		defer func() {
			if r := recover(); r != nil { // this socket's bug must not take the worker down
				f.log.Error("panic forwarding an envelope; closing the socket", zap.String("user", s.sock.User()),
					zap.String("conn", s.sock.ID()), zap.String("event", env.Event), zap.Any("panic", r), zap.Stack("stack"))
				s.sock.Close(proto.CloseInternalError, "internal error")
			}
		}()
		f.forward(s, &env)
	}()
}

func (f *Forwarder) forward(s *Session, env *proto.Envelope) {
	result, perr, rtt, handled := f.request(s.sock, env)
	if perr == nil && len(result) > proto.MaxResult {
		// handlers-svc refuses such a result itself; one from another
		// responder would be queued whole, and could close the socket
		// as a slow consumer.
		if ce := f.log.Check(zap.WarnLevel, "handler result too large"); ce != nil {
			ce.Write(zap.String("user", s.sock.User()), zap.String("conn", s.sock.ID()), zap.String("event", env.Event),
				zap.Int("bytes", len(result)), zap.Int("max", proto.MaxResult))
		}
		perr = errResultTooLarge
	}
	f.rec.Envelope(env.Event, errCode(perr), rtt, handled)
	if perr != nil {
		s.sendError(env.Ref, env.HasRef, perr)
		return
	}
	if env.HasRef {
		s.sendAck(env.Ref, result)
	}
}

// request sends env to its handler and returns the handler's result (nil
// when none) or the error for the client, the round trip when a reply
// came, and whether the reply came from a run of the event's handler (not
// marked proto.UnrunHeader).
func (f *Forwarder) request(c Socket, env *proto.Envelope) (result json.RawMessage, perr *proto.Error, rtt time.Duration, handled bool) {
	// Counted out before the reply is queued, so a client that has its
	// reply knows its request no longer counts against the limit.
	defer f.bytes.Add(-int64(len(env.Args)))
	defer f.pending.Add(-1)
	// The socket's fields are added only to a line that is written: a
	// logger With them per request was an allocation on every envelope.
	log := func(lvl zapcore.Level, msg string, extra ...zap.Field) {
		if ce := f.log.Check(lvl, msg); ce != nil {
			ce.Write(append([]zap.Field{zap.String("user", c.User()), zap.String("conn", c.ID()), zap.String("event", env.Event)}, extra...)...)
		}
	}
	if !f.nc.IsConnected() {
		log(zap.DebugLevel, "nats not connected")
		return nil, errUnavailable, 0, false
	}
	body := proto.AppendRequest(make([]byte, 0, 128+len(env.Args)), &proto.Request{
		Event: env.Event, Args: env.Args, User: c.User(), Conn: c.ID(), Ref: env.Ref,
	})
	conn := f.connContext()
	sent := time.Now()
	deadline := sent.Add(f.timeout)
	ctx, cancel := context.WithDeadline(conn, deadline)
	defer cancel()
	// The deadline travels with the request: handlers-svc does not start
	// one the client was already told timed out.
	header := nats.Header{proto.DeadlineHeader: []string{proto.FormatDeadline(deadline)}}
	if env.Idem != "" {
		// handlers-svc runs the handler at most once per user and key.
		header[proto.IdemHeader] = []string{env.Idem}
	}
	msg, err := f.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: proto.Subject(env.Event), Header: header, Data: body})
	switch {
	case err == nil:
	case conn.Err() != nil:
		log(zap.WarnLevel, "nats connection lost during the request")
		return nil, errLostInFlight, 0, false
	case errors.Is(err, nats.ErrNoResponders):
		log(zap.WarnLevel, "no handlers-svc responds")
		return nil, errUnavailable, 0, false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		log(zap.WarnLevel, "handler timed out", zap.Duration("timeout", f.timeout))
		return nil, errTimeout, 0, false
	default:
		log(zap.WarnLevel, "handler request failed", zap.Error(err))
		return nil, errUnavailable, 0, false
	}
	result, perr = proto.DecodeResult(msg.Data)
	return result, perr, max(time.Since(sent), time.Nanosecond), msg.Header.Get(proto.UnrunHeader) == ""
}

func errCode(e *proto.Error) proto.Code {
	if e == nil {
		return ""
	}
	return e.Code
}

// answered counts out a request of s whose answer is queued; once the
// forwarder is stopping, the last one closes the socket.
func (f *Forwarder) answered(s *Session) {
	f.mu.Lock()
	s.pending--
	last := f.stopped && s.pending == 0
	f.mu.Unlock()
	if last {
		s.goAway()
	}
}

// Shutdown stops forwarding new envelopes (they get unavailable), closes
// each socket with 1001 once its own requests in flight have been answered
// (one with none at once, one accepted later as soon as it has its
// session), so that its client reconnects to another gateway instead of
// sending into one that refuses everything, and waits until every request
// in flight has been answered or ctx is done. A socket whose requests are
// still in flight at ctx's end is left open: the caller closes what
// remains.
func (f *Forwarder) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.stopped = true
	var idle []*Session
	for s := range f.sessions {
		if s.pending == 0 {
			idle = append(idle, s)
		}
	}
	f.mu.Unlock()
	for _, s := range idle {
		s.goAway()
	}
	done := make(chan struct{})
	go func() {
		f.inFlight.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
