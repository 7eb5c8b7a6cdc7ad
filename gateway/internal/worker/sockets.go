package worker

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/presence"
	"github.com/switchboard/switchboard/gateway/internal/query"
	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// resumeTimeout bounds the read of the streams when a socket connects.
const resumeTimeout = 5 * time.Second

// serveSocket is /socket: a request admission lets in becomes a socket,
// registered for delivery, placed in its streams, and whose read loop runs
// in a goroutine of its own.
func (w *Worker) serveSocket(rw http.ResponseWriter, r *http.Request) {
	up, user, ok := w.adm.Admit(rw, r)
	if !ok {
		return // answered
	}
	c := ws.NewConn(up, w.ids.Next(), user, &w.limits, w.wsLog)
	// The socket is registered for delivery first, holding what arrives;
	// then its streams are read and "connected", the events it missed and
	// what it held are queued, in that order; only then does ReadLoop let
	// the writer run. So "connected" is the first frame, and nothing
	// dispatched after the read is missed (docs/protocol.md section 6).
	s := w.res.NewSocket(c)
	q := socketParams(r.URL.RawQuery)
	// Its client's previous connections before it is registered: the hub
	// leaves it out of what leaves them out from the first dispatch on.
	s.Previous(q.prev)
	w.hub.AddReserved(s) // in the place admission reserved for it
	// A revoke handled since admission checked the token (disconnect)
	// may have looked for the user's sockets before this one was in the
	// hub. It records the revoke before it looks, so one of the two sees
	// the other: the socket is closed before it is sent anything.
	revoked := w.revoked.Revoked(user, c.IssuedAt())
	leased := w.presenceOpened(c)
	w.pings.add(c)
	w.metrics.ConnOpened()
	head := proto.Connected{Worker: w.index, MaxFrame: w.cfg.MaxFrame}
	if q.heartbeat {
		head.Heartbeat = w.cfg.PingInterval.Milliseconds()
	}
	ctx, cancel := context.WithTimeout(r.Context(), resumeTimeout)
	// In per-user mode the user's channel is subscribed (confirmed by
	// Redis) before the streams are read: whatever is published after the
	// read arrives live, and whatever before is in the read.
	// Acquired whatever the revoked check said: socketClosed releases
	// every socket's hold, and would otherwise take another socket's.
	err := w.sub.Acquire(ctx, user)
	if err == nil && revoked {
		err = errRevoked
	}
	if err == nil {
		err = w.res.Connect(ctx, s, head, q.resume, q.bresume)
	}
	cancel()
	switch {
	case err == errRevoked:
		// As the disconnect closed the user's other sockets: 4002 when it
		// asked the clients to come back (with a fresh token).
		code := w.revokedCode(user)
		w.log.Info("socket closed: its token was revoked while it was admitted", zap.String("user", user), zap.String("conn", c.ID()),
			zap.Int("code", code))
		c.Close(code, proto.ReasonRevoked)
	case err == nil && q.heartbeat:
		// After connected, which must be the socket's first frame.
		w.pings.heartbeat(c, s, proto.AppendHeartbeat(nil, user))
	case errors.Is(err, fanout.ErrLagging):
		// Its client comes back with the same positions and loses nothing.
		c.Close(proto.CloseTryAgainLater, "gateway overloaded, reconnect later")
	case err != nil:
		c.Close(proto.CloseTryAgainLater, "recovery store unavailable, reconnect")
	}
	// Registered and sent connected: a dispatch to c from the hook
	// reaches it. The connect goes out once c's presence lease is
	// written (leased), so a hook that counts the user's sockets counts
	// it; c waits for neither. A socket refused above is never announced.
	var announced *bool
	if err == nil {
		announced = w.life.connected(c, q.resume != "" || q.bresume != "", leased)
	}
	if w.adm.Closed() { // shutdown began during the upgrade and may not have seen c
		c.Close(proto.CloseGoingAway, proto.ReasonShuttingDown)
	}
	w.log.Info("socket opened", zap.String("user", user), zap.String("conn", c.ID()))
	// Reading goes on in its own goroutine so this handler returns and
	// net/http releases its per-request state.
	go w.readSocket(s, c, w.fwd.Session(c), announced)
}

