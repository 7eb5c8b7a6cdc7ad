package worker

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/proto"
)

// lifecycleFlushMin is the least time given to the final flush of the
// lifecycle messages when the shutdown deadline leaves less.
const lifecycleFlushMin = time.Second

// shutdown stops accepting and closes each socket with 1001 once its own
// handler requests in flight have been answered (the forwarder does, so a
// socket with none goes at once and its client reconnects elsewhere rather
// than wait for the slowest handler of the worker); at the deadline it
// closes whatever is left, waits for the sockets to end, and flushes their
// disconnects (lifecycle) to NATS.
func (w *Worker) shutdown(srv *http.Server) {
	deadline := time.Now().Add(w.cfg.ShutdownTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	w.log.Info("worker shutting down", zap.Int("sockets", w.hub.Len()))
	w.adm.Close()
	// Shutdown closes the listeners at once, then waits for the plain
	// HTTP requests (sockets are hijacked, so not waited for). Not
	// waited for here: a request whose client sends its body slowly, or
	// nothing, would hold every socket's 1001 up to the read timeout.
	served := make(chan struct{})
	go func() {
		defer close(served)
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close() // the deadline: cut what is left
		}
	}()
	defer func() { <-served }()
	if err := w.fwd.Shutdown(ctx); err != nil {
		w.log.Warn("handler requests still in flight at the deadline", zap.Error(err))
	}
	w.hub.Each(func(s *resume.Socket) { s.Close(proto.CloseGoingAway, proto.ReasonShuttingDown) })
	if w.adm.Wait(ctx) != nil {
		w.log.Warn("sockets still open at the shutdown deadline", zap.Int("sockets", w.hub.Len()))
	}
	// Each closed socket published its disconnect; NATS takes them before
	// Run closes it.
	w.life.flush(max(time.Until(deadline), lifecycleFlushMin))
	w.log.Info("worker stopped")
}
