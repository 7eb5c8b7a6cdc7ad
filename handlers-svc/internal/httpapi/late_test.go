package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// pipelineGate is a go-redis hook that holds each pipeline of publish
// script calls until the test lets it go, so the test knows which flush
// of the dispatcher's publisher carries which call.
type pipelineGate struct {
	entered chan struct{}
	release chan struct{}
}

func (g *pipelineGate) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (g *pipelineGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (g *pipelineGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "evalsha" }) {
			return next(ctx, cmds)
		}
		g.entered <- struct{}{}
		<-g.release
		return next(ctx, cmds)
	}
}

// lateServer serves an API whose dispatcher writes to srv through a
// pipelineGate, keeping its idempotency records in records; each dispatch
// is given timeout.
func lateServer(t *testing.T, srv, records *testkit.Redis, timeout time.Duration) (url string, d *dispatch.Dispatcher, g *pipelineGate, a *API) {
	t.Helper()
	// handlers-svc's tuning; a read timeout longer than any stall here.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true,
		ReadTimeout: 20 * time.Second, OnConnect: dispatch.OnConnect})
	idem := redis.NewClient(&redis.Options{Addr: records.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close(); _ = idem.Close() })
	d = dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	if _, err := d.Dispatch(context.Background(), dispatch.Message{Event: "warm", Users: []string{"zed"}}); err != nil {
		t.Fatalf("warm-up: %v", err) // the script loaded, a connection pooled
	}
	g = &pipelineGate{entered: make(chan struct{}, 4), release: make(chan struct{})}
	rdb.AddHook(g)
	a = New(d, "late-key-0123456789", zap.NewNop()).Idempotent(idem)
	a.timeout = timeout
	hs := httptest.NewServer(a)
	t.Cleanup(func() { hs.Close(); a.Close() })
	return hs.URL + Path, d, g, a
}

type lateAnswer struct {
	status   int
	body     string
	replayed string
}

func postKeyed(t *testing.T, url, body, idemKey string) lateAnswer {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer late-key-0123456789")
	req.Header.Set(IdempotencyHeader, idemKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return lateAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return lateAnswer{resp.StatusCode, strings.TrimSpace(string(b)), resp.Header.Get(ReplayedHeader)}
}

// awaitWaiting waits until n goroutines wait in the publisher's queue or
// for their flush: the test cannot see the publisher's queue from here.
func awaitWaiting(t *testing.T, n int) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, "dispatches wait in the publisher", func() bool {
		buf := make([]byte, 1<<20)
		return bytes.Count(buf[:runtime.Stack(buf, true)], []byte("dispatch.(*publisher).wait(")) == n
	})
}

func (g *pipelineGate) next(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no pipeline reached Redis")
	}
}

func streamLen(t *testing.T, addr, user string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	n, err := c.XLen(context.Background(), proto.UserStreamKey(user)).Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return n
}

// TestTimedOutDispatchOutcomeReplayed: a dispatch with a key answered 504
// while its call was in flight, carried by another caller's pipeline that
// Redis holds (stopped) past its deadline, is recorded once Redis
// runs it: a retry with the key gets 409 until then, and then the 200 with
// the positions it was recorded at, replayed, and it is delivered once.
func TestTimedOutDispatchOutcomeReplayed(t *testing.T) {
	srv, records := testkit.StartRedis(t), testkit.StartRedis(t)
	url, d, g, _ := lateServer(t, srv, records, 2*time.Second)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	bg, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// first leads a flush that the gate holds; lead queues behind it and
	// leads the next, which carries the keyed dispatch too.
	first := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(bg, dispatch.Message{Event: "first", Users: []string{"alice"}})
		first <- err
	}()
	g.next(t)
	lead := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(bg, dispatch.Message{Event: "lead", Users: []string{"alice"}})
		lead <- err
	}()
	awaitWaiting(t, 1)
	body := `{"event":"e","users":["bob","carol"]}`
	keyed := make(chan lateAnswer, 1)
	go func() { keyed <- postKeyed(t, url, body, "order-7") }()
	awaitWaiting(t, 2)

	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	g.next(t) // lead's flush, with the keyed call in it
	srv.Pause(t)
	g.release <- struct{}{} // written to a Redis that does not answer

	a := <-keyed
	if a.status != http.StatusGatewayTimeout || !strings.Contains(a.body, `"code":"timeout"`) {
		t.Fatalf("keyed dispatch in flight past its deadline: %+v, want 504 timeout", a)
	}
	if r := postKeyed(t, url, body, "order-7"); r.status != http.StatusConflict {
		t.Fatalf("retry while the call is in flight: %+v, want 409", r)
	}
	srv.Continue()
	if err := <-lead; err != nil {
		t.Fatalf("the leader: %v", err)
	}
	var r lateAnswer
	testkit.Eventually(t, 10*time.Second, "the retry is answered the recorded 200", func() bool {
		r = postKeyed(t, url, body, "order-7")
		return r.status != http.StatusConflict
	})
	if r.status != http.StatusOK || r.replayed != "true" {
		t.Fatalf("retry after the outcome is known: %+v, want 200 replayed", r)
	}
	var pos dispatch.Positions
	if err := jsonUnmarshal(r.body, &pos); err != nil {
		t.Fatalf("replayed body %s: %v", r.body, err)
	}
	for _, u := range []string{"bob", "carol"} {
		p, ok := proto.ParsePos(pos.Users[u])
		if !ok {
			t.Fatalf("replayed %s: %s's position %q does not parse", r.body, u, pos.Users[u])
		}
		xs, err := admin.XRange(bg, proto.UserStreamKey(u), "-", "+").Result()
		if err != nil || len(xs) != 1 || xs[0].ID != p.ID() {
			t.Fatalf("%s's stream %v (%v), want the one entry the replayed 200 names, %s", u, xs, err, pos.Users[u])
		}
	}
	if n := streamLen(t, srv.Addr(), "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want 1: a retry was dispatched", n)
	}
}