// errRevoked: the socket's token was revoked while it was admitted.
var errRevoked = errors.New("token revoked")

// unreadable is what socketParams makes of a resume parameter it cannot decode:
// no position parses as it.
const unreadable = "unreadable"

// params are what a client asks for in the query of its upgrade request.
type params struct {
	resume, bresume string // the wire positions to resume after; "" for none
	heartbeat       bool   // heartbeat=1: heartbeat frames (docs/protocol.md section 2)
	// prev: the client's previous connections of its session (proto.QueryPrev);
	// nil when it named none, or a malformed list.
	prev []string
}

// socketParams returns the parameters of a request's query, the first pair
// of each name deciding. Where net/url reads the whole query, that is what
// it reads. Where it drops pairs, for a bad escape or a ';', the first
// pair of a name in the query still decides, as auth reads the token: a
// later pair of the name never stands in for one that does not decode
// (query.First). Such a resume or bresume is returned as unreadable, a
// malformed position, so that connected says recovered false
// (docs/protocol.md section 6) instead of leaving recovered out as if the
// client had not asked; such a heartbeat asks for none, and such a prev
// names no connection, as a malformed list does.
func socketParams(rawQuery string) params {
	q, err := url.ParseQuery(rawQuery)
	if err == nil {
		return params{
			resume: asked(q.Get("resume"), q.Has("resume")), bresume: asked(q.Get("bresume"), q.Has("bresume")),
			heartbeat: q.Get(proto.QueryHeartbeat) == "1",
			prev:      proto.ParsePrev(q.Get(proto.QueryPrev)),
		}
	}
	var p params
	p.resume = orUnreadable(query.First(rawQuery, "resume"))
	p.bresume = orUnreadable(query.First(rawQuery, "bresume"))
	if v, _, ok := query.First(rawQuery, proto.QueryHeartbeat); ok {
		p.heartbeat = v == "1"
	}
	if v, _, ok := query.First(rawQuery, proto.QueryPrev); ok {
		p.prev = proto.ParsePrev(v)
	}
	return p
}

// asked is a resume position net/url read: its value, or unreadable when
// the parameter is there but empty, a malformed position: the client asked
// to resume, so connected answers recovered false (PROTOCOL.md section 6),
// never as if it had not asked.
func asked(value string, present bool) string {
	if present && value == "" {
		return unreadable
	}
	return value
}

// orUnreadable is a resume position from query.First: its value, or unreadable
// when it did not decode or is empty (asked).
func orUnreadable(value string, found, ok bool) string {
	if !ok {
		return unreadable
	}
	return asked(value, found)
}

// readSocket runs the read loop of c, which hands frames to its session;
// announced is what queuing c's connect returned (nil when it was not).
func (w *Worker) readSocket(s *resume.Socket, c *ws.Conn, fs *forward.Session, announced *bool) {
	c.ReadLoop(w.frameHandler(fs), w.cfg.MaxFrame)
	fs.Close()
	w.socketClosed(s, c, announced)
}

