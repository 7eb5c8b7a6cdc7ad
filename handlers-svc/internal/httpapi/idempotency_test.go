package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// idemServer serves the API dispatching with rdb and keeping idempotency
// records in idem; wrap, if not nil, stands between the API and the
// dispatcher.
func idemServer(t *testing.T, rdb, idem redis.UniversalClient, wrap func(httpapi.Dispatcher) httpapi.Dispatcher) (string, *httpapi.API) {
	t.Helper()
	var d httpapi.Dispatcher = dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	if wrap != nil {
		d = wrap(d)
	}
	api := httpapi.New(d, key, zap.NewNop()).Idempotent(idem)
	mux := http.NewServeMux()
	api.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL + httpapi.Path, api
}

type answer struct {
	status   int
	body     string
	replayed string
}

// postIdem posts body with the idempotency header values given (none, one
// or several).
func postIdem(t *testing.T, url, body string, idem ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return answer{}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	for _, v := range idem {
		req.Header.Add(httpapi.IdempotencyHeader, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, strings.TrimSpace(string(b)), resp.Header.Get(httpapi.ReplayedHeader)}
}

func xlen(t *testing.T, rdb redis.UniversalClient, user string) int64 {
	t.Helper()
	n, err := rdb.XLen(context.Background(), proto.UserStreamKey(user)).Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return n
}

func errorCode(body string) proto.Code {
	var e proto.Reply
	if json.Unmarshal([]byte(body), &e) != nil || e.Error == nil {
		return ""
	}
	return e.Error.Code
}

// TestIdempotentRetry: a dispatch retried with the same key and body is
// answered the first one's positions, replayed, and delivered once; the
// key with another body is refused.
func TestIdempotentRetry(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	url, api := idemServer(t, rdb, rdb, nil)
	body := `{"event":"e","args":{"n":1},"users":["bob","carol"]}`

	first := postIdem(t, url, body, "order-42")
	if first.status != http.StatusOK || !strings.Contains(first.body, `"bob":"`) || first.replayed != "" {
		t.Fatalf("first: %+v, want 200 with positions, not replayed", first)
	}
	// The draft's form, a structured-field string, names the same key.
	for _, k := range []string{"order-42", `"order-42"`} {
		again := postIdem(t, url, body, k)
		if again.status != http.StatusOK || again.body != first.body || again.replayed != "true" {
			t.Fatalf("retry with %s: %+v, want the first answer %s replayed", k, again, first.body)
		}
	}
	if n := xlen(t, rdb, "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want 1: the retries were delivered", n)
	}
	if got := api.Replays(); got != 2 {
		t.Fatalf("Replays() = %d, want 2", got)
	}
	other := postIdem(t, url, `{"event":"e","args":{"n":2},"users":["bob"]}`, "order-42")
	if other.status != http.StatusUnprocessableEntity || errorCode(other.body) != proto.CodeBadRequest {
		t.Fatalf("same key, another body: %+v, want 422 bad_request", other)
	}
	if n := xlen(t, rdb, "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want 1", n)
	}
	// The record expires with the key's lifetime.
	ttl, err := rdb.PTTL(context.Background(), proto.IdempotencyKey("order-42")).Result()
	if err != nil || ttl <= 0 || ttl > httpapi.IdempotencyTTL {
		t.Fatalf("record's PTTL %v (%v), want within IdempotencyTTL", ttl, err)
	}
}

