// Command chatsvc is the chat app's handlers, served to switchboard's
// gateways over NATS in place of handlers-svc: the built-in families
// (sendMessage, rooms) plus the app's own (room messages that skip the
// sender's socket, member lists, typing, read receipts, presence).
package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/middleware"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/proto"
)

func main() {
	log, err := zap.NewProduction() // JSON lines on stderr
	if err != nil {
		panic(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err = run(ctx, log)
	stop()
	if err != nil {
		log.Error("chatsvc failed", zap.Error(err))
		os.Exit(1)
	}
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, log *zap.Logger) error {
	opt, err := redis.ParseURL(getenv("REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		return err
	}
	// As docs/handlers.md "From Go" asks: no retries, context deadlines, epochs.
	opt.MaxRetries, opt.ContextTimeoutEnabled, opt.OnConnect = -1, true, dispatch.OnConnect
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	d := dispatch.New(rdb, dispatch.Options{Window: 2 * time.Minute})

	mux := event.NewMux()
	mux.Use(middleware.Recover(log), middleware.Log(log))
	// The built-ins: sendMessage, postUpdated, joinRoom, leaveRoom, sendToRoom.
	if err := handlers.Register(ctx, mux, handlers.Deps{Dispatcher: d, Rooms: d, Redis: rdb, Log: log, Getenv: os.Getenv}); err != nil {
		return err
	}
	app := &Chat{d: d, rooms: d, rdb: rdb, log: log.Named("chat")}
	app.Register(mux)

	// Drained on the way out: requests already taken are served, then
	// closed closes.
	closed := make(chan struct{})
	nc, err := nats.Connect(getenv("NATS_URL", nats.DefaultURL), nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return err
	}
	defer nc.Close()
	var wg sync.WaitGroup
	// The gateways' requests, as docs/protocol.md section 3 has them: one
	// subscription to handlers.> in the queue group handlers-svc.
	_, err = nc.QueueSubscribe(proto.SubjectAll, proto.QueueGroup, func(m *nats.Msg) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(m, mux, log)
		}()
	})
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); app.sweepPresence(ctx) }()
	log.Info("chatsvc serving", zap.Strings("events", mux.Events()))
	<-ctx.Done()
	if err := nc.Drain(); err == nil {
		<-closed
	}
	wg.Wait()
	return nil
}

// serve runs one gateway request through mux and replies, as
// docs/protocol.md section 3 describes the exchange.
func serve(m *nats.Msg, mux *event.Mux, log *zap.Logger) {
	deadline := time.Now().Add(4 * time.Second)
	if t, ok := proto.ParseDeadline(m.Header.Get(proto.DeadlineHeader)); ok && t.Before(deadline) {
		deadline = t
	}
	if time.Now().After(deadline) {
		return // the client was told timeout already
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if m.Header.Get(proto.IdemHeader) != "" {
		// This server keeps no idempotency records (handlers-svc's are
		// internal): refuse, as docs/protocol.md section 3 says, rather
		// than run a repeat twice.
		_ = m.Respond(proto.AppendReply(nil, proto.NewError(proto.CodeBadRequest, "idem is not supported here")))
		return
	}
	in, err := proto.DecodeRequest(m.Data)
	if err != nil {
		_ = m.Respond(proto.AppendReply(nil, proto.NewError(proto.CodeBadRequest, "malformed request")))
		return
	}
	r := &event.Request{Event: in.Event, User: in.User, Conn: in.Conn, Ref: in.Ref, Args: in.Args}
	if string(r.Args) == "null" {
		r.Args = nil
	}
	if err := mux.ServeEvent(ctx, r); err != nil {
		_ = m.Respond(proto.AppendReply(nil, event.WireError(err)))
		return
	}
	if err := m.Respond(proto.AppendResult(nil, r.Result())); err != nil {
		log.Warn("reply", zap.Error(err))
	}
}
