package resume_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// conn records the frames a socket sends, decoded. It models a send
// queue: what is sent counts against maxFrames and maxBytes (0: no bound)
// until the test drains it, as the socket's writer takes the queue;
// overflowing it closes the conn as a slow consumer.
type conn struct {
	id, user            string
	maxFrames, maxBytes int
	mu                  sync.Mutex
	frames              []frame
	closed              int
	queued, queuedN     int    // frames and bytes not drained
	onDrain             func() // WhenDrained's
}

type frame struct {
	Event string          `json:"event"`
	ID    string          `json:"id"`
	Args  json.RawMessage `json:"args"`
	Pos   string          `json:"pos"`
	BPos  string          `json:"bpos"`
}

func (c *conn) ID() string   { return c.id }
func (c *conn) User() string { return c.user }
func (c *conn) Send(b []byte) bool {
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		panic(fmt.Sprintf("a frame that is not JSON: %s", b))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed != 0 {
		return false
	}
	if (c.maxFrames > 0 && c.queued+1 > c.maxFrames) || (c.maxBytes > 0 && c.queuedN+len(b) > c.maxBytes) {
		c.closed, c.onDrain = proto.ClosePolicy, nil // a slow consumer: the queue is dropped
		return false
	}
	c.frames = append(c.frames, f)
	c.queued, c.queuedN = c.queued+1, c.queuedN+len(b)
	return true
}
func (c *conn) Close(code int, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = code
}
func (c *conn) IssuedAt() time.Time { return time.Time{} }
func (c *conn) Queued() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued, c.queuedN
}
func (c *conn) WhenDrained(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queued == 0 {
		c.onDrain = nil
		return false
	}
	c.onDrain = f
	return true
}

// drain empties the queue, as the socket's writer takes it, and calls
// what WhenDrained was given; it reports whether there was one.
func (c *conn) drain() bool {
	c.mu.Lock()
	c.queued, c.queuedN = 0, 0
	f := c.onDrain
	c.onDrain = nil
	c.mu.Unlock()
	if f != nil {
		f()
	}
	return f != nil
}

func (c *conn) closeCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *conn) got() []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]frame(nil), c.frames...)
}

// events returns the events sent after "connected", as "event@offset"
// (b for broadcast positions).
func (c *conn) events(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range c.got()[1:] {
		switch {
		case f.Pos != "":
			p, _ := proto.ParsePos(f.Pos)
			out = append(out, fmt.Sprintf("%s@%d", f.Event, p.Off))
		case f.BPos != "":
			p, _ := proto.ParsePos(f.BPos)
			out = append(out, fmt.Sprintf("%s@b%d", f.Event, p.Off))
		default:
			out = append(out, f.Event)
		}
	}
	return out
}

// recorder counts what the resumer reports.
type recorder struct {
	mu       sync.Mutex
	resumed  []string
	healed   int
	resynced []string
	dups     int
	replayed int
}

func (r *recorder) Resumed(o string) {
	r.mu.Lock()
	r.resumed = append(r.resumed, o)
	r.mu.Unlock()
}
func (r *recorder) Replayed(n int) { r.mu.Lock(); r.replayed += n; r.mu.Unlock() }
func (r *recorder) Healed(int)     { r.mu.Lock(); r.healed++; r.mu.Unlock() }
func (r *recorder) Resynced(reason string) {
	r.mu.Lock()
	r.resynced = append(r.resynced, reason)
	r.mu.Unlock()
}
func (r *recorder) Duplicate()        { r.mu.Lock(); r.dups++; r.mu.Unlock() }
func (r *recorder) TransientDropped() {}

func (r *recorder) replayedN() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replayed
}

func (r *recorder) healedN() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.healed
}

func (r *recorder) resyncs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.resynced...)
}

func (r *recorder) lastResume() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resumed[len(r.resumed)-1]
}

type fixture struct {
	rdb redis.UniversalClient
	res *resume.Resumer
	rec *recorder
}

func newFixture(t *testing.T, cfg resume.Config) *fixture {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return fixtureOn(rdb, cfg)
}

// newClusterFixture is newFixture on a 3-master Redis Cluster.
func newClusterFixture(t *testing.T, cfg resume.Config) *fixture {
	t.Helper()
	c := testkit.StartRedisCluster(t, 3)
	return fixtureOn(c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect}), cfg)
}

