package natserve

import (
	"context"
	"errors"
	"fmt"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/proto"
)

// Defaults of Config.
const (
	DefaultTimeout         = 5 * time.Second // matches the gateway's handler timeout
	DefaultShutdownTimeout = 10 * time.Second
	DefaultMaxConcurrent   = 1024
	// DefaultPendingMsgs and DefaultPendingBytes bound the requests
	// waiting in the subscription while every handler slot is busy: a few
	// slots' worth, not nats.go's 512Ki messages and 64 MiB, behind which a
	// request would wait far past its deadline.
	DefaultPendingMsgs  = 4 * DefaultMaxConcurrent
	DefaultPendingBytes = 16 << 20
)

// expiredLogEvery is how often, at most, the requests dropped for their
// deadline are logged: one line with how many, not one per request.
const expiredLogEvery = time.Second

// flushTimeout bounds the final flush of replies when the shutdown deadline
// leaves less.
const flushTimeout = time.Second

// maxIdleWorkers is the most workers kept waiting for a request. A worker
// keeps the stack its handler grew, so a request it takes does not pay for
// growing a new goroutine's stack again (a fifth of handlers-svc's CPU at
// 12,000 requests/s when every request had a new goroutine); more workers
// than this exit once their request is done.
const maxIdleWorkers = 64

// Config tunes a Server. Zero fields take the defaults.
type Config struct {
	// Timeout is the deadline of each request's context, counted from when
	// the message is taken from the subscription. It should equal the
	// gateway's handler timeout: a later reply is dropped by the gateway.
	Timeout time.Duration
	// ShutdownTimeout bounds Run's drain and wait once its context is done.
	ShutdownTimeout time.Duration
	// MaxConcurrent is the most handlers running at once.
	MaxConcurrent int
	// PendingMsgs and PendingBytes bound the requests waiting in the
	// subscription; beyond them NATS drops requests (the gateway answers
	// their clients timeout) and the client library reports a slow
	// consumer.
	PendingMsgs  int
	PendingBytes int
	// Expired, when set, is told of each request dropped unrun because
	// the gateway's deadline (proto.DeadlineHeader) had passed.
	Expired func(event string)
	// Idem keeps the records of requests that carry an idempotency key
	// (proto.IdemHeader): the handler runs at most once per user and key
	// while the record lasts, and a repeat gets the first one's answer.
	// Nil: such requests are refused (bad_request).
	Idem *idem.Store
	// Replayed, when set, is told of each request answered from the
	// record of an earlier one with the same key, its handler not run.
	Replayed func(event string)
	// OnConnect and OnDisconnect are the lifecycle hooks
	// (event.Mux.ConnectHooks, DisconnectHooks): the Server subscribes to
	// proto.LifecycleConnect only when OnConnect has some, and likewise
	// for disconnects (hooks.go).
	OnConnect, OnDisconnect []event.ConnHook
	// Hooked, when set, is told of each hook's outcome: the message's
	// type (proto.LifecycleTypeConnect or Disconnect) and HookOK,
	// HookError, HookPanic or HookOverloaded (once for the message, no
	// hook run).
	Hooked func(typ, result string)
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.PendingMsgs <= 0 {
		c.PendingMsgs = DefaultPendingMsgs
	}
	if c.PendingBytes <= 0 {
		c.PendingBytes = DefaultPendingBytes
	}
	return c
}

// Server serves NATS requests with an event.Handler.
type Server struct {
	nc    *nats.Conn
	h     event.Handler
	log   *zap.Logger
	cfg   Config
	slots chan struct{} // a handler holds one while it runs
	// hookSlots bounds the lifecycle hooks running to half of slots
	// (hooks.go): a hook holds one and one of slots.
	hookSlots chan struct{}
	ready     chan struct{} // closed once subscribed
	started   atomic.Bool

	// Workers run the requests. jobs is unbuffered: a send succeeds only
	// when an idle worker takes the request at once, otherwise a new worker
	// starts. Idle workers exit when quit is closed, at the end of Run.
	jobs    chan job
	quit    chan struct{}
	idle    atomic.Int32 // workers waiting on jobs, or about to
	workers sync.WaitGroup

	// Requests dropped for their deadline since the last line logging
	// them, and when that was (Unix nanoseconds).
	expired       atomic.Int64
	expiredLogged atomic.Int64
}

