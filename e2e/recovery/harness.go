package recovery

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/e2e/seqcheck"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// Wait is how long a test waits for anything that should happen promptly.
const Wait = 20 * time.Second

// settleTimeout bounds the wait, once the load stopped, until every device
// has every confirmed event.
const settleTimeout = 60 * time.Second

// Options tune a Harness.
type Options struct {
	Workers int           // gateway workers (default 2)
	Users   int           // users (default 3)
	Devices int           // devices per user (default 2 and 3 in turn), spread over the workers
	Window  time.Duration // HISTORY_WINDOW of both services (default 10s)
	Env     []string      // more gateway environment
	// Proxy puts a fault Proxy between the gateway and Redis; handlers-svc
	// and the test reach Redis directly.
	Proxy bool
}

// Harness is a stack, devices of its users, a checker that sees all they
// process, and the load that dispatches to them.
type Harness struct {
	T       *testing.T
	Stack   *testkit.Stack
	Check   *seqcheck.Checker
	Users   []string
	Devices []*Device
	Proxy   *Proxy                // nil unless Options.Proxy
	RDB     redis.UniversalClient // straight to Redis, as handlers-svc writes
	Window  time.Duration

	load   *Load
	poster *testkit.Client
	posted int
	start  time.Time
	faults int
}

// Start starts the stack and every device, and waits until they are all
// connected.
func Start(t *testing.T, o Options) *Harness {
	t.Helper()
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Users == 0 {
		o.Users = 3
	}
	if o.Window == 0 {
		o.Window = 10 * time.Second
	}
	h := &Harness{T: t, Check: seqcheck.New(), Window: o.Window, start: time.Now()}
	shared := []string{"HISTORY_WINDOW=" + o.Window.String(), "LOG_LEVEL=info"}
	// No rate limits: the load and the devices' reconnects, all from one
	// address, are far above what one client may do.
	limits := []string{"GATEWAY_RATE_LIMIT=0", "GATEWAY_USER_RATE_LIMIT=0", "GATEWAY_IP_UPGRADE_RATE=0"}
	env := append(append(limits, shared...), o.Env...)
	// Nor limits on what one sender pushes to others (handlers-svc/limit):
	// the matrix tests recovery, not limits, and a refused post would only
	// thin the load. At SOAK_RATE=600 an author reaches about 200 users a
	// second, under the default 1,000, but Message's 16 KB messages to one
	// user (9.6 MB in TestResumeLargeBacklog) are far over the 64 KiB/s one
	// sender may send one recipient.
	handlersEnv := append([]string{"HANDLERS_SEND_BYTES_PER_SEC=0", "HANDLERS_RECIPIENTS_PER_SEC=0"}, shared...)
	if testkit.RedisClusterMode() {
		// The stack starts the cluster: E2E_REDIS=cluster (make e2e-cluster).
		if o.Proxy {
			t.Skipf("%s=cluster: the fault proxy stands in front of one Redis server", testkit.RedisModeEnv)
		}
		h.Stack = testkit.StartStack(t, testkit.StackOptions{Workers: o.Workers, Env: env, HandlersEnv: handlersEnv})
		h.RDB = h.Stack.RedisCluster.Client(&redis.ClusterOptions{MaxRetries: -1, OnConnect: streams.OnConnect})
	} else {
		rs := testkit.StartRedis(t)
		if o.Proxy {
			h.Proxy = StartProxy(t, rs.Addr())
			env = append(env, "REDIS_URL=redis://"+h.Proxy.Addr+"/0")
		}
		h.Stack = testkit.StartStack(t, testkit.StackOptions{Workers: o.Workers, Env: env, HandlersEnv: handlersEnv, Redis: rs})
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, OnConnect: streams.OnConnect})
		t.Cleanup(func() { _ = rdb.Close() })
		h.RDB = rdb
	}
	for u := range o.Users {
		user := fmt.Sprintf("user%d", u)
		h.Users = append(h.Users, user)
		devices := o.Devices
		if devices == 0 {
			devices = 2 + u%2
		}
		for d := range devices {
			h.AddDevice(user, DeviceOptions{Worker: (u + d) % o.Workers})
		}
	}
	h.WaitOnline()
	return h
}