// gate holds the first Dispatch until released, after telling entered.
type gate struct {
	d       httpapi.Dispatcher
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Dispatch(ctx context.Context, m dispatch.Message) (dispatch.Positions, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.d.Dispatch(ctx, m)
}

func (g *gate) Disconnect(ctx context.Context, m dispatch.Disconnect) (int, error) {
	return g.d.Disconnect(ctx, m)
}

// TestIdempotentConcurrent: while a dispatch with a key runs, the same
// request is answered 409, not dispatched; once it is done, the stored
// answer; and requests racing from the start deliver once.
func TestIdempotentConcurrent(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	url, _ := idemServer(t, rdb, rdb, func(d httpapi.Dispatcher) httpapi.Dispatcher { g.d = d; return g })
	var released sync.Once
	release := func() { released.Do(func() { close(g.release) }) }
	t.Cleanup(release) // before the server's close, which waits for the held request
	body := `{"event":"e","users":["bob"]}`

	firstDone := make(chan answer, 1)
	go func() { firstDone <- postIdem(t, url, body, "k1") }()
	<-g.entered
	for range 4 {
		a := postIdem(t, url, body, "k1")
		if a.status != http.StatusConflict || errorCode(a.body) != proto.CodeTimeout ||
			!strings.Contains(a.body, "in progress") {
			t.Fatalf("while the first runs: %+v, want 409 timeout (in progress)", a)
		}
	}
	release()
	first := <-firstDone
	if first.status != http.StatusOK {
		t.Fatalf("first: %+v", first)
	}
	if a := postIdem(t, url, body, "k1"); a.status != http.StatusOK || a.body != first.body || a.replayed != "true" {
		t.Fatalf("after the first: %+v, want %s replayed", a, first.body)
	}

	// Racing: exactly one delivers, the others get 409 or its answer.
	const n = 8
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = postIdem(t, url, `{"event":"e","users":["carol"]}`, "k2") })
	}
	wg.Wait()
	var fresh int
	var pos string
	for _, a := range answers {
		switch {
		case a.status == http.StatusOK && a.replayed == "":
			fresh++
			pos = a.body
		case a.status == http.StatusOK || a.status == http.StatusConflict:
		default:
			t.Fatalf("racing: %+v, want 200 or 409", a)
		}
	}
	for _, a := range answers {
		if a.status == http.StatusOK && a.body != pos {
			t.Fatalf("racing: answers %s and %s differ", a.body, pos)
		}
	}
	if fresh != 1 || xlen(t, rdb, "bob") != 1 || xlen(t, rdb, "carol") != 1 {
		t.Fatalf("racing: %d dispatched, streams bob %d carol %d, want 1 each", fresh, xlen(t, rdb, "bob"), xlen(t, rdb, "carol"))
	}
}

// TestIdempotentNothingDelivered: a dispatch that surely delivered nothing
// (bad_request found by the dispatcher, Redis unreachable) frees its key,
// so a retry with it runs.
func TestIdempotentNothingDelivered(t *testing.T) {
	srv, records := testkit.StartRedis(t), testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	idem := redis.NewClient(&redis.Options{Addr: records.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close(); _ = idem.Close() })
	url, _ := idemServer(t, rdb, idem, nil)

	// No target: refused by the dispatcher, after the key was reserved.
	if a := postIdem(t, url, `{"event":"e"}`, "k"); a.status != http.StatusBadRequest {
		t.Fatalf("no target: %+v, want 400", a)
	}
	// The key was freed: another body with it is dispatched, not 422.
	body := `{"event":"e","users":["bob"]}`
	if a := postIdem(t, url, body, "k"); a.status != http.StatusOK || a.replayed != "" {
		t.Fatalf("after a 400: %+v, want 200 dispatched", a)
	}

	// Redis of the streams down: 503, the key freed.
	srv.Stop()
	if a := postIdem(t, url, body, "k2"); a.status != http.StatusServiceUnavailable || errorCode(a.body) != proto.CodeUnavailable {
		t.Fatalf("Redis down: %+v, want 503 unavailable", a)
	}
	if n, err := idem.Exists(context.Background(), proto.IdempotencyKey("k2")).Result(); err != nil || n != 0 {
		t.Fatalf("after 503 the key's record exists (%d, %v), want it released", n, err)
	}
	srv.Start()
	if a := postIdem(t, url, body, "k2"); a.status != http.StatusOK || a.replayed != "" {
		t.Fatalf("retry after 503: %+v, want 200 dispatched", a)
	}

	// Redis of the records down: 503 unavailable, as a dispatch's, and
	// nothing dispatched.
	before := xlen(t, rdb, "bob")
	records.Stop()
	if a := postIdem(t, url, body, "k3"); a.status != http.StatusServiceUnavailable || errorCode(a.body) != proto.CodeUnavailable {
		t.Fatalf("records' Redis down: %+v, want 503 unavailable", a)
	}
	if n := xlen(t, rdb, "bob"); n != before {
		t.Fatalf("bob's stream went from %d to %d events with the key's Redis down, want nothing dispatched", before, n)
	}
	records.Start()
	if a := postIdem(t, url, body, "k3"); a.status != http.StatusOK || a.replayed != "" {
		t.Fatalf("retry after the records' Redis came back: %+v, want 200 dispatched", a)
	}
}

