package resume_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// publishSized records and publishes one event to user (or a broadcast,
// user "") with args of about size bytes, and returns its position.
func (f *fixture) publishSized(t *testing.T, user, event string, size int) proto.Pos {
	t.Helper()
	args, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", size)})
	d := &proto.Dispatch{Event: event, Args: args, Users: []string{user}}
	if user == "" {
		d = &proto.Dispatch{Event: event, Args: args, Broadcast: true}
	}
	pos, _, err := streams.Publish(context.Background(), f.rdb, time.Minute, d)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := proto.ParsePos(pos[0])
	return p
}

// waitingForDrain reports whether the socket waits for its queue to be
// taken (it gave WhenDrained a function).
func (c *conn) waitingForDrain() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.onDrain != nil
}

// drainAll drains c, as its writer would, each time the socket has
// queued a part and waits for the next, until done reports true; it
// returns how many times it drained.
func drainAll(t *testing.T, c *conn, done func() bool) int {
	t.Helper()
	n := 0
	for !done() {
		testkit.Eventually(t, 5*time.Second, "the next part queued", func() bool {
			return c.waitingForDrain() || done() || c.closeCode() != 0
		})
		if c.closeCode() != 0 {
			t.Fatalf("closed with %d after %d parts", c.closeCode(), n)
		}
		if c.drain() {
			n++
		}
	}
	return n
}

// offsets returns the offsets of c's events of one stream (broadcast:
// bpos), in the order sent.
func (c *conn) offsets(broadcast bool) []uint64 {
	var out []uint64
	for _, f := range c.got() {
		pos := f.Pos
		if broadcast {
			pos = f.BPos
		}
		if p, ok := proto.ParsePos(pos); ok && f.Event != "connected" && f.Event != "resync" {
			out = append(out, p.Off)
		}
	}
	return out
}

// checkRun fails unless offs are exactly from+1 to to, in order.
func checkRun(t *testing.T, what string, offs []uint64, from, to uint64) {
	t.Helper()
	if uint64(len(offs)) != to-from {
		t.Fatalf("%s: %d events, want %d (offsets %d to %d): %v", what, len(offs), to-from, from+1, to, offs)
	}
	for i, o := range offs {
		if o != from+1+uint64(i) {
			t.Fatalf("%s: event %d at offset %d, want %d: %v", what, i, o, from+1+uint64(i), offs)
		}
	}
}

// TestChunkedReplay: a resume whose missed events are many times what the
// socket's send queue holds, by frames or by bytes, is recovered: connected
// says recovered:true with every event missed, the events follow in parts
// that each fit in the queue (the conn would close as a slow consumer
// otherwise), the next part read when the writer has taken the queue, and
// the socket ends live with every event once, in order. Those events are
// the resume's, not gaps filled.
func TestChunkedReplay(t *testing.T) {
	for _, tt := range []struct {
		name          string
		frames, bytes int
		size          int
	}{
		{"by frames", 8, 0, 10},
		{"by bytes", 0, 8 << 10, 1000},
		{"an event larger than the queue's room", 0, 4 << 10, 4000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := resume.DefaultConfig()
			cfg.QueueFrames, cfg.QueueBytes = tt.frames, tt.bytes
			f := newFixture(t, cfg)
			from := f.publish(t, "bob", "e0")
			const missed = 50
			for i := 1; i <= missed; i++ {
				f.publishSized(t, "bob", fmt.Sprintf("e%d", i), tt.size)
			}
			c := &conn{id: "c1", user: "bob", maxFrames: tt.frames, maxBytes: tt.bytes}
			var s *resume.Socket
			f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
			s, args := f.connect(t, c, from.String(), "")
			if args.Recovered == nil || !*args.Recovered || *args.Missed != missed || args.Pos != from.String() {
				t.Fatalf("connected %+v, want recovered with %d missed from %s", args, missed, from)
			}
			if n := len(c.got()); n >= missed {
				t.Fatalf("%d frames queued at connect, want a part of the replay", n)
			}
			parts := drainAll(t, c, func() bool { return len(c.offsets(false)) == missed })
			checkRun(t, "replay", c.offsets(false), from.Off, from.Off+missed)
			if parts < 2 || c.closeCode() != 0 {
				t.Fatalf("%d parts, closed %d; want several, open", parts, c.closeCode())
			}
			if f.rec.lastResume() != resume.OutcomeRecovered || f.rec.healedN() != 0 || len(f.rec.resyncs()) != 0 {
				t.Fatalf("outcome %s, healed %d, resyncs %v", f.rec.lastResume(), f.rec.healedN(), f.rec.resyncs())
			}
			if got := f.rec.replayedN(); got != missed {
				t.Fatalf("%d events counted replayed, want the %d sent", got, missed)
			}
			// Live from there.
			next := f.publish(t, "bob", "live")
			if !s.Offer(false, &next, eventFrame("bob", "live", next)) {
				t.Fatal("a live event after the replay was not sent")
			}
			checkRun(t, "then live", c.offsets(false), from.Off, next.Off)
		})
	}
}