// AddDevice adds a device of user and starts it.
func (h *Harness) AddDevice(user string, o DeviceOptions) *Device {
	n := 0
	for _, d := range h.Devices {
		if d.User == user {
			n++
		}
	}
	d := newDevice(fmt.Sprintf("%s/d%d", user, n), user, h.Stack.URL(), h.Stack.Token(user), h.Check, o)
	h.Devices = append(h.Devices, d)
	d.start()
	h.T.Cleanup(d.close)
	return d
}

// UserDevices returns the devices of user.
func (h *Harness) UserDevices(user string) []*Device {
	var out []*Device
	for _, d := range h.Devices {
		if d.User == user {
			out = append(out, d)
		}
	}
	return out
}

// WaitOnline waits until every device has a socket.
func (h *Harness) WaitOnline() {
	h.T.Helper()
	testkit.Eventually(h.T, Wait, "every device is connected", func() bool {
		for _, d := range h.Devices {
			if !d.Online() {
				return false
			}
		}
		return true
	})
}

// StartLoad starts dispatching at o's rates to every user in turn; Settle
// stops it.
func (h *Harness) StartLoad(o LoadOptions) *Load {
	if o.Users == nil {
		o.Users = h.Users
	}
	h.load = startLoad(h.Check, h.Stack.URL(), h.Stack.Token, h.RDB, h.Window, o)
	h.T.Cleanup(h.load.Stop)
	return h.load
}

// Fault counts one fault injected, for the report.
func (h *Harness) Fault() { h.faults++ }

// Events returns how many events the devices have processed.
func (h *Harness) Events() int { return h.Check.Stats().Events }

// WaitEvents waits until the devices have processed n more events than
// now: the load flows.
func (h *Harness) WaitEvents(n int) {
	h.T.Helper()
	target := h.Events() + n
	testkit.Eventually(h.T, Wait, fmt.Sprintf("the devices processed %d more events", n), func() bool {
		return h.Events() >= target
	})
}

// Post sends n posts mentioning users through a socket of its own and
// waits until each is confirmed; the test fails if one is not.
func (h *Harness) Post(n int, users ...string) {
	h.T.Helper()
	h.send(n, users, func(id string) (string, any) {
		return "postUpdated", map[string]any{"post": id, "mentions": users}
	})
}

// Message sends n chat messages to user, like Post, each of about size
// bytes: up to 16 KB, in characters of 4 bytes (a text has at most 4000).
func (h *Harness) Message(n int, user string, size int) {
	h.T.Helper()
	pad := strings.Repeat("\U0001F4E6", min(max(size/4-8, 1), 3980))
	h.send(n, []string{user}, func(id string) (string, any) {
		return "sendMessage", map[string]any{"to": user, "text": id + " " + pad}
	})
}

// Blob dispatches n events of about size bytes to user as a backend does
// (the script handlers-svc runs, from the test), and confirms each by the
// position it was given; the test fails if one is not recorded.
func (h *Harness) Blob(n int, user string, size int) {
	h.T.Helper()
	pad := strings.Repeat("x", size)
	for range n {
		h.posted++
		id := fmt.Sprintf("q%d", h.posted)
		h.Check.Dispatching(id, seqcheck.UserStream(user))
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		_, _, err := streams.Publish(ctx, h.RDB, h.Window, &proto.Dispatch{Event: "blob", Users: []string{user},
			Args: json.RawMessage(`{"id":"` + id + `","pad":"` + pad + `"}`)})
		cancel()
		if err != nil {
			h.Check.Failed(id)
			h.T.Fatalf("blob %s: %v", id, err)
		}
		h.Check.Acked(id)
	}
}

