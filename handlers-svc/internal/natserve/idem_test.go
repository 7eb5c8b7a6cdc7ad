package natserve_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/handlers-svc/internal/natserve"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// idemStore returns a Store on a fresh Redis, and that Redis.
func idemStore(t *testing.T) (*idem.Store, *testkit.Redis) {
	s, srv, _ := countedStore(t)
	return s, srv
}

// countedStore is idemStore, with a count of the commands the Store sent.
func countedStore(t *testing.T) (*idem.Store, *testkit.Redis, *atomic.Int64) {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	h := &countHook{}
	rdb.AddHook(h)
	return idem.New(rdb, natserve.IdemTTL), srv, &h.n
}

type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

// keyed sends a request of user for ev with args and idempotency key k
// ("" for none), as the gateway does, and returns the raw reply.
func keyed(t *testing.T, nc *nats.Conn, user, ev, args, k string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := &nats.Msg{Subject: proto.Subject(ev), Header: nats.Header{},
		Data: proto.AppendRequest(nil, &proto.Request{Event: ev, Args: []byte(args), User: user, Conn: user + "-1", Ref: "r"})}
	if k != "" {
		m.Header.Set(proto.IdemHeader, k)
	}
	reply, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		t.Fatalf("request %s: %v", ev, err)
	}
	return string(reply.Data)
}

// counter is a handler that answers each call with its number, counted
// per event; "fail" answers forbidden, "down" unavailable the first time.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *counter) ServeEvent(_ context.Context, r *event.Request) error {
	c.mu.Lock()
	c.calls[r.Event]++
	n := c.calls[r.Event]
	c.mu.Unlock()
	switch {
	case r.Event == "fail":
		return event.Forbidden("not yours (call %d)", n)
	case r.Event == "down" && n == 1:
		return event.Unavailable("try again")
	}
	return r.Respond(map[string]any{"call": n})
}

func (c *counter) count(ev string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[ev]
}

// TestIdemRunsOnceAndReplays: a request repeated with its key gets the
// first one's answer, result or error, without the handler running
// again; keys are the user's own; a key sent with other args is refused;
// a handler that said unavailable (it did not run) runs on the repeat.
func TestIdemRunsOnceAndReplays(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _ := idemStore(t)
	h := &counter{calls: map[string]int{}}
	var replayed atomic.Int32
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store, Replayed: func(string) { replayed.Add(1) }})
	nc := connect(t, ns)

	first := keyed(t, nc, "alice", "send", `{"text":"hi"}`, "k1")
	if first != `{"ok":true,"result":{"call":1}}` {
		t.Fatalf("first reply %s", first)
	}
	if again := keyed(t, nc, "alice", "send", `{"text":"hi"}`, "k1"); again != first {
		t.Errorf("repeat with the key got %s, want the first answer %s", again, first)
	}
	if n := h.count("send"); n != 1 {
		t.Errorf("handler ran %d times for one key, want 1", n)
	}
	if replayed.Load() != 1 {
		t.Errorf("Replayed told %d times, want 1", replayed.Load())
	}
	// Another user's key of the same name is another request.
	if r := keyed(t, nc, "bob", "send", `{"text":"hi"}`, "k1"); r != `{"ok":true,"result":{"call":2}}` {
		t.Errorf("bob's k1 got %s, want a run of its own", r)
	}
	// No key: runs every time, as before.
	keyed(t, nc, "alice", "send", `{"text":"hi"}`, "")
	if n := h.count("send"); n != 3 {
		t.Errorf("handler ran %d times, want 3", n)
	}
	// The key with other args, or another event: refused, not run.
	for _, tc := range []struct{ ev, args string }{{"send", `{"text":"ho"}`}, {"fail", `{"text":"hi"}`}} {
		r := keyed(t, nc, "alice", tc.ev, tc.args, "k1")
		if e := proto.DecodeReply([]byte(r)); e == nil || e.Code != proto.CodeBadRequest || !strings.Contains(e.Message, "another request") {
			t.Errorf("k1 reused for %s %s: %s, want bad_request naming another request", tc.ev, tc.args, r)
		}
	}
	if n := h.count("send") + h.count("fail"); n != 3 {
		t.Errorf("a reused key ran the handler (%d runs, want 3)", n)
	}

	// An error answer is replayed too.
	firstErr := keyed(t, nc, "alice", "fail", `1`, "k2")
	if again := keyed(t, nc, "alice", "fail", `1`, "k2"); again != firstErr || !strings.Contains(again, "call 1") {
		t.Errorf("repeat of a refused request got %s, want the first answer %s", again, firstErr)
	}
	// unavailable: the handler did not run, so the repeat runs it.
	if e := proto.DecodeReply([]byte(keyed(t, nc, "alice", "down", `1`, "k3"))); e == nil || e.Code != proto.CodeUnavailable {
		t.Fatalf("first down: %v, want unavailable", e)
	}
	if r := keyed(t, nc, "alice", "down", `1`, "k3"); r != `{"ok":true,"result":{"call":2}}` {
		t.Errorf("repeat after unavailable got %s, want a second run", r)
	}
}

