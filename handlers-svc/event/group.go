package event

import (
	"context"
	"fmt"
)

// Group registers handlers on a Mux with middleware of their own, which
// wraps only the group's handlers, inside the Mux's middleware: a family
// of handlers that needs authorization, its own access log or a tighter
// deadline gets it without the others paying for it, as chi's Group does
// for HTTP routes. A Group is configured at start-up, like its Mux.
type Group struct {
	mux *Mux
	mws []Middleware
}

// Group returns a Group whose handlers run mws around them, the first
// outermost, inside the Mux's own middleware. It panics on a nil
// middleware.
func (m *Mux) Group(mws ...Middleware) *Group {
	checkMiddleware(mws)
	return &Group{mux: m, mws: append([]Middleware(nil), mws...)}
}

// Group returns a Group nested in g: its handlers run g's middleware, then
// mws, then the handler.
func (g *Group) Group(mws ...Middleware) *Group {
	checkMiddleware(mws)
	all := make([]Middleware, 0, len(g.mws)+len(mws))
	return &Group{mux: g.mux, mws: append(append(all, g.mws...), mws...)}
}

// Handle registers h for the event name on the group's Mux, wrapped in
// the group's middleware. It panics as Mux.Handle does.
func (g *Group) Handle(name string, h Handler) {
	if h == nil {
		panic(fmt.Sprintf("event: nil handler for event %q", name))
	}
	if f, ok := h.(HandlerFunc); ok && f == nil {
		panic(fmt.Sprintf("event: nil handler for event %q", name))
	}
	for i := len(g.mws) - 1; i >= 0; i-- {
		h = g.mws[i](h)
	}
	g.mux.Handle(name, h)
}

// HandleFunc registers fn for the event name, like Handle.
func (g *Group) HandleFunc(name string, fn func(ctx context.Context, r *Request) error) {
	if fn == nil {
		panic(fmt.Sprintf("event: nil handler for event %q", name))
	}
	g.Handle(name, HandlerFunc(fn))
}

func checkMiddleware(mws []Middleware) {
	for i, mw := range mws {
		if mw == nil {
			panic(fmt.Sprintf("event: nil middleware at position %d", i))
		}
	}
}
