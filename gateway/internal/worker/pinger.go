package worker

import (
	"context"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// pingSlots is how many parts the ping period is cut into: each socket is
// pinged in its own slot, by a hash of its id, so each is pinged exactly
// every PingPeriod while a tick wakes only 1/pingSlots of them. Pinging
// every socket at once started a writer goroutine per socket at the same
// moment: at 10,000 idle sockets that burst alone added ~4 KB of resident
// memory per socket.
const pingSlots = 100

func (w *Worker) pingLoop(ctx context.Context) {
	t := time.NewTicker(ws.PingPeriod / pingSlots)
	defer t.Stop()
	slot := uint32(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			slot = (slot + 1) % pingSlots
			w.hub.Each(func(c *ws.Conn) {
				if pingSlot(c.ID()) == slot {
					c.Ping()
				}
			})
		}
	}
}

// pingSlot returns the ping slot of a connection id (FNV-1a).
func pingSlot(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return h % pingSlots
}
