package natserve_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestReplyCarriesResult: a handler's result travels in the reply as
// {"ok":true,"result":...}; a failure sends none, and a result over
// proto.MaxResult is a handler_error rather than an ack too big for the
// client's socket (the gateway would close it as a slow consumer).
func TestReplyCarriesResult(t *testing.T) {
	ns := testkit.StartNATS(t)
	core, logs := observer.New(zapcore.DebugLevel)
	mux := event.NewMux()
	type sent struct {
		MsgID string `json:"msg_id"`
		TS    int64  `json:"ts"`
	}
	mux.Handle("answer", event.Typed(func(_ context.Context, r *event.Request, in struct{ N int }) (sent, error) {
		return sent{MsgID: r.User + "-1", TS: int64(in.N)}, nil
	}))
	mux.HandleFunc("plain", func(context.Context, *event.Request) error { return nil })
	mux.HandleFunc("failsAfter", func(_ context.Context, r *event.Request) error {
		_ = r.Respond("never sent")
		return event.BadRequest("args.x is wrong")
	})
	// As JSON strings: MaxResult bytes with the quotes, and one more.
	mux.HandleFunc("atLimit", func(_ context.Context, r *event.Request) error {
		return r.Respond(strings.Repeat("x", proto.MaxResult-2))
	})
	mux.HandleFunc("huge", func(_ context.Context, r *event.Request) error {
		return r.Respond(strings.Repeat("x", proto.MaxResult-1))
	})
	serve(t, ns, mux, zap.New(core), natserve.Config{Timeout: 5 * time.Second})
	nc := connect(t, ns)

	for _, tt := range []struct {
		event, args string
		want        string // the reply's body
	}{
		{"answer", `{"n":7}`, `{"ok":true,"result":{"msg_id":"alice-1","ts":7}}`},
		{"plain", `null`, `{"ok":true}`},
		{"failsAfter", `null`, `{"error":{"code":"bad_request","message":"args.x is wrong"}}`},
		{"atLimit", `null`, `{"ok":true,"result":"` + strings.Repeat("x", proto.MaxResult-2) + `"}`},
		{"huge", `null`, `{"error":{"code":"handler_error","message":"handler failed: its result is too large"}}`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		body := proto.AppendRequest(nil, &proto.Request{Event: tt.event, Args: []byte(tt.args), User: "alice", Conn: "c1"})
		msg, err := nc.RequestWithContext(ctx, proto.Subject(tt.event), body)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tt.event, err)
		}
		if string(msg.Data) != tt.want {
			t.Errorf("%s: reply %.200s, want %.200s", tt.event, msg.Data, tt.want)
		}
	}
	if l := logs.FilterMessage("handler result too large").All(); len(l) != 1 || l[0].ContextMap()["event"] != "huge" || l[0].ContextMap()["bytes"] != int64(proto.MaxResult+1) {
		t.Errorf("the oversized result was logged as %+v, want once, for huge, with its bytes", l)
	}
}
