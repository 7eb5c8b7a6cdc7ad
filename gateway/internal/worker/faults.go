package worker

import (
	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// panicking is a FrameHandler that panics on frames of one event and hands
// the others on.
type panicking struct {
	next  ws.FrameHandler
	event string
}

func (p panicking) HandleFrame(data []byte, binary bool) {
	if env, err := proto.DecodeEnvelope(data); err == nil && !binary && env.Event == p.event {
		panic("injected fault: " + p.event)
	}
	p.next.HandleFrame(data, binary)
}

// frameHandler returns what a socket's read loop hands frames to: its
// session, behind the test-only fault injection when it is configured
// (config.Config.TestPanicEvent).
func (w *Worker) frameHandler(s *forward.Session) ws.FrameHandler {
	if ev := w.cfg.TestPanicEvent; ev != "" {
		return panicking{next: s, event: ev}
	}
	return s
}