// TestGapFilledInParts: a gap on a live socket larger than its send queue
// is filled in parts too, as the queue drains, without closing it, and
// counts as one gap healed.
func TestGapFilledInParts(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.QueueFrames = 8
	f := newFixture(t, cfg)
	c := &conn{id: "c1", user: "bob", maxFrames: 8}
	s, args := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	from, _ := proto.ParsePos(args.Pos)
	var last proto.Pos
	for i := 1; i <= 30; i++ {
		last = f.publish(t, "bob", fmt.Sprintf("e%d", i))
	}
	s.Offer(false, &last, eventFrame("bob", "e30", last)) // the 29 before lost on the way
	parts := drainAll(t, c, func() bool { return len(c.offsets(false)) == 30 })
	checkRun(t, "the gap and the event", c.offsets(false), from.Off, last.Off)
	if parts < 3 || f.rec.healedN() != 1 || c.closeCode() != 0 {
		t.Fatalf("%d parts, %d gaps healed, closed %d; want several parts, one gap, open", parts, f.rec.healedN(), c.closeCode())
	}
}

// TestSmallReplayAtOnce: a replay that fits in the send queue goes with
// connected, in Connect itself, with no reader running: the common case
// costs one read, as before the replay was fed in parts.
func TestSmallReplayAtOnce(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.QueueFrames, cfg.QueueBytes = 128, 1<<20 // room for 126 events
	f := newFixture(t, cfg)
	from := f.publish(t, "bob", "e0")
	for i := 1; i <= 100; i++ {
		f.publish(t, "bob", fmt.Sprintf("e%d", i))
	}
	c := &conn{id: "c1", user: "bob", maxFrames: 128, maxBytes: 1 << 20}
	_, args := f.connect(t, c, from.String(), "")
	if args.Recovered == nil || !*args.Recovered || *args.Missed != 100 {
		t.Fatalf("connected %+v, want recovered with 100 missed", args)
	}
	checkRun(t, "replay", c.offsets(false), from.Off, from.Off+100)
	if c.waitingForDrain() {
		t.Fatal("the socket waits for its queue after a replay that fitted")
	}
}

