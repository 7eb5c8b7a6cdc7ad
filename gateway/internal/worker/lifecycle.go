package worker

import (
	"time"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/logevery"
	"github.com/switchboard/switchboard/proto"
)

// lifecycleLogEvery is how often, at most, failed lifecycle publishes are
// logged: during a NATS outage every socket that opens or closes fails one.
const lifecycleLogEvery = 30 * time.Second

// lifecycle publishes the connect and disconnect of each socket on NATS
// (docs/protocol.md section 3) for handlers-svc's hooks, fire and forget:
// nats.go buffers a publish and returns, and refuses it at once while
// NATS is down (the worker keeps no reconnect buffer), so neither a slow
// nor an absent NATS holds a socket up. A message is sent at most once.
type lifecycle struct {
	w      *Worker
	failed *logevery.Log
}

func newLifecycle(w *Worker) *lifecycle {
	return &lifecycle{w: w, failed: logevery.New(w.log.Named("lifecycle"), "lifecycle message not published", lifecycleLogEvery)}
}

// on reports whether connects and disconnects are published.
func (l *lifecycle) on() bool { return l.w.cfg.LifecycleHooks }

// connected publishes the connect of c, which resumed when its client
// asked to resume, and reports whether it did; a disconnect is published
// only for a socket whose connect was (socketClosed).
func (l *lifecycle) connected(c *ws.Conn, resumed bool) bool {
	if !l.w.cfg.LifecycleHooks {
		return false
	}
	l.publish(&proto.Lifecycle{
		Type: proto.LifecycleTypeConnect, User: c.User(), Conn: c.ID(), Worker: l.w.index,
		At: time.Now().UnixMilli(), Resumed: resumed,
	})
	return true
}

// disconnected publishes the disconnect of c, closed with code and why,
// the bounded close reason the worker counts it under
// (metrics.CloseReason), if its connect was published (announced).
func (l *lifecycle) disconnected(c *ws.Conn, announced bool, code int, why string) {
	if !announced {
		return
	}
	l.publish(&proto.Lifecycle{
		Type: proto.LifecycleTypeDisconnect, User: c.User(), Conn: c.ID(), Worker: l.w.index,
		At: time.Now().UnixMilli(), Code: code, Reason: why,
	})
}

// flush waits until NATS has taken what was published, within timeout:
// at the end of a drain, so the disconnects of the sockets it closed are
// not lost with the connection. Nothing is waited for with the hooks off
// or NATS down.
func (l *lifecycle) flush(timeout time.Duration) {
	if !l.w.cfg.LifecycleHooks || !l.w.nc.IsConnected() {
		return
	}
	if err := l.w.nc.FlushTimeout(timeout); err != nil {
		l.w.log.Warn("lifecycle messages may be lost: nats flush failed", zap.Error(err))
	}
}

func (l *lifecycle) publish(m *proto.Lifecycle) {
	subject, _ := proto.LifecycleSubject(m.Type)
	err := l.w.nc.Publish(subject, proto.AppendLifecycle(make([]byte, 0, 160), m))
	l.w.metrics.LifecyclePublished(m.Type, err)
	if err != nil {
		l.failed.Failed(err, zap.String("type", m.Type), zap.String("user", m.User), zap.String("conn", m.Conn))
	}
}
