package eventtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/proto"
)

// A lifecycle hook is tested like a handler: register it on a Mux with a
// Recorder as its Dispatcher, run the Mux's hooks with a Conn, and check
// what was dispatched.
func ExampleConnect() {
	rec := eventtest.NewRecorder()
	mux := event.NewMux()
	mux.OnConnect(func(ctx context.Context, c event.Conn) error {
		return rec.ToConns(ctx, []string{c.Conn}, "welcome", map[string]bool{"resumed": c.Resumed})
	})

	err := eventtest.Connect(context.Background(), mux, eventtest.NewConn("alice"))
	fmt.Println("error:", err)
	for _, d := range rec.Dispatches() {
		fmt.Println(d.Event, d.Conns, string(d.Args))
	}
	// Output:
	// error: <nil>
	// welcome [alice-conn] {"resumed":false}
}

// TestHooksRunInOrder: every hook of the kind runs, in the order
// registered, also after one fails, and their errors come back joined;
// the other kind's hooks do not run.
func TestHooksRunInOrder(t *testing.T) {
	mux := event.NewMux()
	var ran []string
	boom := errors.New("boom")
	mux.OnDisconnect(func(_ context.Context, c event.Conn) error { ran = append(ran, "first:"+c.Reason); return boom })
	mux.OnDisconnect(func(_ context.Context, c event.Conn) error { ran = append(ran, "second:"+c.User); return nil })
	mux.OnConnect(func(context.Context, event.Conn) error { ran = append(ran, "connect"); return nil })

	c := eventtest.NewDisconnect("bob", proto.CloseGoingAway, "shutdown")
	if c.Code != proto.CloseGoingAway || c.Conn == "" || c.At.IsZero() {
		t.Errorf("NewDisconnect = %+v", c)
	}
	err := eventtest.Disconnect(context.Background(), mux, c)
	if !errors.Is(err, boom) {
		t.Errorf("Disconnect = %v, want boom", err)
	}
	if fmt.Sprint(ran) != "[first:shutdown second:bob]" {
		t.Errorf("ran %v, want [first:shutdown second:bob]", ran)
	}
}

func TestNilHookPanics(t *testing.T) {
	for name, register := range map[string]func(*event.Mux){
		"OnConnect":    func(m *event.Mux) { m.OnConnect(nil) },
		"OnDisconnect": func(m *event.Mux) { m.OnDisconnect(nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s(nil) did not panic", name)
				}
			}()
			register(event.NewMux())
		}()
	}
}
