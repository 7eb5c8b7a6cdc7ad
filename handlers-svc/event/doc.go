// Package event is the API backend teams use to write switchboard handlers.
//
// It is modelled on net/http and nats micro: a Handler serves one Request, a
// HandlerFunc adapts a function, a Mux routes requests by event name and is
// itself a Handler, a Group gives some of a Mux's handlers middleware of
// their own, and a Middleware wraps a Handler. A handler answers the
// client by returning nil (the client gets an ack, carrying the result the
// handler set with Request.Respond, if any) or an error; WireError turns
// that error into the wire error the client sees, so internal error text
// never reaches a client. Typed adapts a function of typed args to a typed
// result, decoding and checking the args first. A handler reaches clients
// through a Dispatcher, which delivers events to users, connections or
// everyone, and Rooms, user-level groups kept in Redis. Lifecycle hooks
// (Mux.OnConnect, Mux.OnDisconnect) are told of each socket that connects
// or disconnects, at most once.
//
// A handler is written and tested without NATS or Redis:
//
//	func (c *Chat) SendMessage(ctx context.Context, r *event.Request) error {
//		var in struct {
//			To   string `json:"to"`
//			Text string `json:"text"`
//		}
//		if err := r.Decode(&in); err != nil {
//			return err // already a bad_request naming the field
//		}
//		return c.d.ToUsers(ctx, []string{in.To}, "message", in)
//	}
//
// or, typed, with a result the client's ack carries:
//
//	func (c *Chat) SendMessage(ctx context.Context, r *event.Request, in SendArgs) (Sent, error)
//
//	mux.Handle("sendMessage", event.Typed(c.SendMessage))
//
// Package eventtest provides a recording Dispatcher and request builders for
// such tests, as net/http/httptest does for HTTP handlers.
//
// # Concurrency
//
// A Mux is configured at start-up: Handle, HandleFunc, Use, OnConnect and
// OnDisconnect must all be called before the Mux serves its first request.
// They panic on a programming error (an invalid event name, a nil handler,
// a duplicate registration)
// because such a mistake must stop the service from starting. Once serving,
// ServeEvent is safe for concurrent use.
//
// The transport calls ServeEvent, and the hooks, concurrently, one
// goroutine per request or socket, so every Handler, ConnHook and
// Dispatcher must be safe for concurrent use. The context
// passed to a handler carries the request's deadline (the gateway's handler
// timeout); a handler must return once it is done, and anything it starts
// must not outlive it unless it has its own owner. A Request and its Args
// belong to the handler only until ServeEvent returns.
package event