// job is one request for a worker: it holds a slot until it has replied.
type job struct {
	ctx      context.Context
	cancel   context.CancelFunc
	m        *nats.Msg
	r        *event.Request
	deadline time.Time // the gateway's; zero when the request named none
	idem     string    // the idempotency key; "" without one
	hook     *hookJob  // set for a lifecycle message instead of m and r (hooks.go)
}

// New returns a Server that serves requests arriving on nc with h. The caller
// owns nc: it must stay open until Run returns, and be closed after.
func New(nc *nats.Conn, h event.Handler, log *zap.Logger, cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{
		nc:        nc,
		h:         h,
		log:       log.Named("natserve"),
		cfg:       cfg,
		slots:     make(chan struct{}, cfg.MaxConcurrent),
		hookSlots: make(chan struct{}, hookSlots(cfg.MaxConcurrent)),
		ready:     make(chan struct{}),
		jobs:      make(chan job),
		quit:      make(chan struct{}),
	}
}

// Ready returns a channel that is closed once Run has subscribed, so the
// Server receives requests.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run subscribes and serves requests until ctx is done, then drains the
// subscription, waits for running handlers and returns; see the package
// documentation for the bounds. It returns nil after a clean shutdown, and an
// error if it could not subscribe or had to give up on handlers. Run may be
// called only once.
func (s *Server) Run(ctx context.Context) error {
	if s.started.Swap(true) {
		return errors.New("natserve: Run called twice")
	}
	// Handlers outlive ctx: they are cancelled only at the shutdown deadline.
	base, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	// Idle workers go when Run does; after a clean drain Run waits for them
	// (none is running a handler then).
	var stopWorkers sync.Once
	defer stopWorkers.Do(func() { close(s.quit) })

	subs, err := s.subscribe(base)
	if err != nil {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		return err
	}
	closed := make([]<-chan nats.SubStatus, len(subs))
	for i, sub := range subs {
		closed[i] = sub.StatusChanged(nats.SubscriptionClosed)
	}
	if err := s.nc.Flush(); err != nil {
		// The subscription is kept and sent again on reconnect.
		s.log.Warn("flush subscription", zap.Error(err))
	}
	s.log.Info("serving", zap.String("subject", proto.SubjectAll), zap.String("queue", proto.QueueGroup),
		zap.Int("connect_hooks", len(s.cfg.OnConnect)), zap.Int("disconnect_hooks", len(s.cfg.OnDisconnect)))
	close(s.ready)

	<-ctx.Done()
	s.log.Info("draining")
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()

	if !s.nc.IsConnected() {
		// NATS is down (a stop during an outage): no request can arrive
		// and no reply leave, and a drain would wait for the server until
		// the deadline, then fail. The gateways answered the requests in
		// flight unavailable when NATS went; the handlers running finish.
		s.log.Warn("nats is down at shutdown: nothing to drain")
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	} else {
		for _, sub := range subs {
			if err := sub.Drain(); err != nil {
				s.log.Warn("drain subscription", zap.String("subject", sub.Subject), zap.Error(err))
				_ = sub.Unsubscribe()
			}
		}
		for _, c := range closed {
			select {
			case <-c:
			case <-timer.C:
				// Stop taking messages; a delivery callback may still be waiting
				// for a slot until its request's deadline.
				for _, sub := range subs {
					_ = sub.Unsubscribe()
				}
				cancelHandlers()
				return s.afterCancel(fmt.Errorf("natserve: drain did not finish within %s", s.cfg.ShutdownTimeout), 0)
			}
		}
	}

	// Every slot taken back means every handler has replied.
	for taken := 0; taken < cap(s.slots); taken++ {
		select {
		case s.slots <- struct{}{}:
		case <-timer.C:
			cancelHandlers()
			running := cap(s.slots) - taken
			return s.afterCancel(fmt.Errorf("natserve: %d handlers still running after %s", running, s.cfg.ShutdownTimeout), taken)
		}
	}
	stopWorkers.Do(func() { close(s.quit) })
	s.workers.Wait()

	// With NATS gone the replies are lost with it (the gateway answers their
	// clients unavailable), and a flush would only wait for the deadline.
	if !s.nc.IsConnected() {
		s.log.Warn("nats is down at shutdown: replies not yet flushed are lost")
	} else if err := s.nc.FlushTimeout(max(time.Until(deadline), flushTimeout)); err != nil {
		s.log.Warn("flush replies", zap.Error(err))
	}
	s.log.Info("drained")
	return nil
}