// onBoth runs test on one Redis and on a Redis Cluster.
func onBoth(t *testing.T, test func(t *testing.T, newFixture func(*testing.T, resume.Config) *fixture)) {
	t.Run("one", func(t *testing.T) { test(t, newFixture) })
	t.Run("cluster", func(t *testing.T) { test(t, newClusterFixture) })
}

func fixtureOn(rdb redis.UniversalClient, cfg resume.Config) *fixture {
	rec := &recorder{}
	f := &fixture{rdb: rdb, res: resume.New(rdb, cfg, rec, zap.NewNop()), rec: rec}
	return f
}

// run runs the resumer's readers for the test, over sockets.
func (f *fixture) run(t *testing.T, sockets func() []*resume.Socket) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.res.Run(ctx, sockets) }()
	t.Cleanup(func() { cancel(); <-done })
}

// publish records and publishes one event to user and returns its
// position; the subscribers of the tests are the sockets themselves,
// offered frames by hand.
func (f *fixture) publish(t *testing.T, user, event string) proto.Pos {
	t.Helper()
	pos, _, err := streams.Publish(context.Background(), f.rdb, time.Minute,
		&proto.Dispatch{Event: event, Args: json.RawMessage(`{}`), Users: []string{user}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := proto.ParsePos(pos[0])
	return p
}

func eventFrame(user, event string, p proto.Pos) []byte {
	return proto.AppendEventAt(nil, event, user, json.RawMessage(`{}`), proto.KeyPos, p.Append(nil))
}

func (f *fixture) connect(t *testing.T, c *conn, resumeFrom, bresume string) (*resume.Socket, proto.Connected) {
	t.Helper()
	s := f.res.NewSocket(c)
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, resumeFrom, bresume); err != nil {
		t.Fatal(err)
	}
	first := c.got()[0]
	var args proto.Connected
	if first.Event != "connected" || json.Unmarshal(first.Args, &args) != nil {
		t.Fatalf("first frame %+v, want connected", first)
	}
	return s, args
}

func join(ss []string) string { return strings.Join(ss, " ") }

// TestConnectFresh: without resume positions a socket starts at the tops of
// its streams, and connected says where, without recovered or missed.
func TestConnectFresh(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	top := f.publish(t, "bob", "e1")
	c := &conn{id: "c1", user: "bob"}
	_, args := f.connect(t, c, "", "")
	if args.Pos != top.String() || args.BPos == "" || args.Recovered != nil || args.Missed != nil || args.Conn != "c1" {
		t.Fatalf("connected %+v, want pos %s and no recovery fields", args, top)
	}
	if len(c.got()) != 1 {
		t.Fatalf("frames after connected: %+v", c.got()[1:])
	}
}

// TestResumeRecovers: a socket that comes back with the position it last
// processed gets recovered:true and every event after it, once, in order,
// right after connected; events held meanwhile follow, without repeats.
func TestResumeRecovers(t *testing.T) { onBoth(t, testResumeRecovers) }

func testResumeRecovers(t *testing.T, newFixture func(*testing.T, resume.Config) *fixture) {
	f := newFixture(t, resume.DefaultConfig())
	last := f.publish(t, "bob", "e1")
	var missed []proto.Pos
	for i := 2; i <= 4; i++ {
		missed = append(missed, f.publish(t, "bob", fmt.Sprintf("e%d", i)))
	}
	c := &conn{id: "c1", user: "bob"}
	s := f.res.NewSocket(c)
	// Offered before Connect (the socket is registered first): one the
	// read will also return, and one after it.
	s.Offer(false, &missed[2], eventFrame("bob", "e4", missed[2]))
	e5 := f.publish(t, "bob", "e5")
	s.Offer(false, &e5, eventFrame("bob", "e5", e5))
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 3}, last.String(), ""); err != nil {
		t.Fatal(err)
	}
	var args proto.Connected
	_ = json.Unmarshal(c.got()[0].Args, &args)
	if args.Recovered == nil || !*args.Recovered || *args.Missed != 4 || args.Pos != last.String() || args.Worker != 3 {
		// e5 was published before the read, so it is read too: 4 missed.
		t.Fatalf("connected %+v, want recovered with 4 missed from %s", args, last)
	}
	if got, want := join(c.events(t)), "e2@2 e3@3 e4@4 e5@5"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if got := f.rec.lastResume(); got != resume.OutcomeRecovered {
		t.Fatalf("outcome %v", got)
	}
	// Live from there: the next offset goes, a repeat does not.
	e6 := f.publish(t, "bob", "e6")
	s.Offer(false, &e6, eventFrame("bob", "e6", e6))
	s.Offer(false, &e6, eventFrame("bob", "e6", e6))
	if got, want := join(c.events(t)), "e2@2 e3@3 e4@4 e5@5 e6@6"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// TestResumeNotRecovered: a position that is not one, of another epoch,
