// Command chatsvc is the chat app's handlers-svc: the built-in families
// (sendMessage, rooms) plus the app's own (room messages that skip the
// sender's socket, member lists, typing, read receipts, presence from
// connect and disconnect hooks), served to switchboard's gateways by
// package service, with everything handlers-svc does around a handler.
// It takes handlers-svc's place.
package main

import (
	"context"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/handlers-svc/service"
)

func main() {
	// The built-ins (sendMessage, postUpdated, joinRoom, leaveRoom,
	// sendToRoom), then the app's own.
	service.Main(append(handlers.Families(), registerChat)...)
}

// registerChat is the app's family: its events and its connect and
// disconnect hooks on mux.
func registerChat(_ context.Context, mux *event.Mux, deps handlers.Deps) error {
	app := &Chat{d: deps.Dispatcher, rooms: deps.Rooms, online: deps.Presence}
	app.Register(mux)
	return nil
}