// Transient dispatches an event of about size bytes to one connection, as
// a backend does: transient, it has no position and is never replayed.
func (h *Harness) Transient(conn string, size int) {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	_, _, err := streams.Publish(ctx, h.RDB, h.Window, &proto.Dispatch{Event: "blob", Conns: []string{conn},
		Args: json.RawMessage(`{"pad":"` + strings.Repeat("x", size) + `"}`)})
	if err != nil {
		h.T.Fatalf("transient dispatch: %v", err)
	}
}

// send sends n requests that dispatch to users, built by req from their
// ids, and waits until each is confirmed.
func (h *Harness) send(n int, users []string, req func(id string) (string, any)) {
	h.T.Helper()
	if h.poster == nil {
		h.poster = h.Stack.Dial("poster")
	}
	sts := make([]seqcheck.Stream, len(users))
	for i, u := range users {
		sts[i] = seqcheck.UserStream(u)
	}
	for n > 0 {
		batch := min(n, 32) // under GATEWAY_MAX_INFLIGHT
		ids := make([]string, batch)
		for i := range ids {
			h.posted++
			ids[i] = fmt.Sprintf("q%d", h.posted)
			h.Check.Dispatching(ids[i], sts...)
			event, args := req(ids[i])
			h.poster.Send(event, args, ids[i])
		}
		for _, id := range ids {
			if f := h.poster.ExpectRef(Wait, id); f.Event != proto.EventAck {
				h.Check.Failed(id)
				h.T.Fatalf("post %s: %s %s", id, f.Event, f.Args)
			}
			h.Check.Acked(id)
		}
		n -= batch
	}
}

// WaitCaughtUp waits until every device has processed its streams up to
// where they are now, while events may keep coming.
func (h *Harness) WaitCaughtUp() {
	h.T.Helper()
	tops := h.Tops()
	testkit.Eventually(h.T, Wait, "every device caught up with its streams", func() bool {
		return len(h.Check.Lagging(tops)) == 0
	})
}

// KillPubSub has Redis drop its pub/sub connections (CLIENT KILL TYPE
// pubsub) and returns how many it dropped: on a Redis Cluster, one
// master's, the round-th in turn.
func (h *Harness) KillPubSub(round int) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	c := h.Stack.RedisCluster
	if c == nil {
		return h.RDB.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	}
	node := redis.NewClient(&redis.Options{Addr: c.Nodes[round%len(c.Nodes)].Addr(), MaxRetries: -1})
	defer node.Close()
	return node.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
}

// OnRestarted reports whether stream st is held by h.Stack.Redis: every
// stream on one Redis; on a Redis Cluster, those of the partitions whose
// master it is.
func (h *Harness) OnRestarted(st seqcheck.Stream) bool {
	c := h.Stack.RedisCluster
	if c == nil || st == seqcheck.Broadcast {
		return true // the broadcast stream's master is the one Stack.Redis names
	}
	for _, u := range h.Users {
		if st == seqcheck.UserStream(u) {
			return c.NodeOf(proto.UserMetaKey(u)) == h.Stack.Redis
		}
	}
	return true
}