// socketClosed releases and logs an ended socket: out of the hub, its
// place under the caps is free, and its disconnect queued when its
// connect was (announced; published only if the connect was). It is not part of
// readSocket, whose stack frame every idle socket keeps, because its log
// fields would make that frame several times larger.
//
//go:noinline
func (w *Worker) socketClosed(s *resume.Socket, c *ws.Conn, announced *bool) {
	w.hub.Remove(s)
	left := w.presenceClosed(c)
	w.sub.Release(c.User()) // its Acquire, in serveSocket
	s.Closed()
	w.pings.remove(c)
	code, reason := c.CloseCode()
	why := w.metrics.ConnClosed(c.ClosedBy(), code, reason)
	w.log.Info("socket closed", zap.String("user", c.User()), zap.String("conn", c.ID()),
		zap.Int("code", code), zap.String("reason", reason), zap.String("close", why),
		zap.Duration("duration", time.Since(c.Opened())))
	// Before Leave: a drain queues every disconnect before it flushes
	// them (shutdown). Queued, never published here: NATS may be stalled.
	w.life.disconnected(c, announced, code, why, left)
	w.adm.Leave() // last: shutdown waits for this
}

// presenceRemoveWait bounds how long an ended socket waits for the removal
// of its presence lease to be written: with Redis slow or down the close
// goes on, and the lease expires within GATEWAY_PRESENCE_TTL.
const presenceRemoveWait = time.Second

// presenceOpened records the presence lease of c, which has just become
// deliverable; the write is queued, and the Count returned is done once
// it has been tried (nil with presence off).
func (w *Worker) presenceOpened(c *ws.Conn) *presence.Count {
	if w.leases == nil {
		return nil
	}
	return w.leases.Opened(c.User(), c.ID())
}

// presenceClosed removes the presence lease of c, which has left the hub,
// and returns once the removal is written (or presenceRemoveWait has
// passed): whatever announces the close after it finds c offline. It
// returns the user's sockets left with a lease, nil when not known
// (presence off, or the removal not written in time).
func (w *Worker) presenceClosed(c *ws.Conn) *int {
	if w.leases == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), presenceRemoveWait)
	defer cancel()
	if n, ok := w.leases.Closed(ctx, c.User(), c.ID()); ok {
		return &n
	}
	return nil
}

// closeRevoked closes the sockets of users whose tokens are revoked now:
// for revokes the worker learned of from sb:revoked only
// (revoke.List.OnMissed), whose disconnect was published while it was
// not subscribed. A socket on a token issued after the revoke stays.
func (w *Worker) closeRevoked(users []string) {
	for _, s := range w.hub.Matching(users, nil) {
		if !w.revoked.Revoked(s.User(), s.IssuedAt()) {
			continue
		}
		code := w.revokedCode(s.User())
		w.log.Info("socket closed: its token was revoked while the worker was not subscribed",
			zap.String("user", s.User()), zap.String("conn", s.ID()), zap.Int("code", code))
		s.Close(code, proto.ReasonRevoked)
	}
}

// revokedCode is the close code of a socket on a revoked token of user,
// as the revoke's disconnect closed the user's other sockets: 4002 when
// it asked the clients to come back (with a fresh token), else 4003.
func (w *Worker) revokedCode(user string) int {
	if w.revoked.Reconnect(user) {
		return proto.CloseReconnect
	}
	return proto.CloseDisconnected
}

// disconnect closes the local sockets a backend's disconnect names
// (docs/protocol.md section 7), each with the code and reason it asks
// for. It runs on the fan-out's deliverer, in order with the dispatches,
// so the events dispatched before it are queued ahead of the close; Close
// does not block.
func (w *Worker) disconnect(d *proto.Disconnect) {
	code, reason := d.CloseCode()
	// Revoked first: a socket closed below that reconnects here at once
	// is refused.
	if d.RevokeBefore > 0 && len(d.Users) > 0 {
		w.revoked.Revoke(d.Users, d.RevokeBefore, d.Reconnect)
		w.log.Info("tokens revoked by a backend", zap.Strings("users", d.Users), zap.Int64("revoke_before_ms", d.RevokeBefore))
	}
	for _, s := range w.hub.Matching(d.Users, d.Conns) {
		w.log.Info("socket disconnected by a backend", zap.String("user", s.User()), zap.String("conn", s.ID()),
			zap.Int("code", code), zap.String("reason", reason))
		s.Close(code, reason)
	}
}
