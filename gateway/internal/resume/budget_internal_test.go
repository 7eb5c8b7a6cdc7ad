package resume

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

// idle is a Conn with nothing queued.
type idle struct{}

func (idle) ID() string              { return "c1" }
func (idle) User() string            { return "u" }
func (idle) IssuedAt() time.Time     { return time.Time{} }
func (idle) Send([]byte) bool        { return true }
func (idle) Close(int, string)       {}
func (idle) Queued() (int, int)      { return 0, 0 }
func (idle) WhenDrained(func()) bool { return false }

// TestBudgetKeepsTheMargin: whatever GATEWAY_SEND_QUEUE_BYTES allows, a
// part of a replay leaves free at least MarginBytes, the largest resync
// and heartbeat frames that may join it in the queue; 1/queueMargin of
// the smallest queue (about 1.1 KB) did not hold a resync for a long user
// id JSON escapes (about 1.9 KB). Above 64 times the margin, 1/64 is kept
// as before.
func TestBudgetKeepsTheMargin(t *testing.T) {
	for _, q := range []int{config.MinSendQueueBytes, 100 << 10, 64 * MarginBytes, 1 << 20} {
		s := &Socket{conn: idle{}, r: &Resumer{cfg: Config{QueueBytes: q}}}
		b := s.budget()
		want := max(MarginBytes, q/queueMargin)
		if free := q - b.bytes; free != want {
			t.Errorf("queue of %d bytes: a replay may fill all but %d, want %d", q, free, want)
		}
	}
}
