package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestPresenceLeases: a socket's lease is in its user's presence key once
// it is connected, and gone by the time the worker logs the socket
// closed, which is after the removal, as any announcement of the close
// will be. With GATEWAY_PRESENCE_TTL 0 nothing is written.
func TestPresenceLeases(t *testing.T) {
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	leased := func(user, conn string) bool {
		_, err := rdb.ZScore(ctx, proto.UserPresenceKey(user), conn).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return err == nil
	}

	cfg := testConfig()
	cfg.NATSURL, cfg.RedisURL = n.URL(), rd.URL()
	core, logs := observer.New(zap.InfoLevel)
	r := startWorkerWith(t, cfg, 0, zap.New(core))
	a := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))
	b := testkit.Dial(t, "ws://"+r.addr+"/socket", token(t, "alice", time.Hour))
	testkit.Eventually(t, wait, "both of alice's sockets hold a lease", func() bool {
		return leased("alice", a.Conn) && leased("alice", b.Conn)
	})
	if v := gaugeValue(t, r.w, "switchboard_gateway_presence_leases"); v != 2 {
		t.Errorf("presence_leases = %v with two sockets leased, want 2", v)
	}

	a.CloseNormally()
	testkit.Eventually(t, wait, "the worker logs a's close", func() bool {
		for _, e := range logs.FilterMessage("socket closed").All() {
			if e.ContextMap()["conn"] == a.Conn {
				return true
			}
		}
		return false
	})
	if leased("alice", a.Conn) {
		t.Error("a's lease is still in Redis when the worker logs it closed")
	}
	if !leased("alice", b.Conn) {
		t.Error("b's lease went with a's")
	}
	if v := gaugeValue(t, r.w, "switchboard_gateway_presence_leases"); v != 1 {
		t.Errorf("presence_leases = %v once a closed, want 1", v)
	}

	// Presence off: a worker on another Redis writes no key.
	rdOff := testkit.StartRedis(t)
	off := redis.NewClient(&redis.Options{Addr: rdOff.Addr()})
	t.Cleanup(func() { _ = off.Close() })
	cfg.RedisURL, cfg.PresenceTTL = rdOff.URL(), 0
	r2 := startWorkerWith(t, cfg, 1, zap.New(core))
	testkit.Dial(t, "ws://"+r2.addr+"/socket", token(t, "carol", time.Hour))
	if r2.w.leases != nil {
		t.Error("a worker with presence off made leases")
	}
	if n := off.Exists(ctx, proto.UserPresenceKey("carol")).Val(); n != 0 {
		t.Error("a worker with presence off wrote carol's presence")
	}
	if hasMetric(t, r2.w, "switchboard_gateway_presence_leases") {
		t.Error("a worker with presence off exports presence_leases")
	}
}

// gaugeValue reads a gauge of the worker's registry.
func gaugeValue(t *testing.T, w *Worker, name string) float64 {
	t.Helper()
	fams, err := w.metrics.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.Metric) == 1 {
			return f.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// hasMetric reports whether the worker's registry has name.
func hasMetric(t *testing.T, w *Worker, name string) bool {
	t.Helper()
	fams, err := w.metrics.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return true
		}
	}
	return false
}
