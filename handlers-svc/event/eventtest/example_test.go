package eventtest_test

import (
	"context"
	"fmt"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
)

// greeter is a handler as a backend team writes it.
type greeter struct{ d event.Dispatcher }

func (g *greeter) Greet(ctx context.Context, r *event.Request) error {
	var in struct {
		Name string `json:"name"`
	}
	if err := r.Decode(&in); err != nil {
		return err
	}
	if in.Name == "" {
		return event.BadRequest("args.name is required")
	}
	return g.d.ToConns(ctx, []string{r.Conn}, "greeting", map[string]string{"text": "hello, " + in.Name})
}

// A handler is tested like an http.Handler with httptest: build a request,
// serve it with a Recorder as the Dispatcher, and check what was dispatched.
func Example() {
	rec := eventtest.NewRecorder()
	g := &greeter{d: rec}

	err := g.Greet(context.Background(), eventtest.NewRequest("greet", "alice", map[string]any{"name": "Bob"}))
	fmt.Println("error:", err)
	for _, d := range rec.Dispatches() {
		fmt.Println(d.Event, d.Conns, string(d.Args))
	}

	err = g.Greet(context.Background(), eventtest.NewRequest("greet", "alice", map[string]any{"name": 42}))
	fmt.Println("wire error:", event.WireError(err).Code, event.WireError(err).Message)
	// Output:
	// error: <nil>
	// greeting [alice-conn] {"text":"hello, Bob"}
	// wire error: bad_request args.name must be a string
}
