package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestProbeLogsOutageOnce: with no dispatch at all, probes find Redis
// gone and log it once, however many fail, and a dispatch that fails
// after them logs nothing more; once Redis is back a probe logs the
// recovery, once.
func TestProbeLogsOutageOnce(t *testing.T) {
	srv := testkit.StartRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	d := dispatch.New(rdb, dispatch.Options{Window: dispatch.NoHistory}).LogOutages(zap.New(core))
	ctx := context.Background()
	if err := d.Probe(ctx); err != nil {
		t.Fatalf("probe with Redis up: %v", err)
	}
	srv.Stop()
	for i := range 3 {
		if err := d.Probe(ctx); err == nil {
			t.Fatalf("probe %d with Redis down: no error", i)
		}
	}
	if w := event.WireError(d.Broadcast(ctx, "e", nil)); w.Code != proto.CodeUnavailable {
		t.Fatalf("dispatch with Redis down: %s, want unavailable", w.Code)
	}
	if n := logs.FilterMessageSnippet("redis unreachable").Len(); n != 1 {
		t.Fatalf("outage logged %d times for 3 failed probes and a dispatch, want once", n)
	}
	srv.Start()
	// go-redis's pool fails at once for up to a second after failed dials.
	testkit.Eventually(t, 10*time.Second, "a probe reaches Redis again", func() bool { return d.Probe(ctx) == nil })
	for range 2 {
		if err := d.Probe(ctx); err != nil {
			t.Fatalf("probe after the restart: %v", err)
		}
	}
	if n := logs.FilterMessageSnippet("redis reachable again").Len(); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

// TestProbeCanceledRecordsNothing: a probe cut short by its caller (a
// shutdown) is no outage.
func TestProbeCanceledRecordsNothing(t *testing.T) {
	srv := testkit.StartRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	d := dispatch.New(newClient(t, srv.Addr()), dispatch.Options{Window: dispatch.NoHistory}).LogOutages(zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Probe(ctx); err == nil {
		t.Fatal("a canceled probe: no error")
	}
	if n := logs.Len(); n != 0 {
		t.Fatalf("a canceled probe logged %v", logs.All())
	}
}

// TestClusterProbeNamesPartitions: with one master of a cluster gone,
// probes log the outage once, naming exactly the partitions that master
// serves.
func TestClusterProbeNamesPartitions(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	ctx := context.Background()
	// As TestClusterOutageLoggedPerPartition: one dial per attempt, and
	// the dialers of the gone master end after the client is closed.
	t.Cleanup(func() {
		testkit.Eventually(t, 5*time.Second, "go-redis's dialers of the gone master ended", func() bool {
			buf := make([]byte, 1<<20)
			return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*ConnPool).tryDial"))
		})
	})
	rdb := c.Client(&redis.ClusterOptions{OnConnect: streams.OnConnect, MaxRetries: -1, DialerRetries: 1})
	core, logs := observer.New(zap.InfoLevel)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute}).LogOutages(zap.New(core))
	if err := d.Probe(ctx); err != nil { // every master reached once, so the slots are known
		t.Fatalf("probe with the cluster up: %v", err)
	}
	down := c.NodeOf(proto.RunKey(0))
	var want []string
	for p := range proto.Partitions {
		if c.NodeOf(proto.RunKey(p)) == down {
			want = append(want, fmt.Sprint(p))
		}
	}
	down.Stop()
	for i := range 3 {
		if err := d.Probe(ctx); err == nil {
			t.Fatalf("probe %d with a master down: no error", i)
		}
	}
	gone := logs.FilterMessageSnippet("redis unreachable").All()
	if len(gone) != 1 {
		t.Fatalf("outage logged %d times for 3 failed probes, want once", len(gone))
	}
	parts, _ := gone[0].ContextMap()["partitions"].([]any)
	var got []string
	for _, p := range parts {
		got = append(got, fmt.Sprint(p))
	}
	if !slices.Equal(got, want) {
		t.Errorf("outage logged for partitions %v, want %v (those of the gone master)", got, want)
	}
	if n := logs.FilterMessageSnippet("reachable again").Len(); n != 0 {
		t.Errorf("\"reachable again\" logged %d times while the master was still gone", n)
	}
}

// TestClusterProbeSparesLiveMasters: with one master of a cluster gone,
// a probe through the client handlers-svc builds (redisconn, go-redis's
// default redirects and dial retries) under handlers-svc's own 1 s limit
// finds down only the partitions of that master. go-redis fails every
// command of a cluster pipeline when the deadline passes in its retry
// back-off, those answered by the live masters too: one pipeline for all
// partitions had every partition down at each probe, and the partitions
// that dispatches still reached logged "reachable again" and "redis
// unreachable" every second.
func TestClusterProbeSparesLiveMasters(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	t.Cleanup(func() {
		testkit.Eventually(t, 10*time.Second, "go-redis's dialers of the gone master ended", func() bool {
			buf := make([]byte, 1<<20)
			return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*ConnPool).tryDial"))
		})
	})
	rdb, err := redisconn.New(c.ClusterURL(), redisconn.Tuning{NoRetries: true, ContextTimeoutEnabled: true, OnConnect: streams.OnConnect})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	core, logs := observer.New(zap.InfoLevel)
	d := dispatch.New(rdb, dispatch.Options{Window: time.Minute}).LogOutages(zap.New(core))
	probe := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second) // handlers-svc's redisProbeLimit
		defer cancel()
		return d.Probe(ctx)
	}
	if err := probe(); err != nil {
		t.Fatalf("probe with the cluster up: %v", err)
	}
	down := c.NodeOf(proto.RunKey(0))
	var want []string
	for p := range proto.Partitions {
		if c.NodeOf(proto.RunKey(p)) == down {
			want = append(want, fmt.Sprint(p))
		}
	}
	down.Stop()
	for i := range 3 {
		if err := probe(); err == nil {
			t.Fatalf("probe %d with a master down: no error", i)
		}
	}
	gone := logs.FilterMessageSnippet("redis unreachable").All()
	if len(gone) != 1 {
		t.Fatalf("outage logged %d times for 3 failed probes, want once", len(gone))
	}
	parts, _ := gone[0].ContextMap()["partitions"].([]any)
	var got []string
	for _, p := range parts {
		got = append(got, fmt.Sprint(p))
	}
	if !slices.Equal(got, want) {
		t.Errorf("outage logged for partitions %v, want %v (those of the gone master)", got, want)
	}
}