// TestLiveDuringChunkedReplay: events of both streams go on while a
// replay is fed in parts; the fan-out offers them (some twice, some lost
// on the way, more than the socket may hold), as do transient frames.
// Each stream's events reach the socket exactly once, in offset order,
// from the resume positions to the last event; nothing is a slow
// consumer.
func TestLiveDuringChunkedReplay(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.QueueFrames, cfg.QueueBytes = 16, 6<<10
	cfg.HeldFrames = 6 // fewer than what comes live: some are dropped and read again
	f := newFixture(t, cfg)
	from := f.publish(t, "bob", "e0")
	bfrom := f.publishSized(t, "", "b0", 10)
	for i := 1; i <= 40; i++ {
		f.publishSized(t, "bob", fmt.Sprintf("e%d", i), 500)
		if i%4 == 0 {
			f.publishSized(t, "", fmt.Sprintf("b%d", i), 300)
		}
	}
	c := &conn{id: "c1", user: "bob", maxFrames: 16, maxBytes: 6 << 10}
	var s *resume.Socket
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	s, args := f.connect(t, c, from.String(), bfrom.String())
	if args.Recovered == nil || !*args.Recovered || *args.Missed != 50 {
		t.Fatalf("connected %+v, want recovered with 50 missed", args)
	}
	var last, blast proto.Pos
	live, transients := 0, 0
	offer := func() {
		live++
		p := f.publishSized(t, "bob", fmt.Sprintf("live%d", live), 200)
		last = p
		if live%5 != 0 { // every fifth lost on the way
			s.Offer(false, &p, eventFrame("bob", "live", p))
		}
		if live%3 == 0 { // and some twice
			s.Offer(false, &p, eventFrame("bob", "live", p))
		}
		if live%4 == 0 {
			bp := f.publishSized(t, "", fmt.Sprintf("blive%d", live), 100)
			blast = bp
			s.Offer(true, &bp, proto.AppendEventAt(nil, "blive", "bob", json.RawMessage(`{}`), proto.KeyBPos, bp.Append(nil)))
		}
		if live%7 == 0 {
			transients++
			s.Offer(false, nil, proto.AppendEventAt(nil, "transient", "bob", json.RawMessage(`{}`), "", nil))
		}
	}
	// While the replay waits for room, events come live; then the queue
	// is taken, and so on until the replay is sent.
	replayed := func() bool {
		u, b := c.offsets(false), c.offsets(true)
		return len(u) >= 40 && u[39] == from.Off+40 && len(b) >= 10 && b[9] == bfrom.Off+10
	}
	parts := 0
	for {
		testkit.Eventually(t, 5*time.Second, "the next part queued", func() bool {
			return c.waitingForDrain() || replayed() || c.closeCode() != 0
		})
		if c.closeCode() != 0 {
			t.Fatalf("closed with %d", c.closeCode())
		}
		if !c.waitingForDrain() {
			break
		}
		offer()
		offer()
		c.drain()
		parts++
	}
	// The last event lost on the way is not behind any other: a sweep
	// after a resubscription is what finds it.
	done := func() bool {
		u, b := c.offsets(false), c.offsets(true)
		return len(u) > 0 && u[len(u)-1] == last.Off && len(b) > 0 && b[len(b)-1] == blast.Off
	}
	f.res.RequestSweep()
	drainAll(t, c, done)
	checkRun(t, "user stream", c.offsets(false), from.Off, last.Off)
	checkRun(t, "broadcast stream", c.offsets(true), bfrom.Off, blast.Off)
	if c.closeCode() != 0 || len(f.rec.resyncs()) != 0 {
		t.Fatalf("closed %d, resyncs %v", c.closeCode(), f.rec.resyncs())
	}
	got := 0
	for _, e := range c.events(t) {
		if e == "transient" {
			got++
		}
	}
	if got > transients || parts < 3 {
		t.Fatalf("%d transient frames of %d sent, %d parts", got, transients, parts)
	}
}