// TestIdemRepeatWaitsForFirst: a repeat that comes while the first
// request runs (its socket was lost, the client sent it again on a new
// one) waits for the first one's answer and gets it; the handler runs
// once.
func TestIdemRepeatWaitsForFirst(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _, cmds := countedStore(t)
	g := newGate()
	serve(t, ns, g, zap.NewNop(), natserve.Config{Idem: store})
	nc := connect(t, ns)

	replies := make(chan string, 2)
	go func() { replies <- keyed(t, nc, "alice", "slow", `1`, "k") }()
	waitStarted(t, g, "r")
	reserved := cmds.Load()
	go func() { replies <- keyed(t, nc, "alice", "slow", `1`, "k") }()
	// The repeat found the key pending and tried it again: it is waiting.
	for deadline := time.Now().Add(10 * time.Second); cmds.Load() < reserved+2; {
		if time.Now().After(deadline) {
			t.Fatal("the repeat did not try the key twice")
		}
		select {
		case ref := <-g.started:
			t.Fatalf("the repeat ran the handler (%q)", ref)
		case r := <-replies:
			t.Fatalf("a request was answered %s before the first finished", r)
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(g.release)
	for range 2 {
		if r := <-replies; r != `{"ok":true}` {
			t.Errorf("reply %s, want ok", r)
		}
	}
	if len(g.started) != 0 {
		t.Errorf("the handler ran again")
	}
}

// TestIdemUnknownOutcomeKeepsKey: a handler that gave up at the
// request's deadline may have had some of its effects, so its key stays
// reserved: a repeat is answered timeout, and does not run the handler.
// (One that succeeds after its deadline has its answer recorded.)
func TestIdemUnknownOutcomeKeepsKey(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _ := idemStore(t)
	var runs atomic.Int32
	h := event.HandlerFunc(func(ctx context.Context, r *event.Request) error {
		runs.Add(1)
		<-ctx.Done()
		return ctx.Err()
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store, Timeout: 200 * time.Millisecond})
	nc := connect(t, ns)

	if r := keyed(t, nc, "alice", "slow", `1`, "k"); !strings.Contains(r, `"timeout"`) {
		t.Fatalf("first reply %s, want timeout", r)
	}
	r := keyed(t, nc, "alice", "slow", `1`, "k")
	if e := proto.DecodeReply([]byte(r)); e == nil || e.Code != proto.CodeTimeout || !strings.Contains(e.Message, "has not finished") {
		t.Errorf("repeat got %s, want timeout: the first has not finished", r)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

// TestIdemRefusals: a key the gateway should not have sent, one sent
// to a Server that keeps no records, and one whose record cannot be
// read (Redis down) are refused; the handler does not run.
func TestIdemRefusals(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, srv := idemStore(t)
	h := &counter{calls: map[string]int{}}
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store})
	nc := connect(t, ns)
	for _, tc := range []struct {
		key  string
		code proto.Code
		word string
	}{{"a:b", proto.CodeBadRequest, "idem must be"}, {strings.Repeat("k", 65), proto.CodeBadRequest, "idem must be"}} {
		r := keyed(t, nc, "alice", "send", `1`, tc.key)
		if e := proto.DecodeReply([]byte(r)); e == nil || e.Code != tc.code || !strings.Contains(e.Message, tc.word) {
			t.Errorf("key %q: %s, want %s naming %q", tc.key, r, tc.code, tc.word)
		}
	}
	srv.Stop()
	if e := proto.DecodeReply([]byte(keyed(t, nc, "alice", "send", `1`, "k"))); e == nil || e.Code != proto.CodeUnavailable {
		t.Errorf("with Redis down: %v, want unavailable", e)
	}
	if n := h.count("send"); n != 0 {
		t.Errorf("handler ran %d times for refused requests", n)
	}

	ns2 := testkit.StartNATS(t)
	serve(t, ns2, h, zap.NewNop(), natserve.Config{})
	r := keyed(t, connect(t, ns2), "alice", "send", `1`, "k")
	if e := proto.DecodeReply([]byte(r)); e == nil || e.Code != proto.CodeBadRequest || !strings.Contains(e.Message, "not served") {
		t.Errorf("without a Store: %s, want bad_request: not served", r)
	}
}

// TestIdemRateLimitedNotReplayed: rate_limited says the handler did
// nothing and the client may send it again later; the repeat with the
// key, sent after waiting, runs the handler instead of getting
// rate_limited again for as long as the record lasts.
func TestIdemRateLimitedNotReplayed(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _ := idemStore(t)
	var runs atomic.Int32
	h := event.HandlerFunc(func(_ context.Context, r *event.Request) error {
		if runs.Add(1) == 1 {
			return event.NewError(proto.CodeRateLimited, "too many messages to this recipient")
		}
		return r.Respond("sent")
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store})
	nc := connect(t, ns)

	if e := proto.DecodeReply([]byte(keyed(t, nc, "alice", "send", `1`, "k"))); e == nil || e.Code != proto.CodeRateLimited {
		t.Fatalf("first: %v, want rate_limited", e)
	}
	if r := keyed(t, nc, "alice", "send", `1`, "k"); r != `{"ok":true,"result":"sent"}` {
		t.Errorf("repeat after rate_limited got %s, want a run of the handler", r)
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

// TestIdemUnknownOutcomeRefusedAtOnce: once the first request's outcome
// is known to be unknown (its handler answered timeout), a repeat is
// refused with one Redis command, at once: it does not hold a handler
// slot and poll Redis until its own deadline for an answer that cannot
// come.
func TestIdemUnknownOutcomeRefusedAtOnce(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _, cmds := countedStore(t)
	var runs atomic.Int32
	h := event.HandlerFunc(func(context.Context, *event.Request) error {
		runs.Add(1)
		return &event.Error{Code: proto.CodeTimeout, Message: "dispatch outcome unknown: Redis did not answer, it may have been delivered"}
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store, Timeout: 3 * time.Second})
	nc := connect(t, ns)

	if r := keyed(t, nc, "alice", "send", `1`, "k"); !strings.Contains(r, "outcome unknown") {
		t.Fatalf("first reply %s, want its timeout", r)
	}
	before := cmds.Load()
	r := keyed(t, nc, "alice", "send", `1`, "k")
	if e := proto.DecodeReply([]byte(r)); e == nil || e.Code != proto.CodeTimeout || !strings.Contains(e.Message, "outcome is unknown") {
		t.Errorf("repeat got %s, want timeout: outcome unknown", r)
	}
	if n := cmds.Load() - before; n != 1 {
		t.Errorf("the repeat sent %d Redis commands, want 1 (it waited for an answer that cannot come)", n)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

// TestIdemPanicRecorded: a handler that panicked may have had some of
// its effects, so its handler_error is recorded and replayed; the
// handler does not run a second time.
func TestIdemPanicRecorded(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _ := idemStore(t)
	var runs atomic.Int32
	h := event.HandlerFunc(func(context.Context, *event.Request) error {
		runs.Add(1)
		panic("half way")
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store})
	nc := connect(t, ns)

	first := keyed(t, nc, "alice", "send", `1`, "k")
	if e := proto.DecodeReply([]byte(first)); e == nil || e.Code != proto.CodeHandlerError {
		t.Fatalf("first: %s, want handler_error", first)
	}
	if again := keyed(t, nc, "alice", "send", `1`, "k"); again != first {
		t.Errorf("repeat got %s, want the first answer %s", again, first)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

// TestIdemCluster: on a Redis Cluster each record is in its user's
// partition (the slot of the user's stream), and the scripts, one key
// each, run there: users of every partition get their first answer
// replayed, and one's outcome unknown is refused at once.
func TestIdemCluster(t *testing.T) {
	ns := testkit.StartNATS(t)
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{MaxRetries: -1})
	store := idem.New(rdb, natserve.IdemTTL)
	var runs atomic.Int32
	h := event.HandlerFunc(func(_ context.Context, r *event.Request) error {
		runs.Add(1)
		if r.Event == "lost" {
			return event.NewError(proto.CodeTimeout, "dispatch outcome unknown")
		}
		return r.Respond(r.User)
	})
	serve(t, ns, h, zap.NewNop(), natserve.Config{Idem: store})
	nc := connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	users := map[int]string{}
	for i := 0; len(users) < proto.Partitions; i++ {
		u := "u" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
		if _, ok := users[proto.PartitionOf(u)]; !ok {
			users[proto.PartitionOf(u)] = u
		}
	}
	for _, u := range users {
		want := `{"ok":true,"result":"` + u + `"}`
		for range 2 {
			if r := keyed(t, nc, u, "send", `1`, "k"); r != want {
				t.Fatalf("%s: %s, want %s", u, r, want)
			}
		}
		key, stream := proto.UserIdemKey(u, "k"), proto.UserStreamKey(u)
		ks, err1 := rdb.ClusterKeySlot(ctx, key).Result()
		ss, err2 := rdb.ClusterKeySlot(ctx, stream).Result()
		if err1 != nil || err2 != nil || ks != ss {
			t.Errorf("%s: record's slot %d (%v), stream's %d (%v): not in the user's partition", u, ks, err1, ss, err2)
		}
		if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("%s: record %s exists %d (%v)", u, key, n, err)
		}
	}
	if n := int(runs.Load()); n != len(users) {
		t.Errorf("handler ran %d times for %d users, want once each", n, len(users))
	}
	u := users[3]
	keyed(t, nc, u, "lost", `1`, "k2")
	if e := proto.DecodeReply([]byte(keyed(t, nc, u, "lost", `1`, "k2"))); e == nil || !strings.Contains(e.Message, "outcome is unknown") {
		t.Errorf("repeat of an unknown outcome on a cluster: %v, want refused", e)
	}
}