// Tops reads the top of every user's stream and of the broadcast stream
// from Redis, for the streams that have one.
func (h *Harness) Tops() map[seqcheck.Stream]proto.Pos {
	metas := []string{proto.BroadcastMetaKey}
	for _, u := range h.Users {
		metas = append(metas, proto.UserMetaKey(u))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	tops, err := streams.Tops(ctx, h.RDB, metas)
	out := map[seqcheck.Stream]proto.Pos{}
	if err != nil {
		return out
	}
	for i, top := range tops {
		if top.Epoch == "" {
			continue
		}
		if i == 0 {
			out[seqcheck.Broadcast] = top
		} else {
			out[seqcheck.UserStream(h.Users[i-1])] = top
		}
	}
	return out
}

// Result is what one test of the matrix did, for the soak report.
type Result struct {
	Name     string
	Users    int
	Devices  int
	Duration time.Duration
	Faults   int
	Stats    seqcheck.Stats
	Skipped  int64              // posts the load could not send: every author was busy
	Metrics  map[string]float64 // the gateway's recovery counters at the end
}

// Settle stops the load, waits until every device is connected, at the
// tops of its streams and has every confirmed event dispatched since its
// chain began, and fails the test on any violation the checker recorded.
func (h *Harness) Settle() Result {
	h.T.Helper()
	var skipped int64
	if h.load != nil {
		h.load.Stop()
		skipped = h.load.Skipped()
	}
	deadline := time.Now().Add(settleTimeout)
	for {
		n, missing := h.Check.Pending(10)
		behind := h.Check.Behind(h.Tops())
		if n == 0 && len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			h.T.Fatalf("after %s: %d confirmed events missing (%v); behind: %s; checker: %v", settleTimeout,
				n, missing, strings.Join(behind, "; "), h.Check.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := h.Check.Err(); err != nil {
		h.T.Fatal(err)
	}
	return Result{Name: h.T.Name(), Users: len(h.Users), Devices: len(h.Devices), Duration: time.Since(h.start), Faults: h.faults, Stats: h.Check.Stats(),
		Skipped: skipped, Metrics: h.RecoveryMetrics()}
}

// recoveryMetrics are the gateway's counters of recovery, summed over its
// workers, as Result.Metrics has them.
var recoveryMetrics = []struct{ key, name, label, value string }{
	{"resumes_recovered", "switchboard_gateway_resumes_total", "outcome", "recovered"},
	{"resumes_store_lost", "switchboard_gateway_resumes_total", "outcome", "store_lost"},
	{"resumes_expired", "switchboard_gateway_resumes_total", "outcome", "expired"},
	{"resumes_too_many", "switchboard_gateway_resumes_total", "outcome", "too_many"},
	{"resumes_invalid_position", "switchboard_gateway_resumes_total", "outcome", "invalid_position"},
	{"events_replayed", "switchboard_gateway_events_replayed_total", "", ""},
	{"gaps_healed", "switchboard_gateway_gaps_healed_total", "", ""},
	{"gap_events_filled", "switchboard_gateway_gap_events_filled_total", "", ""},
	{"resyncs", "switchboard_gateway_resyncs_total", "", ""},
	{"duplicates_dropped", "switchboard_gateway_duplicates_dropped_total", "", ""},
	{"redis_resubscriptions", "switchboard_gateway_redis_resubscriptions_total", "", ""},
	{"slow_consumer_closes", "switchboard_gateway_slow_consumer_closes_total", "", ""},
}

// RecoveryMetrics returns the gateway's recovery counters, summed over its
// live workers (a restarted worker's start again at zero).
func (h *Harness) RecoveryMetrics() map[string]float64 {
	ss, err := testkit.ReadMetrics("http://" + h.Stack.MetricsAddr + "/metrics")
	out := map[string]float64{}
	if err != nil {
		return out
	}
	for _, m := range recoveryMetrics {
		if m.label == "" {
			out[m.key] = ss.Sum(m.name)
		} else {
			out[m.key] = ss.Sum(m.name, m.label, m.value)
		}
	}
	return out
}

// EventsGoal returns how many events a load-bearing test of the matrix
// pushes through its faults: its share of SOAK_EVENTS (default
// defaultSoakEvents, a short run), at least min.
func EventsGoal(tests, min int) int {
	total := defaultSoakEvents
	if v, err := strconv.Atoi(os.Getenv("SOAK_EVENTS")); err == nil && v > 0 {
		total = v
	}
	return max(total/tests, min)
}

// defaultSoakEvents is SOAK_EVENTS when it is not set: what `make test`
// runs.
const defaultSoakEvents = 24000

// UsersFor returns how many users a load of rate posts per second is
// spread over: enough that a user gets about 70 events a second, so a
// device away for a second or two misses far fewer than
// GATEWAY_MAX_REPLAY.
func UsersFor(rate float64) int { return max(3, int(rate/35)) }

// Rate returns the posts per second the load-bearing tests send: SOAK_RATE,
// or def.
func Rate(def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv("SOAK_RATE"), 64); err == nil && v > 0 {
		return v
	}
	return def
}
