package event

import (
	"context"
	"time"
)

// Conn is one socket of a user, as a lifecycle hook is told of it
// (docs/protocol.md section 3): the gateway worker Worker opened it, or
// closed it, at At. A hook reaches the socket, or the user's other
// sockets, through the Dispatcher its family was given:
//
//	d.ToConns(ctx, []string{c.Conn}, "welcome", hello)
type Conn struct {
	User   string    // the socket's user
	Conn   string    // its connection id, as Request.Conn
	Worker int       // the index of the gateway worker that holds it
	At     time.Time // when the worker opened or closed it (millisecond precision)
	// Resumed is set on a connect whose client asked to resume: a client
	// that lost its socket and came back is a new connection.
	Resumed bool
	// Code and Reason are a disconnect's: the WebSocket close code, and
	// why the worker counts it closed, one of a short set of labels
	// ("client", "lost", "ping_timeout", "slow_consumer", "shutdown",
	// "token_expired", "disconnected", ...; "worker_lost", code 1006,
	// when its gateway worker died and the one started in its place
	// tells of it; docs/protocol.md section 3).
	Code   int
	Reason string
	// Sockets is the user's sockets counted by presence right after this
	// one's lease was written (a connect: 1 means the user just came
	// online) or removed (a disconnect: 0 means the user just went
	// offline), in one step in Redis, so of sockets that open or close at
	// once exactly one is told 1, or 0. It is -1 when not known: presence
	// off on the gateway (GATEWAY_PRESENCE_TTL=0), Redis slow or down, or
	// a gateway older than the count; ask Presence.Count then.
	Sockets int
}

// ConnHook is told of a socket that connected or disconnected. Its error is
// logged and counted; nobody waits for it, and nothing is retried.
type ConnHook func(ctx context.Context, c Conn) error

// OnConnect registers h to run once for each socket that connects to a
// gateway worker, after the socket was sent "connected": an event h
// dispatches to c.Conn reaches it. With several hooks, each runs, in the
// order registered. OnConnect panics on a nil h.
//
// A hook is told at most once, by one handlers-svc instance of the queue
// group, and not at all when NATS loses the message: use it for what
// may be missed (a welcome, a presence broadcast), not as the only
// record of who is connected.
func (m *Mux) OnConnect(h ConnHook) { m.addHook(&m.onConnect, h, "OnConnect") }

// OnDisconnect registers h to run once for each socket that closes, as
// OnConnect. A disconnect may reach another instance than its connect,
// and even before it: order them by Conn.At. A gateway worker killed
// without a drain tells of no disconnect.
func (m *Mux) OnDisconnect(h ConnHook) { m.addHook(&m.onDisconnect, h, "OnDisconnect") }

func (m *Mux) addHook(hooks *[]ConnHook, h ConnHook, what string) {
	if h == nil {
		panic("event: nil hook given to " + what)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	*hooks = append(*hooks, h)
}

// ConnectHooks returns the hooks registered with OnConnect, in order; the
// slice is the caller's.
func (m *Mux) ConnectHooks() []ConnHook {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]ConnHook(nil), m.onConnect...)
}

// DisconnectHooks returns the hooks registered with OnDisconnect, in
// order; the slice is the caller's.
func (m *Mux) DisconnectHooks() []ConnHook {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]ConnHook(nil), m.onDisconnect...)
}