// TestIdempotentTimeoutStaysPending: a dispatch Redis took but did not
// answer (504, it may have been delivered) keeps its key pending: a retry
// is answered 409, and the event is delivered once.
func TestIdempotentTimeoutStaysPending(t *testing.T) {
	srv, records := testkit.StartRedis(t), testkit.StartRedis(t)
	// handlers-svc's tuning, with REDIS_URL's read_timeout=300ms.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true,
		ReadTimeout: 300 * time.Millisecond})
	idem := redis.NewClient(&redis.Options{Addr: records.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close(); _ = idem.Close() })
	url, _ := idemServer(t, rdb, idem, nil)
	if a := postIdem(t, url, `{"event":"warm","users":["alice"]}`); a.status != http.StatusOK {
		t.Fatalf("warm-up: %+v", a) // a pooled connection, so no dial is involved
	}

	body := `{"event":"e","users":["bob"]}`
	srv.Pause(t)
	a := postIdem(t, url, body, "k")
	srv.Continue()
	if a.status != http.StatusGatewayTimeout || errorCode(a.body) != proto.CodeTimeout || !strings.Contains(a.body, "409") {
		t.Fatalf("slow Redis: %+v, want 504 timeout naming the 409 of a retry", a)
	}
	check := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = check.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for xlen(t, check, "bob") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // a poll's interval
	}
	if n := xlen(t, check, "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events, want the 1 Redis took: the test did not reproduce a slow Redis", n)
	}
	for range 2 {
		if a := postIdem(t, url, body, "k"); a.status != http.StatusConflict || errorCode(a.body) != proto.CodeTimeout ||
			!strings.Contains(a.body, "outcome is unknown") {
			t.Fatalf("retry after 504: %+v, want 409 timeout", a)
		}
	}
	if n := xlen(t, check, "bob"); n != 1 {
		t.Fatalf("bob's stream holds %d events after the retries, want 1", n)
	}
}

// TestIdempotencyKeyValidation: a key is 1 to 64 bytes of visible ASCII,
// bare or as a structured-field string, given once; a bad one is refused
// with 400 and nothing dispatched.
func TestIdempotencyKeyValidation(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	url, _ := idemServer(t, rdb, rdb, nil)
	body := `{"event":"e","users":["bob"]}`
	bad := [][]string{
		{""}, {`""`}, {strings.Repeat("k", httpapi.MaxIdempotencyKey+1)}, {"a b"}, {"caf\u00e9"},
		{"a\tb"}, {`"a"b"`}, {`a\b`}, {"a", "b"},
	}
	for _, v := range bad {
		if a := postIdem(t, url, body, v...); a.status != http.StatusBadRequest || errorCode(a.body) != proto.CodeBadRequest ||
			!strings.Contains(a.body, httpapi.IdempotencyHeader) {
			t.Errorf("Idempotency-Key %q: %+v, want 400 bad_request naming the header", v, a)
		}
	}
	if n := xlen(t, rdb, "bob"); n != 0 {
		t.Fatalf("bob's stream holds %d events, want none dispatched with a bad key", n)
	}
	for _, v := range []string{strings.Repeat("k", httpapi.MaxIdempotencyKey), `"quoted-key"`, "{tag}x", "!~"} {
		if a := postIdem(t, url, body, v); a.status != http.StatusOK {
			t.Errorf("Idempotency-Key %q: %+v, want 200", v, a)
		}
	}

	// An API that keeps no records refuses the header, rather than
	// silently dispatching a retry twice.
	plain, _, _ := server(t)
	if a := postIdem(t, plain, body, "k"); a.status != http.StatusBadRequest || !strings.Contains(a.body, "not served") {
		t.Fatalf("API without records: %+v, want 400", a)
	}
}

// TestNoIdempotencyKeyUnchanged: without the header every request is
// dispatched, and no record is written.
func TestNoIdempotencyKeyUnchanged(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	url, api := idemServer(t, rdb, rdb, nil)
	body := `{"event":"e","users":["bob"]}`
	a, b := postIdem(t, url, body), postIdem(t, url, body)
	if a.status != http.StatusOK || b.status != http.StatusOK || a.body == b.body || b.replayed != "" {
		t.Fatalf("two requests without a key: %+v %+v, want two dispatches with their own positions", a, b)
	}
	if n := xlen(t, rdb, "bob"); n != 2 {
		t.Fatalf("bob's stream holds %d events, want 2", n)
	}
	keys, err := rdb.Keys(context.Background(), proto.IdempotencyKey("*")).Result()
	if err != nil || len(keys) != 0 || api.Replays() != 0 {
		t.Fatalf("records %v (%v), replays %d: want none without a key", keys, err, api.Replays())
	}
}