// too far behind, or whose events expired gets recovered:false, nothing
// replayed, and the socket starts at the top.
func TestResumeNotRecovered(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.MaxReplay = 3
	f := newFixture(t, cfg)
	first := f.publish(t, "bob", "e1")
	var top proto.Pos
	for i := 2; i <= 6; i++ {
		top = f.publish(t, "bob", fmt.Sprintf("e%d", i))
	}
	expired := f.publish(t, "carol", "x1")
	f.publish(t, "carol", "x2")
	f.publish(t, "carol", "x3")
	// Carol's oldest entries expire: trimmed as by time.
	f.rdb.XTrimMinID(context.Background(), proto.UserStreamKey("carol"), fmt.Sprintf("%d-3", expired.MS))
	for _, tt := range []struct {
		name, user, pos, outcome string
	}{
		{"malformed", "bob", "garbage", resume.OutcomeInvalid},
		{"ahead of the stream", "bob", proto.Pos{Epoch: top.Epoch, MS: top.MS, Off: top.Off + 5}.String(), resume.OutcomeInvalid},
		{"another epoch", "bob", proto.Pos{Epoch: "lost", MS: first.MS, Off: 1}.String(), resume.OutcomeStoreLost},
		{"too many", "bob", first.String(), resume.OutcomeTooMany},
		{"expired", "carol", proto.Pos{Epoch: expired.Epoch, MS: expired.MS, Off: 0}.String(), resume.OutcomeExpired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &conn{id: "c", user: tt.user}
			_, args := f.connect(t, c, tt.pos, "")
			if args.Recovered == nil || *args.Recovered || *args.Missed != 0 {
				t.Fatalf("connected %+v, want recovered false, 0 missed", args)
			}
			if p, _ := proto.ParsePos(args.Pos); p.Off == 0 && tt.user == "bob" || args.Pos == tt.pos {
				t.Fatalf("pos %s, want the stream's top", args.Pos)
			}
			if len(c.got()) != 1 {
				t.Fatalf("replayed %v with recovered false", c.events(t))
			}
			if got := f.rec.lastResume(); got != tt.outcome {
				t.Fatalf("outcome %s, want %s", got, tt.outcome)
			}
		})
	}
}

// TestGapFilledInPlace: an event that skips offsets makes the socket read
// the stream and send what it lacked, in order, without closing.
func TestGapFilledInPlace(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	var ps []proto.Pos
	for i := 1; i <= 4; i++ {
		ps = append(ps, f.publish(t, "bob", fmt.Sprintf("e%d", i)))
	}
	s.Offer(false, &ps[0], eventFrame("bob", "e1", ps[0]))
	s.Offer(false, &ps[3], eventFrame("bob", "e4", ps[3])) // e2, e3 lost on the way
	testkit.Eventually(t, 5*time.Second, "the gap is filled", func() bool { return len(c.events(t)) == 4 })
	if got, want := join(c.events(t)), "e1@1 e2@2 e3@3 e4@4"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if f.rec.healedN() != 1 || c.closed != 0 || len(f.rec.resyncs()) != 0 {
		t.Fatalf("healed %d, closed %d, resyncs %v", f.rec.healedN(), c.closed, f.rec.resyncs())
	}
}

