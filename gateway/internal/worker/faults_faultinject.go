//go:build faultinject

package worker

import (
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/forward"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// panicking is a FrameHandler that panics on text frames of one event and
// hands the others on.
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
// session, behind the fault injection when it is configured
// (config.Faults.PanicEvent).
func (w *Worker) frameHandler(s *forward.Session) ws.FrameHandler {
	if ev := w.cfg.Faults.PanicEvent; ev != "" {
		return panicking{next: s, event: ev}
	}
	return s
}

// warnFaults logs the fault injections configured, so that they cannot go
// unnoticed.
func (w *Worker) warnFaults() {
	if ev := w.cfg.Faults.PanicEvent; ev != "" {
		w.log.Warn("test-only fault injection: frames of this event panic", zap.String("event", ev))
	}
}