// CancelGrace is how long Run waits, at the end of ShutdownTimeout, for
// the handlers it has cancelled to return.
const CancelGrace = 2 * time.Second

// ErrHandlersRunning is in Run's error when handlers still ran
// CancelGrace after their context was cancelled: whatever they use must
// not be closed under them.
var ErrHandlersRunning = errors.New("handlers still running after their cancel")

// afterCancel waits up to CancelGrace for the handlers, just cancelled, to
// give back their slots (taken of them are taken back already), and
// returns err, with ErrHandlersRunning when some did not.
func (s *Server) afterCancel(err error, taken int) error {
	grace := time.NewTimer(CancelGrace)
	defer grace.Stop()
	for ; taken < cap(s.slots); taken++ {
		select {
		case s.slots <- struct{}{}:
		case <-grace.C:
			return fmt.Errorf("%w: %w (%d of them)", err, ErrHandlersRunning, cap(s.slots)-taken)
		}
	}
	return fmt.Errorf("%w; cancelled, they returned", err)
}

// serve handles one message on the subscription's delivery goroutine.
func (s *Server) serve(base context.Context, m *nats.Msg) {
	now := time.Now()
	deadline, hasDeadline := proto.ParseDeadline(m.Header.Get(proto.DeadlineHeader))
	if hasDeadline && !now.Before(deadline) {
		s.drop(m, deadline)
		return
	}
	// The handler's context ends by the gateway's deadline too: past it,
	// the client was told timeout, and the handler must not go on.
	end := now.Add(s.cfg.Timeout)
	if hasDeadline && deadline.Before(end) {
		end = deadline
	}
	ctx, cancel := context.WithDeadline(base, end)
	req, err := proto.DecodeRequest(m.Data)
	if err != nil {
		cancel()
		s.log.Debug("bad request", zap.String("subject", m.Subject), zap.Error(err))
		s.respondUnrun(m, nil, event.WireError(err))
		return
	}
	r := &event.Request{Event: req.Event, User: req.User, Conn: req.Conn, Ref: req.Ref, Args: req.Args}
	if string(r.Args) == "null" {
		r.Args = nil // the gateway sends null for absent args
	}
	if name, ok := proto.EventFromSubject(m.Subject); !ok || name != req.Event {
		cancel()
		s.respondUnrun(m, r, &proto.Error{Code: proto.CodeBadRequest, Message: "request event does not match its subject"})
		return
	}
	idemKey, ierr := s.idemKey(m)
	if ierr != nil {
		cancel()
		s.respondUnrun(m, r, ierr)
		return
	}

	select {
	case s.slots <- struct{}{}:
	default:
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			cancel()
			s.log.Warn("overloaded: no handler slot before the request deadline",
				zap.String("event", r.Event), zap.String("user", r.User), zap.String("conn", r.Conn),
				zap.Int("max_concurrent", s.cfg.MaxConcurrent))
			s.respondUnrun(m, r, &proto.Error{Code: proto.CodeUnavailable, Message: "handlers-svc is overloaded"})
			return
		}
	}
	j := job{ctx: ctx, cancel: cancel, m: m, r: r, idem: idemKey}
	if hasDeadline {
		j.deadline = deadline
	}
	select {
	case s.jobs <- j:
	default:
		s.workers.Add(1)
		go s.work(j)
	}
}

// work runs j, then the requests handed to it while it waits idle, until
// there are maxIdleWorkers others waiting or Run has returned.
func (s *Server) work(j job) {
	defer s.workers.Done()
	for {
		s.run(j)
		j = job{} // an idle worker keeps no request's payload or context
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		select {
		case j = <-s.jobs:
			s.idle.Add(-1)
		case <-s.quit:
			s.idle.Add(-1)
			return
		}
	}
}