// TestStoreLostResyncs: when the stream comes back in another epoch (Redis
// lost it), a live socket gets a resync with the new position and carries
// on in the new epoch; it is never told the old one continues.
func TestStoreLostResyncs(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	c := &conn{id: "c1", user: "bob"}
	s, _ := f.connect(t, c, "", "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	p1 := f.publish(t, "bob", "e1")
	s.Offer(false, &p1, eventFrame("bob", "e1", p1))
	f.rdb.FlushAll(context.Background()) // Redis restarted empty
	n1 := f.publish(t, "bob", "n1")
	n2 := f.publish(t, "bob", "n2")
	s.Offer(false, &n2, eventFrame("bob", "n2", n2)) // n1 missed, in a new epoch
	testkit.Eventually(t, 5*time.Second, "a resync", func() bool { return len(f.rec.resyncs()) == 1 })
	frames := c.got()
	var resync proto.Resync
	if frames[2].Event != "resync" || json.Unmarshal(frames[2].Args, &resync) != nil {
		t.Fatalf("frames %+v, want a resync after e1", frames)
	}
	if resync.Pos != n2.String() || resync.Reason != resume.ReasonStoreLost || n1.Epoch != n2.Epoch || n2.Epoch == p1.Epoch {
		t.Fatalf("resync %+v, want the new top %s", resync, n2)
	}
	n3 := f.publish(t, "bob", "n3")
	s.Offer(false, &n3, eventFrame("bob", "n3", n3))
	if got := c.events(t); got[len(got)-1] != "n3@3" {
		t.Fatalf("after the resync: %v", got)
	}
}

// TestSweepFillsWhatNoOneHeard: after a resubscription, a socket behind its
// stream (events published while the subscription was down) is filled, as
// is one whose stream has no news; a socket up to date is left alone.
func TestSweepFillsWhatNoOneHeard(t *testing.T) { onBoth(t, testSweepFillsWhatNoOneHeard) }

func testSweepFillsWhatNoOneHeard(t *testing.T, newFixture func(*testing.T, resume.Config) *fixture) {
	f := newFixture(t, resume.DefaultConfig())
	bob, carol := &conn{id: "b", user: "bob"}, &conn{id: "c", user: "carol"}
	sb, _ := f.connect(t, bob, "", "")
	sc, _ := f.connect(t, carol, "", "")
	sockets := []*resume.Socket{sb, sc}
	f.run(t, func() []*resume.Socket { return sockets })
	f.publish(t, "bob", "lost1")
	f.publish(t, "bob", "lost2")
	f.res.RequestSweep()
	testkit.Eventually(t, 5*time.Second, "bob's events filled", func() bool { return len(bob.events(t)) == 2 })
	if got := join(bob.events(t)); got != "lost1@1 lost2@2" {
		t.Fatalf("bob got %q", got)
	}
	if len(carol.got()) != 1 {
		t.Fatalf("carol got %v", carol.events(t))
	}
}

// TestHeldOverrunReadsAgain: frames past the hold bounds are dropped, and
// the socket reads its stream again afterwards, so nothing recoverable is
// lost.
func TestHeldOverrunReadsAgain(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.HeldFrames = 2
	f := newFixture(t, cfg)
	c := &conn{id: "c1", user: "bob"}
	s := f.res.NewSocket(c)
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	start := f.publish(t, "bob", "e0")
	var ps []proto.Pos
	for i := 1; i <= 6; i++ {
		ps = append(ps, f.publish(t, "bob", fmt.Sprintf("e%d", i)))
	}
	for i, p := range ps { // all offered while connecting: only 2 held
		s.Offer(false, &p, eventFrame("bob", fmt.Sprintf("e%d", i+1), p))
	}
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, start.String(), ""); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "every event", func() bool { return len(c.events(t)) == 6 })
	if got, want := join(c.events(t)), "e1@2 e2@3 e3@4 e4@5 e5@6 e6@7"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// TestRecoveryOff: with recovery off, connected has no positions and every
// frame goes as it comes; a resume is answered recovered false, missed 0
// (PROTOCOL.md section 2: with a resume connected carries both).
func TestRecoveryOff(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.Enabled = false
	f := newFixture(t, cfg)
	c := &conn{id: "c1", user: "bob"}
	s := f.res.NewSocket(c)
	p := proto.Pos{Epoch: "e", MS: 1, Off: 7}
	s.Offer(false, &p, eventFrame("bob", "held", p))
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, "e.1-1", ""); err != nil {
		t.Fatal(err)
	}
	s.Offer(false, &p, eventFrame("bob", "live", p))
	var args proto.Connected
	_ = json.Unmarshal(c.got()[0].Args, &args)
	if args.Pos != "" || args.Recovered == nil || *args.Recovered || args.Missed == nil || *args.Missed != 0 {
		t.Fatalf("connected %+v with recovery off, after a resume: want no pos, recovered false, missed 0", args)
	}
	if got := len(c.got()); got != 3 {
		t.Fatalf("%d frames, want connected and both events", got)
	}
}