// TestTimedOutDispatchNotRunFreesKey: a dispatch with a key whose
// deadline passes while it waits behind another caller's flush is never
// written: its key is freed before it is answered 503 unavailable (nothing
// was delivered: a retry is safe), so a retry with it is dispatched (once).
func TestTimedOutDispatchNotRunFreesKey(t *testing.T) {
	srv, records := testkit.StartRedis(t), testkit.StartRedis(t)
	url, d, g, _ := lateServer(t, srv, records, 300*time.Millisecond)
	bg, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first := make(chan error, 1)
	go func() {
		_, err := d.Dispatch(bg, dispatch.Message{Event: "first", Users: []string{"alice"}})
		first <- err
	}()
	g.next(t)
	body := `{"event":"e","users":["bob"]}`
	if r := postKeyed(t, url, body, "order-8"); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"code":"unavailable"`) ||
		!strings.Contains(r.body, "nothing was delivered") {
		t.Fatalf("keyed dispatch queued past its deadline: %+v, want 503 unavailable, nothing delivered", r)
	}
	rc := redis.NewClient(&redis.Options{Addr: records.Addr()})
	defer rc.Close()
	if n, err := rc.Exists(bg, proto.IdempotencyKey("order-8")).Result(); err != nil || n != 0 {
		t.Fatalf("after the 503 of a dispatch never sent, its key's record exists (%d, %v), want it freed", n, err)
	}
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, srv.Addr(), "bob"); n != 0 {
		t.Fatalf("bob's stream holds %d events, want none: the dispatch was sent", n)
	}
	go func() { g.next(t); g.release <- struct{}{} }()
	if r := postKeyed(t, url, body, "order-8"); r.status != http.StatusOK || r.replayed != "" {
		t.Fatalf("retry: %+v, want 200 dispatched", r)
	}
	if n := streamLen(t, srv.Addr(), "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want 1", n)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestLateRecordsBounded: an outcome reported after its dispatch returned
// is recorded on a goroutine of its own only while fewer than
// MaxInFlight are, and not at all once the API is closed (Close is
// idempotent): the key then stays reserved until it expires.
func TestLateRecordsBounded(t *testing.T) {
	records := testkit.StartRedis(t)
	idem := redis.NewClient(&redis.Options{Addr: records.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = idem.Close() })
	a := New(nil, "late-key-0123456789", zap.NewNop()).Idempotent(idem)
	ctx := context.Background()
	reserved := func(k string) *reservation {
		res, _, err := a.reserve(ctx, k, &dispatch.Message{Event: "e", Broadcast: true})
		if res == nil {
			t.Fatalf("reserve %s: %v", k, err)
		}
		return res
	}
	exists := func(k string) bool {
		n, err := idem.Exists(ctx, proto.IdempotencyKey(k)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	notRun := late.Report{Outcome: late.NotRun}

	// All places taken: dropped, the key kept.
	for range MaxInFlight {
		a.lates.slots <- struct{}{}
	}
	a.lates.record(a, reserved("full"), notRun)
	for range MaxInFlight {
		<-a.lates.slots
	}
	a.lates.wg.Wait()
	if !exists("full") {
		t.Fatal("an outcome beyond MaxInFlight was recorded")
	}
	// A place free: recorded.
	a.lates.record(a, reserved("free"), notRun)
	a.lates.wg.Wait()
	if exists("free") {
		t.Fatal("a dispatch that did not run left its key reserved")
	}
	// Closed: dropped.
	a.Close()
	a.Close()
	a.lates.record(a, reserved("closed"), notRun)
	a.lates.wg.Wait()
	if !exists("closed") {
		t.Fatal("an outcome reported after Close was recorded")
	}
}
