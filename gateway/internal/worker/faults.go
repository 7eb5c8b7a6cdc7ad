package worker

import (
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// PanicEventEnv names the test-only fault injection: when a worker runs
// with it set to an event name, a frame of that event panics in the
// socket's read loop, as a bug in connection code would. It exists so the
// end-to-end tests can show that such a panic closes that socket only (with
// 1011) and leaves the worker running. Never set it in production.
const PanicEventEnv = "SWITCHBOARD_TEST_PANIC_EVENT"

// InjectPanicOn makes every frame of event panic in its socket's read loop
// (see PanicEventEnv). Call it before Run.
func (w *Worker) InjectPanicOn(event string) { w.panicEvent = event }

// panicking is a FrameHandler that panics on frames of one event and hands
// the others on.
type panicking struct {
	next  ws.FrameHandler
	event string
}

func (p panicking) HandleFrame(c *ws.Conn, data []byte) {
	if env, err := proto.DecodeEnvelope(data); err == nil && env.Event == p.event {
		panic("injected fault: " + p.event)
	}
	p.next.HandleFrame(c, data)
}

// frameHandler returns what the sockets' read loops hand frames to.
func (w *Worker) frameHandler() ws.FrameHandler {
	if w.panicEvent != "" {
		return panicking{next: w.fwd, event: w.panicEvent}
	}
	return w.fwd
}
