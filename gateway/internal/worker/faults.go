package worker

import (
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

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

// frameHandler returns what the sockets' read loops hand frames to: the
// forwarder, behind the test-only fault injection when it is configured
// (config.Config.TestPanicEvent).
func (w *Worker) frameHandler() ws.FrameHandler {
	if ev := w.cfg.TestPanicEvent; ev != "" {
		return panicking{next: w.fwd, event: ev}
	}
	return w.fwd
}
