// Package handlers holds the built-in event handlers of switchboard
// (docs/protocol.md section 5), one file per event family. Each file is written as
// the example a backend team copies: decode and check args, answer a bad
// field with event.BadRequest naming it, and reach clients only through an
// event.Dispatcher (and event.Rooms).
//
// Each family registers itself with a Family function, which takes what
// the family needs from Deps; Families lists them. A new family, or a
// family that needs a new dependency (a database handle, a client of
// another service), is a change in this package only: main and the other
// families stay as they are.
//
// Handlers keep no state between requests apart from what their family
// was built with, so they are safe for concurrent use.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/limit"
)

// Deps is what handlers-svc hands every family at start-up. A family takes
// from it what it needs and builds the rest from its own settings, read
// with Getenv: a database handle, a client of another service. What it
// opens, it closes with OnStop.
//
// Register fills Log, Metrics, Getenv and OnStop when they are nil, so a
// test may leave them out (Deps{Dispatcher: rec, Rooms: rec}, with an
// eventtest.Recorder); a test that calls a Family itself must set those the
// family uses.
type Deps struct {
	// Dispatcher delivers events to users, connections or everyone,
	// recorded for recovery (package dispatch).
	Dispatcher event.Dispatcher
	// Rooms keeps room membership and dispatches to rooms.
	Rooms event.Rooms
	// Presence tells which users have sockets open, on how many devices
	// (package presence); nil in unit tests that do not set it.
	Presence event.Presence
	// Redis is the service's Redis client, for a family that keeps state
	// there; nil in unit tests.
	Redis redis.UniversalClient
	// Log is the service's logger; name a child for the family.
	Log *zap.Logger
	// Metrics registers the family's own Prometheus collectors, served on
	// /metrics with the service's.
	Metrics prometheus.Registerer
	// Getenv reads the family's own settings from the environment.
	Getenv func(string) string
	// OnStop registers fn to run when the service stops, once no handler
	// runs any more, before Redis is closed; the last registered runs first.
	OnStop func(fn func())
	// Senders bounds what one user pushes to others (package limit), one
	// for every family, so its in-process share is counted once; Register
	// makes it from Redis and the environment when it is nil.
	Senders *limit.Sender
}

// Family registers one family of handlers on mux, built with what it
// needs from deps; ctx bounds what it does at start-up (connecting to a
// database, say). An error stops the service from starting.
type Family func(ctx context.Context, mux *event.Mux, deps Deps) error

// Families returns every family handlers-svc serves, in order. A new
// family is one line here.
func Families() []Family {
	return []Family{RegisterChat, RegisterPosts, RegisterRooms}
}

// Register registers every family of Families on mux.
func Register(ctx context.Context, mux *event.Mux, deps Deps) error {
	return RegisterFamilies(ctx, mux, deps, Families()...)
}

// RegisterFamilies registers families on mux, in order, each with deps,
// filled as Register fills them: one Senders for all of them. It is how
// package service registers the families a team's main gives it.
func RegisterFamilies(ctx context.Context, mux *event.Mux, deps Deps, families ...Family) error {
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.Getenv == nil {
		deps.Getenv = func(string) string { return "" }
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	if deps.OnStop == nil {
		deps.OnStop = func(func()) {}
	}
	if deps.Senders == nil {
		lim, err := senderLimits(deps)
		if err != nil {
			return err
		}
		deps.Senders = lim
	}
	var errs []error
	for i, f := range families {
		if err := f(ctx, mux, deps); err != nil {
			errs = append(errs, fmt.Errorf("handler family %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// RegisterChat registers sendMessage.
func RegisterChat(_ context.Context, mux *event.Mux, deps Deps) error {
	if deps.Dispatcher == nil {
		return errors.New("chat: no Dispatcher")
	}
	lim, err := senders(deps)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	mux.HandleFunc(EventSendMessage, NewChat(deps.Dispatcher).Limit(lim).SendMessage)
	return nil
}

// RegisterPosts registers postUpdated.
func RegisterPosts(_ context.Context, mux *event.Mux, deps Deps) error {
	if deps.Dispatcher == nil {
		return errors.New("posts: no Dispatcher")
	}
	lim, err := senders(deps)
	if err != nil {
		return fmt.Errorf("posts: %w", err)
	}
	mux.HandleFunc(EventPostUpdated, NewPosts(deps.Dispatcher).Limit(lim).PostUpdated)
	return nil
}

// RegisterRooms registers joinRoom, leaveRoom and sendToRoom.
func RegisterRooms(_ context.Context, mux *event.Mux, deps Deps) error {
	if deps.Dispatcher == nil || deps.Rooms == nil {
		return errors.New("rooms: no Dispatcher or no Rooms")
	}
	lim, err := senders(deps)
	if err != nil {
		return fmt.Errorf("rooms: %w", err)
	}
	h := NewRooms(deps.Dispatcher, deps.Rooms).Limit(lim)
	mux.Handle(EventJoinRoom, event.Typed(h.Join))
	mux.Handle(EventLeaveRoom, event.Typed(h.Leave))
	mux.Handle(EventSendToRoom, event.Typed(h.Send))
	return nil
}

// senders returns deps.Senders, or, for a family registered on its own,
// bounds of its own.
func senders(deps Deps) (*limit.Sender, error) {
	if deps.Senders != nil {
		return deps.Senders, nil
	}
	return senderLimits(deps)
}

// senderLimits returns the bounds on what one user can push to others
// (package limit), kept in deps.Redis and set as SenderConfig reads them;
// nil without Redis.
func senderLimits(deps Deps) (*limit.Sender, error) {
	if deps.Redis == nil {
		return nil, nil
	}
	cfg, err := SenderConfig(deps.Getenv)
	if err != nil {
		return nil, err
	}
	return limit.New(deps.Redis, cfg), nil
}

// SenderConfig reads the bounds of the built-in handlers on what one user
// can push to others: HANDLERS_SEND_BYTES_PER_SEC, HANDLERS_SEND_BYTES_BURST,
// HANDLERS_RECIPIENTS_PER_SEC and HANDLERS_RECIPIENTS_BURST (0 turns a
// bound off), over limit.DefaultConfig. handlers-svc calls it with its
// configuration, so that a bad value refuses the start before anything
// connects.
func SenderConfig(getenv func(string) string) (limit.Config, error) {
	cfg := limit.DefaultConfig()
	for _, s := range []struct {
		env string
		v   *int
	}{
		{"HANDLERS_SEND_BYTES_PER_SEC", &cfg.BytesPerSecond},
		{"HANDLERS_SEND_BYTES_BURST", &cfg.BytesBurst},
		{"HANDLERS_RECIPIENTS_PER_SEC", &cfg.RecipientsPerSecond},
		{"HANDLERS_RECIPIENTS_BURST", &cfg.RecipientsBurst},
	} {
		if v := getenv(s.env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return cfg, fmt.Errorf("%s=%q: want a whole number, 0 or more", s.env, v)
			}
			*s.v = n
		}
	}
	return cfg, nil
}
