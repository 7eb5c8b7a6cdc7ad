// Package handlers holds the built-in event handlers of switchboard
// (docs/protocol.md section 5), one file per event family. Each file is written as
// the example a backend team copies: decode and check args, answer a bad
// field with event.BadRequest naming it, and reach clients only through an
// event.Dispatcher.
//
// Handlers keep no state between requests apart from their Dispatcher, so
// they are safe for concurrent use.
package handlers

import "github.com/switchboard/switchboard/handlers-svc/event"

// Register registers every built-in handler on mux, dispatching through d.
func Register(mux *event.Mux, d event.Dispatcher) {
	chat := NewChat(d)
	mux.HandleFunc(EventSendMessage, chat.SendMessage)
	posts := NewPosts(d)
	mux.HandleFunc(EventPostUpdated, posts.PostUpdated)
}