// TestIdempotentCluster: on a Redis Cluster a key's record is one key in
// the slot its name hashes to; a retry is replayed, and a dispatch that
// reached only some masters (504) keeps its key pending, so a retry does
// not deliver it twice to the users of the masters that are up.
func TestIdempotentCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	t.Cleanup(func() { // go-redis dials the gone master in the background for a while
		testkit.Eventually(t, 5*time.Second, "go-redis's dialers of the gone master ended", func() bool {
			buf := make([]byte, 1<<20)
			return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*ConnPool).tryDial"))
		})
	})
	rdb := c.Client(&redis.ClusterOptions{OnConnect: dispatch.OnConnect, MaxRetries: -1, DialerRetries: 1})
	url, api := idemServer(t, rdb, rdb, nil)

	down := c.NodeOf(proto.RunKey(proto.PartitionOf("alice")))
	bob := ""
	for i := 0; bob == ""; i++ {
		if u := fmt.Sprintf("bob%d", i); c.NodeOf(proto.RunKey(proto.PartitionOf(u))) != down {
			bob = u
		}
	}
	body := `{"event":"e","users":["alice","` + bob + `"]}`
	for _, k := range []string{"plain-key", "{tagged}key"} {
		first := postIdem(t, url, body, k)
		again := postIdem(t, url, body, k)
		if first.status != http.StatusOK || again.status != http.StatusOK || again.body != first.body || again.replayed != "true" {
			t.Fatalf("key %s: %+v then %+v, want 200 replayed", k, first, again)
		}
	}
	if n := xlen(t, rdb, bob); n != 2 || xlen(t, rdb, "alice") != 2 || api.Replays() != 2 {
		t.Fatalf("streams: %s %d, alice %d, replays %d; want 2, 2, 2", bob, n, xlen(t, rdb, "alice"), api.Replays())
	}

	// A key whose record lies on a master that stays up.
	k := ""
	for i := 0; k == ""; i++ {
		if s := fmt.Sprintf("partly-%d", i); c.NodeOf(proto.IdempotencyKey(s)) != down {
			k = s
		}
	}
	down.Stop()
	a := postIdem(t, url, body, k)
	if a.status != http.StatusGatewayTimeout || errorCode(a.body) != proto.CodeTimeout {
		t.Fatalf("one master down: %+v, want 504 timeout (partly delivered)", a)
	}
	if n := xlen(t, rdb, bob); n != 3 {
		t.Fatalf("%s's stream holds %d events, want 3: his master is up", bob, n)
	}
	if a := postIdem(t, url, body, k); a.status != http.StatusConflict || errorCode(a.body) != proto.CodeTimeout {
		t.Fatalf("retry after a partly delivered dispatch: %+v, want 409 timeout", a)
	}
	if n := xlen(t, rdb, bob); n != 3 {
		t.Fatalf("%s's stream holds %d events after the retry, want still 3", bob, n)
	}
}

// TestIdempotencyKeySharedWithGo: an Idempotency-Key and a Go caller's
// dispatch.Message.IdempotencyKey are one key: a Go Dispatch repeating
// a POST with its key and message gets the POST's positions, replayed,
// and a POST repeating a Go Dispatch (its body spaced otherwise) gets
// the Go call's 200, replayed; each delivered once.
func TestIdempotencyKeySharedWithGo(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	url, _ := idemServer(t, rdb, rdb, nil)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute})
	ctx := context.Background()

	first := postIdem(t, url, `{"event":"e","args":{"n":1},"users":["bob"]}`, "shared-1")
	if first.status != http.StatusOK {
		t.Fatalf("POST: %+v", first)
	}
	pos, err := d.Dispatch(ctx, dispatch.Message{Event: "e", Args: json.RawMessage(`{"n":1}`), Users: []string{"bob"}, IdempotencyKey: "shared-1"})
	if err != nil || !pos.Replayed || strings.TrimSpace(string(pos.JSON())) != first.body {
		t.Fatalf("Go repeat of a POST: %+v, %v; want the POST's %s, replayed", pos, err, first.body)
	}

	pos, err = d.Dispatch(ctx, dispatch.Message{Event: "e", Args: json.RawMessage(`{"n":2}`), Users: []string{"carol"}, IdempotencyKey: "shared-2"})
	if err != nil || pos.Replayed {
		t.Fatalf("Go first: %+v, %v", pos, err)
	}
	again := postIdem(t, url, "{ \"users\": [\"carol\"],\n \"event\": \"e\", \"args\": { \"n\": 2 } }", "shared-2")
	if again.status != http.StatusOK || again.replayed != "true" || again.body != strings.TrimSpace(string(pos.JSON())) {
		t.Fatalf("POST repeat of a Go call: %+v, want 200 %s replayed", again, pos.JSON())
	}
	for _, user := range []string{"bob", "carol"} {
		if n := xlen(t, rdb, user); n != 1 {
			t.Fatalf("%s's stream holds %d events, want 1", user, n)
		}
	}
}
