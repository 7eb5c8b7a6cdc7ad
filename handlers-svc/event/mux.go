package event

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/switchboard/switchboard/proto"
)

// Mux routes a request to the Handler registered for its event name. A Mux is
// itself a Handler; a request for an event without a handler gets an error
// with code unknown_event. Middleware added with Use wraps every request,
// including those for unknown events. It also holds the lifecycle hooks,
// told of each socket that connects or disconnects (OnConnect,
// OnDisconnect); middleware does not wrap them.
//
// The zero Mux is not usable; create one with NewMux.
type Mux struct {
	mu       sync.RWMutex
	handlers map[string]Handler
	mws      []Middleware
	chain    Handler // mws applied around route; rebuilt by Use

	onConnect, onDisconnect []ConnHook // lifecycle hooks (conn.go)
}

// NewMux returns an empty Mux.
func NewMux() *Mux {
	m := &Mux{handlers: make(map[string]Handler)}
	m.chain = HandlerFunc(m.route)
	return m
}

// Handle registers h for the event name. It panics if name does not match
// proto.EventPattern, if h is nil, or if name already has a handler.
func (m *Mux) Handle(name string, h Handler) {
	if !proto.ValidEventName(name) {
		panic(fmt.Sprintf("event: invalid event name %q: must match %s", name, proto.EventPattern))
	}
	if h == nil {
		panic(fmt.Sprintf("event: nil handler for event %q", name))
	}
	if f, ok := h.(HandlerFunc); ok && f == nil {
		panic(fmt.Sprintf("event: nil handler for event %q", name))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.handlers[name]; dup {
		panic(fmt.Sprintf("event: multiple registrations for event %q", name))
	}
	m.handlers[name] = h
}

// HandleFunc registers fn for the event name, like Handle.
func (m *Mux) HandleFunc(name string, fn func(ctx context.Context, r *Request) error) {
	if fn == nil {
		panic(fmt.Sprintf("event: nil handler for event %q", name))
	}
	m.Handle(name, HandlerFunc(fn))
}

// Use appends middleware to the Mux. The first middleware given is the
// outermost: Use(a, b) runs a, then b, then the handler. Use panics on a nil
// middleware.
func (m *Mux) Use(mws ...Middleware) {
	checkMiddleware(mws)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mws = append(m.mws, mws...)
	var h Handler = HandlerFunc(m.route)
	for i := len(m.mws) - 1; i >= 0; i-- {
		h = m.mws[i](h)
	}
	m.chain = h
}

// Events returns the registered event names in sorted order.
func (m *Mux) Events() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	names := make([]string, 0, len(m.handlers))
	for name := range m.handlers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ServeEvent runs the middleware chain and the handler registered for
// r.Event.
func (m *Mux) ServeEvent(ctx context.Context, r *Request) error {
	m.mu.RLock()
	h := m.chain
	m.mu.RUnlock()
	return h.ServeEvent(ctx, r)
}

func (m *Mux) route(ctx context.Context, r *Request) error {
	m.mu.RLock()
	h, ok := m.handlers[r.Event]
	m.mu.RUnlock()
	if !ok {
		return unknownEvent(r.Event)
	}
	return h.ServeEvent(ctx, r)
}

func unknownEvent(name string) *Error {
	if !proto.ValidEventName(name) {
		// Never echo a name that might hold anything but the allowed
		// characters.
		return NewError(proto.CodeUnknownEvent, "no handler for this event")
	}
	return Errorf(proto.CodeUnknownEvent, "no handler for event %s", name)
}
