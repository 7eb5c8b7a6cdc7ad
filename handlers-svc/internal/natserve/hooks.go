package natserve

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/proto"
)

// Outcomes of a lifecycle hook, told to Config.Hooked.
const (
	HookOK    = "ok"
	HookError = "error"
	HookPanic = "panic"
	// HookOverloaded: no handler slot came free within Config.Timeout,
	// and the message's hooks were not run.
	HookOverloaded = "overloaded"
)

// hookJob is one lifecycle message for a worker: the socket it tells of,
// its type and the hooks to run.
type hookJob struct {
	typ   string
	conn  event.Conn
	hooks []event.ConnHook
}

// subscribe subscribes to the requests and, when there are hooks for
// them, to the lifecycle subjects, all in proto.QueueGroup with the same
// pending limits, and returns the subscriptions made, also on error.
func (s *Server) subscribe(base context.Context) ([]*nats.Subscription, error) {
	type subject struct {
		name string
		cb   nats.MsgHandler
	}
	subjects := []subject{{proto.SubjectAll, func(m *nats.Msg) { s.serve(base, m) }}}
	if hooks := s.cfg.OnConnect; len(hooks) > 0 {
		subjects = append(subjects, subject{proto.LifecycleConnect, func(m *nats.Msg) {
			s.serveHooks(base, m, proto.LifecycleTypeConnect, hooks)
		}})
	}
	if hooks := s.cfg.OnDisconnect; len(hooks) > 0 {
		subjects = append(subjects, subject{proto.LifecycleDisconnect, func(m *nats.Msg) {
			s.serveHooks(base, m, proto.LifecycleTypeDisconnect, hooks)
		}})
	}
	var subs []*nats.Subscription
	for _, sj := range subjects {
		sub, err := s.nc.QueueSubscribe(sj.name, proto.QueueGroup, sj.cb)
		if err != nil {
			return subs, fmt.Errorf("subscribe %s: %w", sj.name, err)
		}
		subs = append(subs, sub)
		if err := sub.SetPendingLimits(s.cfg.PendingMsgs, s.cfg.PendingBytes); err != nil {
			return subs, fmt.Errorf("subscribe %s: pending limits: %w", sj.name, err)
		}
	}
	return subs, nil
}

// hookSlots is how many lifecycle messages' hooks may run at once with
// maxConcurrent handler slots: half of them, so that a reconnect storm
// (a drain's disconnects, then as many connects) of slow hooks leaves
// the clients' requests the other half; at least 1.
func hookSlots(maxConcurrent int) int { return max(1, maxConcurrent/2) }

// serveHooks takes one lifecycle message of type typ on its
// subscription's delivery goroutine and hands its hooks to a worker under
// a handler slot, as serve does a request: they share Config.MaxConcurrent
// and run within Config.Timeout, hooks in at most half the slots
// (hookSlots). A message that gets no slot in that time is dropped unrun:
// a lifecycle message is at most once anyway.
func (s *Server) serveHooks(base context.Context, m *nats.Msg, typ string, hooks []event.ConnHook) {
	l, err := proto.DecodeLifecycle(m.Data)
	if err != nil || l.Type != typ {
		s.log.Warn("bad lifecycle message", zap.String("subject", m.Subject), zap.Error(err))
		return
	}
	c := event.Conn{
		User: l.User, Conn: l.Conn, Worker: l.Worker, At: time.UnixMilli(l.At),
		Resumed: l.Resumed, Code: l.Code, Reason: l.Reason, Sockets: -1,
	}
	if l.Sockets != nil {
		c.Sockets = *l.Sockets
	}
	ctx, cancel := context.WithTimeout(base, s.cfg.Timeout)
	if !acquire(ctx, s.hookSlots) {
		s.overloaded(cancel, typ, c)
		return
	}
	if !acquire(ctx, s.slots) {
		<-s.hookSlots
		s.overloaded(cancel, typ, c)
		return
	}
	j := job{ctx: ctx, cancel: cancel, hook: &hookJob{typ: typ, conn: c, hooks: hooks}}
	select {
	case s.jobs <- j:
	default:
		s.workers.Add(1)
		go s.work(j)
	}
}

// acquire takes one of slots, waiting until ctx ends; it reports whether
// it took one.
func acquire(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	select {
	case slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// overloaded drops a lifecycle message of type typ about c that got no
// slot in time, and ends its context with cancel.
func (s *Server) overloaded(cancel context.CancelFunc, typ string, c event.Conn) {
	cancel()
	s.log.Warn("overloaded: no handler slot for a lifecycle hook in time, not run",
		zap.String("event", typ), zap.String("user", c.User), zap.String("conn", c.Conn),
		zap.Int("max_concurrent", s.cfg.MaxConcurrent), zap.Int("hook_slots", cap(s.hookSlots)))
	s.hooked(typ, HookOverloaded)
}

// runHooks runs each hook of j in turn, each told its outcome, logged
// when it failed: one failing or panicking does not keep the others from
// running.
func (s *Server) runHooks(ctx context.Context, j *hookJob) {
	for _, h := range j.hooks {
		result, err := s.callHook(ctx, h, j)
		s.hooked(j.typ, result)
		if err != nil {
			s.log.Error("lifecycle hook failed",
				zap.String("event", j.typ), zap.String("user", j.conn.User), zap.String("conn", j.conn.Conn),
				zap.Error(err))
		}
	}
}

// callHook runs h, recovering a panic as call does a handler's.
func (s *Server) callHook(ctx context.Context, h event.ConnHook, j *hookJob) (result string, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("lifecycle hook panicked",
				zap.String("event", j.typ), zap.String("user", j.conn.User), zap.String("conn", j.conn.Conn),
				zap.Any("panic", p), zap.Stack("stack"))
			result, err = HookPanic, nil // logged here
		}
	}()
	if err := h(ctx, j.conn); err != nil {
		return HookError, err
	}
	return HookOK, nil
}

func (s *Server) hooked(typ, result string) {
	if s.cfg.Hooked != nil {
		s.cfg.Hooked(typ, result)
	}
}
