package worker

import (
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/connid"
)

// TestPingSlotsSpread checks that connection ids spread over the ping
// slots, so no tick pings a large share of the sockets at once.
func TestPingSlotsSpread(t *testing.T) {
	ids := connid.New()
	var counts [pingSlots]int
	const n = 100 * pingSlots
	for range n {
		s := pingSlot(ids.Next())
		if s >= pingSlots {
			t.Fatalf("slot %d out of range", s)
		}
		counts[s]++
	}
	for s, c := range counts {
		if c < n/pingSlots/2 || c > n/pingSlots*2 {
			t.Errorf("slot %d has %d of %d ids, want about %d", s, c, n, n/pingSlots)
		}
	}
}
