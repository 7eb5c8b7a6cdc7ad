package worker

import (
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/proto"
)

// serveSocket is /socket: a request admission lets in becomes a socket,
// registered for delivery, whose read loop runs in a goroutine of its own.
func (w *Worker) serveSocket(rw http.ResponseWriter, r *http.Request) {
	up, user, ok := w.adm.Admit(rw, r)
	if !ok {
		return // answered
	}
	c := ws.NewConn(up, w.ids.Next(), user, &w.limits, w.wsLog)
	// "connected" is queued first and held; the socket is registered for
	// delivery; only then does ReadLoop let the writer run. So "connected"
	// is the first frame, and nothing dispatched after the client has seen
	// it is missed.
	c.Send(proto.AppendConnected(nil, user, c.ID(), w.index))
	w.hub.AddReserved(c) // in the place admission reserved for it
	w.pings.add(c)
	w.metrics.ConnOpened()
	if w.adm.Closed() { // shutdown began during the upgrade and may not have seen c
		c.Close(websocket.CloseGoingAway, "gateway shutting down")
	}
	w.log.Info("socket opened", zap.String("user", user), zap.String("conn", c.ID()))
	// Reading goes on in its own goroutine so this handler returns and
	// net/http releases its per-request state.
	go w.readSocket(c, w.frameHandler(w.fwd.Session(c)))
}

// readSocket runs the read loop of c, which hands frames to h.
func (w *Worker) readSocket(c *ws.Conn, h ws.FrameHandler) {
	c.ReadLoop(h, w.cfg.MaxFrame)
	w.socketClosed(c)
}

// socketClosed releases and logs an ended socket: out of the hub, its
// place under the caps is free. It is not part of
// readSocket, whose stack frame every idle socket keeps, because its log
// fields would make that frame several times larger.
//
//go:noinline
func (w *Worker) socketClosed(c *ws.Conn) {
	w.hub.Remove(c)
	w.pings.remove(c)
	code, reason := c.CloseCode()
	why := w.metrics.ConnClosed(code, reason)
	w.log.Info("socket closed", zap.String("user", c.User()), zap.String("conn", c.ID()),
		zap.Int("code", code), zap.String("reason", reason), zap.String("close", why),
		zap.Duration("duration", time.Since(c.Opened())))
	w.adm.Leave() // last: shutdown waits for this
}
