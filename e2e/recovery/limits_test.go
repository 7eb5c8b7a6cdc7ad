package recovery

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// away takes d offline until Return, once it has every confirmed event,
// and returns the position it will resume from.
func away(t *testing.T, h *Harness, d *Device) proto.Pos {
	t.Helper()
	testkit.Eventually(t, Wait, d.Name+" has every event", func() bool {
		n, _ := h.Check.Pending(0)
		return n == 0
	})
	before := d.Connects()
	d.Drop(time.Hour)
	testkit.Eventually(t, Wait, d.Name+" is offline", func() bool { return !d.Online() })
	if d.Connects() != before {
		t.Fatalf("%s reconnected", d.Name)
	}
	pos, _ := d.Positions()
	p, ok := proto.ParsePos(pos)
	if !ok {
		t.Fatalf("%s has no position: %q", d.Name, pos)
	}
	return p
}

// comeBack ends d's time away and returns the connected frame it resumes
// with.
func comeBack(t *testing.T, d *Device) proto.Connected {
	t.Helper()
	before := d.Connects()
	d.Return()
	testkit.Eventually(t, Wait, d.Name+" is back", func() bool { return d.Connects() > before && d.Online() })
	return d.LastConnected()
}

// TestWindowPassedNotRecovered: a device is away while events to it go
// on for longer than the history window (2 s here), so the oldest it
// missed are trimmed from its stream: it resumes with recovered:false and
// nothing replayed, and the events after its connect reach it.
func TestWindowPassedNotRecovered(t *testing.T) {
	h := Start(t, Options{Users: 1, Devices: 2, Window: 2 * time.Second})
	user := h.Users[0]
	h.Post(1, user)
	gone := h.Devices[0]
	from := away(t, h, gone)
	// MINID trimming is approximate: Redis drops whole nodes of 100
	// entries, so more than that must pass out of the window, and only
	// writes trim.
	h.Post(150, user)
	ctx := context.Background()
	testkit.Eventually(t, 30*time.Second, "the events the device missed first are trimmed", func() bool {
		h.Post(5, user)
		first, err := h.RDB.XRangeN(ctx, proto.UserStreamKey(user), "-", "+", 1).Result()
		if err != nil || len(first) == 0 {
			return false
		}
		_, off, ok := proto.ParseStreamID(first[0].ID)
		return ok && off > from.Off+1
	})
	expired := h.RecoveryMetrics()["resumes_expired"]
	c := comeBack(t, gone)
	if c.Recovered == nil || *c.Recovered || deref(c.Missed) != 0 {
		t.Fatalf("resumed past the window with recovered %v, missed %v; want false, 0", deref(c.Recovered), deref(c.Missed))
	}
	if got := h.RecoveryMetrics()["resumes_expired"]; got != expired+1 {
		t.Fatalf("resumes_total{outcome=\"expired\"} went from %v to %v, want one more", expired, got)
	}
	h.Post(3, user)
	record(h.Settle())
}

// TestMaxReplayExceeded: with GATEWAY_MAX_REPLAY=50, a device that missed
// exactly 50 events resumes with all of them; one that missed 51 resumes
// with recovered:false and nothing replayed, and carries on.
func TestMaxReplayExceeded(t *testing.T) {
	const max = 50
	h := Start(t, Options{Users: 1, Devices: 3, Env: []string{fmt.Sprintf("GATEWAY_MAX_REPLAY=%d", max)}})
	user := h.Users[0]
	h.Post(1, user)
	d0, d1 := h.Devices[0], h.Devices[1]
	away(t, h, d0)
	away(t, h, d1)
	h.Post(max, user)
	if c := comeBack(t, d0); c.Recovered == nil || !*c.Recovered || deref(c.Missed) != max {
		t.Fatalf("%d missed: recovered %v, missed %v; want true, %d", max, deref(c.Recovered), deref(c.Missed), max)
	}
	h.Post(1, user)
	tooMany := h.RecoveryMetrics()["resumes_too_many"]
	if c := comeBack(t, d1); c.Recovered == nil || *c.Recovered || deref(c.Missed) != 0 {
		t.Fatalf("%d missed: recovered %v, missed %v; want false, 0", max+1, deref(c.Recovered), deref(c.Missed))
	}
	if got := h.RecoveryMetrics()["resumes_too_many"]; got != tooMany+1 {
		t.Fatalf("resumes_total{outcome=\"too_many\"} went from %v to %v, want one more", tooMany, got)
	}
	h.Post(3, user)
	record(h.Settle())
}