// TestTrimmedDuringChunkedReplay: the events a replay has yet to send are
// trimmed from the stream while it waits for room (the queue drained too
// slowly, past the window): the socket gets a resync (missed events
// expired) with the stream's top, never a silent gap, and carries on from
// there. Only the events the replay sent before the resync count as
// replayed, not the 30 missed at connect.
func TestTrimmedDuringChunkedReplay(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.QueueFrames = 8
	f := newFixture(t, cfg)
	from := f.publish(t, "bob", "e0")
	var ps []proto.Pos
	for i := 1; i <= 30; i++ {
		ps = append(ps, f.publish(t, "bob", fmt.Sprintf("e%d", i)))
	}
	c := &conn{id: "c1", user: "bob", maxFrames: 8}
	var s *resume.Socket
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	s, _ = f.connect(t, c, from.String(), "")
	first := c.offsets(false)
	if len(first) == 0 || len(first) >= 30 {
		t.Fatalf("%d events at connect, want a part of 30", len(first))
	}
	// The stream loses its oldest 20 events, some the socket has not had.
	trimTo := ps[19]
	if err := f.rdb.XTrimMinID(context.Background(), proto.UserStreamKey("bob"), fmt.Sprintf("%d-%d", trimTo.MS, trimTo.Off+1)).Err(); err != nil {
		t.Fatal(err)
	}
	c.drain()
	testkit.Eventually(t, 5*time.Second, "a resync", func() bool { return len(f.rec.resyncs()) == 1 })
	r, ok := c.lastResync(t)
	if !ok || r.Reason != resume.ReasonExpired || r.Pos != ps[29].String() {
		t.Fatalf("resync %+v, want %q at %s", r, resume.ReasonExpired, ps[29])
	}
	// Before it, the events from the resume on without a gap; none after.
	checkRun(t, "before the resync", c.offsets(false), from.Off, first[len(first)-1])
	if got := f.rec.replayedN(); got != len(first) {
		t.Fatalf("%d events counted replayed, want the %d sent before the resync", got, len(first))
	}
	next := f.publish(t, "bob", "live")
	s.Offer(false, &next, eventFrame("bob", "live", next))
	if got := c.offsets(false); got[len(got)-1] != next.Off || len(got) != len(first)+1 {
		t.Fatalf("after the resync: %v, want the live event %d next", got, next.Off)
	}
}

// TestClosedDuringChunkedReplay: a socket that closes while its replay
// waits for room, or whose conn refuses the next part (it is closing), is
// dropped: no more reads or frames for it, nothing left waiting, and the
// resumer's goroutines end.
func TestClosedDuringChunkedReplay(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.QueueFrames = 4
	f := newFixture(t, cfg)
	from := f.publish(t, "bob", "e0")
	for i := 1; i <= 20; i++ {
		f.publish(t, "bob", fmt.Sprintf("e%d", i))
	}
	ignore := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.res.Run(ctx, func() []*resume.Socket { return nil }) }()

	// Closed while it waits for its queue to drain.
	c1 := &conn{id: "c1", user: "bob", maxFrames: 4}
	s1, _ := f.connect(t, c1, from.String(), "")
	sent := len(c1.got())
	s1.Closed()
	c1.drain() // the writer took the queue after all

	// Its conn is closing and refuses the next part.
	c2 := &conn{id: "c2", user: "bob", maxFrames: 4}
	s2, _ := f.connect(t, c2, from.String(), "")
	c2.Close(1001, "going away")
	c2.drain() // the writer takes the queue, before the close frame
	testkit.Eventually(t, 5*time.Second, "the closing socket refuses frames", func() bool {
		return !s2.Offer(false, nil, []byte(`{"event":"transient"}`))
	})
	if n := len(c1.got()); n != sent {
		t.Errorf("%d frames after the socket closed", n-sent)
	}
	if c1.waitingForDrain() || c2.waitingForDrain() {
		t.Error("a closed socket still waits for its queue")
	}
	cancel()
	<-done
	goleak.VerifyNone(t, ignore)
}

// TestResyncDuringChunkedReplayFitsTheQueue: a small send queue (under 64
// frames, so 1/64 of it is no frame at all) whose user stream is replayed
// in parts, while the broadcast stream loses its events (a new epoch).
// The read that sends the next part of the replay also finds the
// broadcast stream's loss, and its resync frame must still fit in the
// queue with that part: the socket is not closed as a slow consumer by
// the gateway's own frames, it gets the resync and the whole replay.
// config.MinSendQueue frames are the least that hold a part, a resync and
// a ping tick's ping and heartbeat.
func TestResyncDuringChunkedReplayFitsTheQueue(t *testing.T) {
	if config.MinSendQueue != 1+resume.MarginFrames {
		t.Fatalf("config.MinSendQueue = %d, want a part of a replay and resume.MarginFrames (%d)", config.MinSendQueue, resume.MarginFrames)
	}
	for _, frames := range []int{config.MinSendQueue, 8, 63} {
		t.Run(fmt.Sprint(frames), func(t *testing.T) { testResyncDuringChunkedReplay(t, frames) })
	}
}

