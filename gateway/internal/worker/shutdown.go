package worker

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/resume"
)

// shutdown stops accepting, lets handler requests in flight finish, then
// closes every socket with 1001 and waits for them, all within the deadline.
func (w *Worker) shutdown(srv *http.Server) {
	deadline := time.Now().Add(w.cfg.ShutdownTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	w.log.Info("worker shutting down", zap.Int("sockets", w.hub.Len()))
	w.adm.Close()
	_ = srv.Shutdown(ctx) // stops accepting; sockets are hijacked, so not waited for
	if err := w.fwd.Shutdown(ctx); err != nil {
		w.log.Warn("handler requests still in flight at the deadline", zap.Error(err))
	}
	w.hub.Each(func(s *resume.Socket) { s.Close(websocket.CloseGoingAway, "gateway shutting down") })
	if w.adm.Wait(ctx) != nil {
		w.log.Warn("sockets still open at the shutdown deadline", zap.Int("sockets", w.hub.Len()))
	}
	w.log.Info("worker stopped")
}
