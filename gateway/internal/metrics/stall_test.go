package metrics

import (
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/fanout"
)

// quietFanout is a fan-out with nothing to report, for reading the help of
// what WatchFanout registers.
type quietFanout struct{}

func (quietFanout) Backlog() int            { return 0 }
func (quietFanout) Lagging() bool           { return false }
func (quietFanout) Resubscriptions() uint64 { return 0 }
func (quietFanout) Malformed() uint64       { return 0 }
func (quietFanout) Reserved() uint64        { return 0 }
func (quietFanout) Unrecorded() uint64      { return 0 }
func (quietFanout) Stalls() uint64          { return 0 }
func (quietFanout) BacklogBytes() int64     { return 0 }
func (quietFanout) DroppedAtExit() uint64   { return 0 }
func (quietFanout) UserChannels() int       { return 0 }

// TestStallHelpFollowsTheProbe: the stalls counter's help names the
// silence after which the probe declares a stall, ProbeEvery + ProbeWithin
// (1.5 s, as docs/protocol.md says).
func TestStallHelpFollowsTheProbe(t *testing.T) {
	m := NewWorker()
	m.WatchFanout(quietFanout{})
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	f := family(fams, namespace+"_redis_subscription_stalls_total")
	if f == nil {
		t.Fatal("no redis_subscription_stalls_total")
	}
	secs := strconv.FormatFloat((fanout.ProbeEvery + fanout.ProbeWithin).Seconds(), 'f', -1, 64)
	if want := "for " + secs + " s"; !strings.Contains(f.GetHelp(), want) {
		t.Errorf("help %q, want it to say %q", f.GetHelp(), want)
	}
}