// run runs the handler of j, replies, and frees j's slot; a request whose
// deadline passed while it waited for its slot is dropped unrun.
func (s *Server) run(j job) {
	defer func() { <-s.slots }()
	defer j.cancel()
	if j.hook != nil {
		s.runHooks(j.ctx, j.hook)
		<-s.hookSlots // before its slot: all slots back means all hooks done
		return
	}
	if !j.deadline.IsZero() && !time.Now().Before(j.deadline) {
		s.drop(j.m, j.deadline)
		return
	}
	var res *idem.Reservation
	if j.idem != "" {
		var replay []byte
		var err error
		if res, replay, err = s.cfg.Idem.Wait(j.ctx, proto.UserIdemKey(j.r.User, j.idem), requestHash(j.r)); res == nil {
			s.answerRepeat(j, replay, err)
			return
		}
	}
	ctx, effects := late.Track(j.ctx)
	err := s.call(ctx, j.r)
	if err != nil && errors.Is(err, context.Canceled) && errors.Is(j.ctx.Err(), context.Canceled) {
		// Cancelled at the shutdown deadline, mid-way: it may have had
		// some of its effects, which unavailable would deny.
		err = &event.Error{Code: proto.CodeTimeout, Message: msgStopped, Err: err}
	}
	if err != nil && effects.Maybe() && event.WireError(err).Code == proto.CodeUnavailable {
		// A dispatch of this request failed unsent, but an earlier one
		// may have been delivered: unavailable, "nothing was done, send
		// it again", is true of that dispatch, not of the request.
		err = &event.Error{Code: proto.CodeTimeout, Message: msgPartly, Err: err}
	}
	s.logFailure(j.r, err)
	body := s.reply(j.r, event.WireError(err))
	// A rate_limited after an earlier dispatch went out does not free the
	// key either: the repeat would send that one again.
	partly := effects.Maybe() && event.WireError(err) != nil && event.WireError(err).Code == proto.CodeRateLimited
	switch unknown := res != nil && (outcomeUnknown(j, err) || partly); {
	case res == nil:
		s.send(j.m, j.r, body)
	case unknown:
		// Marked before the answer goes: a repeat the client sends on it
		// finds the key given up, and is refused at once.
		s.settle(j, res, body, err, true)
		s.send(j.m, j.r, body)
	default:
		s.send(j.m, j.r, body)
		s.settle(j, res, body, err, false)
	}
}

// drop counts and logs a request not run because the gateway's deadline
// passed before it could start: the client was told timeout, so running
// it would have effects the client believes did not happen. No reply is
// sent: nobody waits for it. The log line comes at most once per
// expiredLogEvery, with how many were dropped since the last one.
func (s *Server) drop(m *nats.Msg, deadline time.Time) {
	event, _ := proto.EventFromSubject(m.Subject)
	if s.cfg.Expired != nil {
		s.cfg.Expired(event)
	}
	n := s.expired.Add(1)
	now := time.Now().UnixNano()
	last := s.expiredLogged.Load()
	if now-last < int64(expiredLogEvery) || !s.expiredLogged.CompareAndSwap(last, now) {
		return
	}
	s.expired.Add(-n)
	// The deadline is the gateway's clock: a late that stays near one
	// value whatever the load is this clock running ahead of the gateway's.
	s.log.Warn("requests dropped unrun: the gateway's deadline had passed (handlers-svc is behind, or its clock is ahead of the gateway's)",
		zap.Int64("dropped", n), zap.String("event", event), zap.Duration("late", time.Since(deadline)))
}

// call runs the handler. A panic the handler's middleware did not recover is
// recovered here, as net/http does, so one bad request cannot stop the
// service.
func (s *Server) call(ctx context.Context, r *event.Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked",
				zap.String("event", r.Event), zap.String("user", r.User), zap.String("conn", r.Conn),
				zap.Any("panic", p), zap.Stack("stack"))
			err = event.NewError(proto.CodeHandlerError, "handler failed")
		}
	}()
	return s.h.ServeEvent(ctx, r)
}

// logFailure logs a failed request once: at debug level when the handler
// chose the answer (a typed error without a cause), at error level for a
// handler_error and at warn level otherwise (unavailable, timeout).
func (s *Server) logFailure(r *event.Request, err error) {
	if err == nil {
		return
	}
	lvl := zap.WarnLevel
	code := event.WireError(err).Code
	switch {
	case isAnswer(err):
		lvl = zap.DebugLevel
	case code == proto.CodeHandlerError:
		lvl = zap.ErrorLevel
	}
	if ce := s.log.Check(lvl, "handler failed"); ce != nil {
		ce.Write(
			zap.String("event", r.Event), zap.String("user", r.User), zap.String("conn", r.Conn),
			zap.String("code", string(code)), zap.Error(err))
	}
}