// TestResyncDuringByteChunkedReplayFitsTheQueue: the same in bytes, at
// the smallest GATEWAY_SEND_QUEUE_BYTES, for the longest user id whose
// every character JSON escapes: each part of the replay is one event of
// 64 KiB of args, which goes into the empty queue whatever the budget, and
// the broadcast stream's resync (about 1.9 KB for that user) must fit
// beside it. With the queue's minimum at one event, it closed the socket
// as a slow consumer. (That a part of smaller events leaves room for it
// too is TestBudgetKeepsTheMargin's.)
func TestResyncDuringByteChunkedReplayFitsTheQueue(t *testing.T) {
	if config.MinSendQueueBytes < proto.MaxEventFrame+resume.MarginBytes {
		t.Fatalf("config.MinSendQueueBytes = %d, want at least the largest event and resume.MarginBytes (%d)",
			config.MinSendQueueBytes, proto.MaxEventFrame+resume.MarginBytes)
	}
	cfg := resume.DefaultConfig()
	cfg.QueueBytes = config.MinSendQueueBytes
	user := strings.Repeat("<", proto.MaxUserLen)
	testResyncDuringReplay(t, cfg, &conn{id: "c1", user: user, maxBytes: cfg.QueueBytes}, 4, proto.MaxDispatchArgs-len(`{"text":""}`))
}

func testResyncDuringChunkedReplay(t *testing.T, frames int) {
	cfg := resume.DefaultConfig()
	cfg.QueueFrames = frames
	// 200 events of 10 bytes: several parts of the largest queue.
	testResyncDuringReplay(t, cfg, &conn{id: "c1", user: "bob", maxFrames: frames}, 200, 10)
}

// testResyncDuringReplay replays missed events of text bytes each to c,
// in parts, and has the broadcast stream lose its events meanwhile: c must
// get the whole replay and the resync, and stay open.
func testResyncDuringReplay(t *testing.T, cfg resume.Config, c *conn, missed, text int) {
	f := newFixture(t, cfg)
	bfrom := f.publishSized(t, "", "b0", 10)
	from := f.publishSized(t, c.user, "e0", 10)
	for i := 1; i <= missed; i++ {
		f.publishSized(t, c.user, fmt.Sprintf("e%d", i), text)
	}
	var s *resume.Socket
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	s, _ = f.connect(t, c, from.String(), bfrom.String())
	if !c.waitingForDrain() {
		t.Fatal("the replay went at once; want it in parts")
	}
	// The broadcast stream starts over (its meta lost), and its first
	// event of the new epoch reaches the socket while it replays.
	if err := f.rdb.Del(context.Background(), proto.BroadcastMetaKey).Err(); err != nil {
		t.Fatal(err)
	}
	next := f.publishSized(t, "", "b1", 10)
	args, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", 10)})
	s.Offer(true, &next, proto.AppendEventAt(nil, "b1", c.user, args, proto.KeyBPos, next.Append(nil)))
	// The resync goes with the read of the next part, after that part.
	drainAll(t, c, func() bool {
		_, resynced := c.lastResync(t)
		return resynced && len(c.offsets(false)) == missed
	})
	checkRun(t, "replay", c.offsets(false), from.Off, from.Off+uint64(missed))
	if r, _ := c.lastResync(t); r.Reason != resume.ReasonStoreLost || r.BPos == "" {
		t.Fatalf("resync %+v, want the broadcast stream's %q", r, resume.ReasonStoreLost)
	}
}
