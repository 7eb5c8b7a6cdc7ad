package natserve_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// requestBy sends a request for ev as the gateway does, with its deadline
// header, and waits up to wait for the reply.
func requestBy(nc *nats.Conn, ev string, deadline time.Time, wait time.Duration) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return nc.RequestMsgWithContext(ctx, &nats.Msg{
		Subject: proto.Subject(ev),
		Header:  nats.Header{proto.DeadlineHeader: []string{proto.FormatDeadline(deadline)}},
		Data:    proto.AppendRequest(nil, &proto.Request{Event: ev, User: "alice", Conn: "c1"}),
	})
}

// TestLateRequestAttack: a request that reaches handlers-svc after the
// gateway's deadline (its client was told timeout) is dropped, not run
// and not answered, and counted; a request in time runs with a context
// that ends by the gateway's deadline, not later.
func TestLateRequestAttack(t *testing.T) {
	ns := testkit.StartNATS(t)
	var ran atomic.Int64
	deadlines := make(chan time.Time, 4)
	h := event.HandlerFunc(func(ctx context.Context, _ *event.Request) error {
		ran.Add(1)
		dl, _ := ctx.Deadline()
		deadlines <- dl
		return nil
	})
	var expired atomic.Int64
	serve(t, ns, h, zap.NewNop(), natserve.Config{Timeout: time.Minute, Expired: func(ev string) {
		if ev == "sendMessage" {
			expired.Add(1)
		}
	}})
	nc := connect(t, ns)

	if msg, err := requestBy(nc, "sendMessage", time.Now().Add(-time.Second), 500*time.Millisecond); err == nil {
		t.Errorf("a late request was answered: %s", msg.Data)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("a late request ran the handler (%d runs)", n)
	}
	testkit.Eventually(t, 5*time.Second, "the late request counted", func() bool { return expired.Load() == 1 })

	deadline := time.Now().Add(3 * time.Second)
	msg, err := requestBy(nc, "sendMessage", deadline, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e := proto.DecodeReply(msg.Data); e != nil {
		t.Fatalf("reply %+v", e)
	}
	if dl := <-deadlines; dl.After(deadline) || dl.Before(deadline.Add(-time.Second)) {
		t.Errorf("the handler's context ends at %v, want the gateway's deadline %v (not the 1 min timeout)", dl, deadline)
	}
	if n := expired.Load(); n != 1 {
		t.Errorf("%d expired, want only the late one", n)
	}
}