// isAnswer reports whether err is an answer the handler chose for the client
// (a typed error without a cause) rather than a failure to investigate.
func isAnswer(err error) bool {
	if e, ok := errors.AsType[*event.Error](err); ok {
		return e.Err == nil && e.Code != ""
	}
	_, ok := errors.AsType[*proto.Error](err)
	return ok
}

// msgStopped answers a request whose handler handlers-svc cancelled when
// it stopped (its shutdown deadline) before the handler returned.
const msgStopped = "handlers-svc stopped before the handler finished; it may have run"

// msgPartly answers a request whose handler failed with unavailable (a
// dispatch not sent) after an earlier dispatch of it may have been
// delivered.
const msgPartly = "the handler failed after some of its events may have been delivered"

// errResultTooLarge answers a request whose handler returned a result the
// client could not be sent.
var errResultTooLarge = &proto.Error{Code: proto.CodeHandlerError, Message: "handler failed: its result is too large"}

// errResultNotUTF8 answers a request whose handler returned a result
// that is not UTF-8.
var errResultNotUTF8 = &proto.Error{Code: proto.CodeHandlerError, Message: "handler failed: its result is not UTF-8"}

// respondUnrun answers m with werr, a request answered before anything
// ran for its event, marked so (proto.UnrunHeader).
func (s *Server) respondUnrun(m *nats.Msg, r *event.Request, werr *proto.Error) {
	if m.Reply == "" {
		return
	}
	reply := &nats.Msg{Data: s.reply(r, werr), Header: nats.Header{proto.UnrunHeader: []string{"1"}}}
	if err := m.RespondMsg(reply); err != nil {
		s.log.Warn("reply failed", zap.String("subject", m.Subject), zap.Error(err))
	}
}

// reply returns the body of the reply for werr (nil for success, with r's
// result when the handler set one). A result over proto.MaxResult, too
// large for a NATS message, or not UTF-8, is answered handler_error, and logged: the
// gateway would otherwise wait for a reply that never comes, or queue an
// ack too big for the client's socket.
func (s *Server) reply(r *event.Request, werr *proto.Error) []byte {
	var body []byte
	if werr == nil && r != nil && r.Result() != nil {
		if n := len(r.Result()); n > proto.MaxResult {
			s.log.Error("handler result too large",
				zap.String("event", r.Event), zap.String("user", r.User), zap.String("conn", r.Conn),
				zap.Int("bytes", n), zap.Int("max", proto.MaxResult))
			werr = errResultTooLarge
		} else if !utf8.Valid(r.Result()) {
			// A json.RawMessage of bytes from a source that is not UTF-8:
			// no socket may be sent it in a text frame.
			s.log.Error("handler result not UTF-8",
				zap.String("event", r.Event), zap.String("user", r.User), zap.String("conn", r.Conn),
				zap.Int("bytes", n))
			werr = errResultNotUTF8
		} else {
			body = proto.AppendResult(make([]byte, 0, 32+n), r.Result())
			if limit := s.nc.MaxPayload(); limit > 0 && int64(len(body)) > limit {
				s.log.Error("handler result too large for a NATS reply",
					zap.String("event", r.Event), zap.String("user", r.User), zap.String("conn", r.Conn),
					zap.Int("bytes", len(body)), zap.Int64("max_payload", limit))
				body = nil
				werr = errResultTooLarge
			}
		}
	}
	if body == nil {
		body = proto.AppendReply(make([]byte, 0, 64), werr)
	}
	return body
}

// send sends body as the reply to m, if m asked for one.
func (s *Server) send(m *nats.Msg, r *event.Request, body []byte) {
	if m.Reply == "" {
		return
	}
	if err := m.Respond(body); err != nil {
		fields := []zap.Field{zap.String("subject", m.Subject), zap.Error(err)}
		if r != nil {
			fields = append(fields, zap.String("event", r.Event), zap.String("user", r.User), zap.String("conn", r.Conn))
		}
		s.log.Warn("reply failed", fields...)
	}
}