// TestUnknownPositionNotRecovered: a device that resumes from a position
// that is not one of its streams' (malformed, too long, of an epoch that
// never was, ahead of the stream, another user's) gets recovered:false and
// nothing replayed; its socket is not refused, gets no error, stays open
// and receives what is dispatched after it connected.
func TestUnknownPositionNotRecovered(t *testing.T) {
	h := Start(t, Options{Users: 2, Devices: 1})
	user, other := h.Users[0], h.Users[1]
	h.Post(3, user)
	h.Post(2, other)
	h.Settle()
	own, bown := h.Devices[0].Positions()
	theirs, _ := h.Devices[1].Positions()
	p, _ := proto.ParsePos(own)
	ahead := proto.Pos{Epoch: p.Epoch, MS: p.MS, Off: p.Off + 1000}.String()
	cases := []struct{ name, resume, bresume string }{
		{"malformed", "not-a-position", bown},
		{"too long", strings.Repeat("1", 200), bown},
		{"uppercase epoch", strings.ToUpper(p.Epoch) + ".1-1", bown},
		{"leading zero", p.Epoch + ".01-1", bown},
		{"an epoch that never was", "zzzzzzzz.1700000000000-2", bown},
		{"ahead of the stream", ahead, bown},
		{"another user's", theirs, bown},
		{"a malformed broadcast position", own, "nope"},
		{"a user position as the broadcast's", own, own},
	}
	var devices []*Device
	for _, tc := range cases {
		d := h.AddDevice(user, DeviceOptions{Worker: -1, Resume: tc.resume, BResume: tc.bresume})
		devices = append(devices, d)
	}
	h.WaitOnline()
	for i, d := range devices {
		c := d.LastConnected()
		if c.Recovered == nil || *c.Recovered || deref(c.Missed) != 0 {
			t.Errorf("%s: recovered %v, missed %v; want false, 0", cases[i].name, deref(c.Recovered), deref(c.Missed))
		}
		if d.Connects() != 1 || d.ErrorFrames() != 0 {
			t.Errorf("%s: %d connects, %d error frames; want one socket, no error", cases[i].name, d.Connects(), d.ErrorFrames())
		}
	}
	h.Post(3, user)
	r := h.Settle()
	record(r)
	for i, d := range devices {
		if d.Connects() != 1 {
			t.Errorf("%s: the socket did not stay open", cases[i].name)
		}
	}
	t.Logf("gateway: %v", r.Metrics)
}

// TestResumeLargeBacklog: a device away while 600 chat messages of about
// 16 KB (9.6 MB, within GATEWAY_MAX_REPLAY and the window, nine times the
// socket's send queue of 1 MiB) were sent to it resumes with every one of
// them: connected says recovered:true and missed 600, the replay is fed to
// the socket as its queue drains, and the socket is never closed as a slow
// consumer (the device does not reconnect). It used to be answered
// recovered:false (too_many), and before that closed with 1008 before
// connected at every retry: TestReplayOverTheSendQueue.
func TestResumeLargeBacklog(t *testing.T) {
	h := Start(t, Options{Users: 1, Devices: 2, Window: time.Minute})
	user := h.Users[0]
	h.Post(1, user)
	d := h.Devices[0]
	away(t, h, d)
	h.Message(600, user, 16000)
	tooMany := h.RecoveryMetrics()["resumes_too_many"]
	c := comeBack(t, d)
	if c.Recovered == nil || !*c.Recovered || deref(c.Missed) != 600 {
		t.Fatalf("recovered %v, missed %v; want true, 600", deref(c.Recovered), deref(c.Missed))
	}
	connects := d.Connects()
	h.Post(3, user)
	record(h.Settle())
	if d.Connects() != connects {
		t.Fatalf("the device reconnected %d times during its replay", d.Connects()-connects)
	}
	if got := h.RecoveryMetrics()["resumes_too_many"]; got != tooMany {
		t.Fatalf("resumes_total{outcome=\"too_many\"} went from %v to %v", tooMany, got)
	}
}
