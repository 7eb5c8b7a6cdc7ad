package recovery

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestPubSubKilledHealsInPlace: under load, Redis drops every worker's
// pub/sub connection (CLIENT KILL TYPE pubsub) while every socket stays
// open; what was published until each worker resubscribed reached none of
// its sockets. On a Redis Cluster (E2E_REDIS=cluster) one master drops
// them each round, in turn: the sharded subscriptions of its partitions,
// and the shared channel's where it is on that master. Each worker resubscribes, checks its sockets against their
// streams and fills their gaps in place: no socket closes, no resync, no
// event lost or doubled, and the metrics say so.
func TestPubSubKilledHealsInPlace(t *testing.T) {
	rate := Rate(200)
	h := Start(t, Options{Users: UsersFor(rate)})
	h.StartLoad(LoadOptions{Rate: rate, Broadcasts: 10})
	connects, base := connects(h.Devices), h.Check.Stats()
	resubs := func() float64 { return h.RecoveryMetrics()["redis_resubscriptions"] }
	goal := EventsGoal(loadTests, 2000)
	for round := 0; round < 3 || h.Events() < goal; round++ {
		h.WaitEvents(200)
		before := resubs()
		n, err := h.KillPubSub(round)
		if err != nil || n < int64(h.Stack.Workers) {
			t.Fatalf("CLIENT KILL TYPE pubsub: %d killed, %v; want one per worker", n, err)
		}
		h.Fault()
		testkit.Eventually(t, Wait, "every worker resubscribed", func() bool {
			return resubs() >= before+float64(h.Stack.Workers)
		})
	}
	r := h.Settle()
	record(r)
	for i, d := range h.Devices {
		if d.Connects() != connects[i] {
			t.Errorf("%s connected %d times, want its one socket kept open", d.Name, d.Connects()-connects[i]+1)
		}
	}
	s := r.Stats
	if s.Resynced() != 0 || s.Resumes != base.Resumes || r.Metrics["resyncs"] != 0 {
		t.Fatalf("%d resyncs (gateway: %v), %d resumes: want none", s.Resynced(), r.Metrics["resyncs"], s.Resumes-base.Resumes)
	}
	if r.Metrics["redis_resubscriptions"] < float64(h.faults*h.Stack.Workers) || r.Metrics["gaps_healed"] == 0 {
		t.Fatalf("gateway %v: want a resubscription per worker per kill (%d kills) and gaps healed", r.Metrics, h.faults)
	}
	t.Logf("%d events checked through %d kills; gateway: %v", s.Events, h.faults, r.Metrics)
}

// TestRedisLinkStallHealed: a TCP fault proxy between the gateway and
// Redis stops every byte for a few seconds while handlers-svc (which
// reaches Redis directly) goes on dispatching; a device that drops
// meanwhile cannot resume (its streams cannot be read: 1013) and keeps
// trying. When the links are cut and the stall ends, the workers reconnect
// and fill every live socket's gap in place, and the device resumes: no
// resync, nothing lost.
func TestRedisLinkStallHealed(t *testing.T) {
	rate := Rate(200)
	// A window well beyond the stall and the reads that fill every
	// socket's gap after it: what is tested is that nothing is lost, not
	// how long the store keeps events.
	h := Start(t, Options{Users: UsersFor(rate), Proxy: true, Window: 30 * time.Second})
	h.StartLoad(LoadOptions{Rate: rate, Broadcasts: 10})
	goal := EventsGoal(loadTests, 2000)
	for round := 0; round < 1 || h.Events() < goal; round++ {
		h.WaitEvents(200)
		resubs := h.RecoveryMetrics()["redis_resubscriptions"]
		roamer := h.Devices[round%len(h.Devices)]
		refused := roamer.Closes(1013)
		h.Proxy.Stall(t)
		stalled := time.Now()
		h.Fault()
		roamer.Drop(0)
		// Messages flow meanwhile (confirmed by handlers-svc), and the
		// roaming device is refused until the store can be read again.
		acked := h.Check.Stats().Acked
		testkit.Eventually(t, 2*Wait, "events are dispatched and the roaming device is refused with 1013", func() bool {
			return h.Check.Stats().Acked > acked+int(rate) && roamer.Closes(1013) > refused
		})
		h.Proxy.Heal(t)
		healed := time.Now()
		testkit.Eventually(t, Wait, "every worker resubscribed and the roaming device resumed", func() bool {
			return h.RecoveryMetrics()["redis_resubscriptions"] >= resubs+float64(h.Stack.Workers) && roamer.Online()
		})
		h.WaitCaughtUp()
		t.Logf("round %d: stalled %s; resubscribed, resumed and caught up %s after", round,
			healed.Sub(stalled).Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
	}
	r := h.Settle()
	record(r)
	s := r.Stats
	if s.Resynced() != 0 || s.NotRecovered != 0 || r.Metrics["resyncs"] != 0 || r.Metrics["gaps_healed"] == 0 {
		t.Fatalf("resyncs %v, %d resumes not recovered, gateway %v: want none, and gaps healed", s.Resyncs, s.NotRecovered, r.Metrics)
	}
	t.Logf("%d events checked through %d stalls; %d resumes; gateway: %v", s.Events, h.faults, s.Resumes, r.Metrics)
}

// TestRedisLinkCutHealed: under load, a TCP fault proxy between the
// gateway and Redis closes every link of the gateway at once (the pub/sub
// connections and the pool that reads the streams alike) and refuses new
// ones for a while, as a network that drops a path does; handlers-svc
// (which reaches Redis directly) goes on dispatching. Reads in flight
// fail and are retried; a device that drops meanwhile is refused (1013).
// When links are taken again, every worker resubscribes and fills its live
// sockets' gaps in place, and the device resumes: the other devices keep
// their sockets, no resync, nothing lost.
func TestRedisLinkCutHealed(t *testing.T) {
	rate := Rate(200)
	// A window well beyond the cut, as in TestRedisLinkStallHealed.
	h := Start(t, Options{Users: UsersFor(rate), Proxy: true, Window: 30 * time.Second})
	h.StartLoad(LoadOptions{Rate: rate, Broadcasts: 10})
	goal := EventsGoal(loadTests, 2000)
	roamed := map[*Device]bool{}
	connects := connects(h.Devices)
	for round := 0; round < 2 || h.Events() < goal; round++ {
		h.WaitEvents(200)
		resubs := h.RecoveryMetrics()["redis_resubscriptions"]
		roamer := h.Devices[round%len(h.Devices)]
		roamed[roamer] = true
		refused := roamer.Closes(1013)
		h.Proxy.Cut()
		h.Fault()
		roamer.Drop(0)
		acked := h.Check.Stats().Acked
		testkit.Eventually(t, 2*Wait, "events are dispatched and the roaming device is refused with 1013", func() bool {
			return h.Check.Stats().Acked > acked+int(rate)/2 && roamer.Closes(1013) > refused
		})
		h.Proxy.Restore(t)
		testkit.Eventually(t, Wait, "every worker resubscribed and the roaming device resumed", func() bool {
			return h.RecoveryMetrics()["redis_resubscriptions"] >= resubs+float64(h.Stack.Workers) && roamer.Online()
		})
		h.WaitCaughtUp()
	}
	r := h.Settle()
	record(r)
	for i, d := range h.Devices {
		if !roamed[d] && d.Connects() != connects[i] {
			t.Errorf("%s connected %d times, want its one socket kept open through the cuts", d.Name, d.Connects()-connects[i]+1)
		}
	}
	s := r.Stats
	if s.Resynced() != 0 || s.NotRecovered != 0 || r.Metrics["resyncs"] != 0 || r.Metrics["gaps_healed"] == 0 {
		t.Fatalf("resyncs %v, %d resumes not recovered, gateway %v: want none, and gaps healed", s.Resyncs, s.NotRecovered, r.Metrics)
	}
	if r.Metrics["redis_resubscriptions"] < float64(h.faults*h.Stack.Workers) {
		t.Fatalf("gateway %v: want a resubscription per worker per cut (%d cuts)", r.Metrics, h.faults)
	}
	t.Logf("%d events checked through %d cuts; %d resumes; gateway: %v", s.Events, h.faults, s.Resumes, r.Metrics)
}

// TestRedisRestartWithoutPersistence: under load, Redis (without
// persistence) is killed and started again: every stream is gone. Live
// sockets get a resync, devices that resume get recovered:false, and none
// is ever told recovered:true across the loss; from the restart on, every
// event reaches every device once, in order. On a Redis Cluster
// (E2E_REDIS=cluster) the master of the broadcast stream's slot is the one
// restarted: the streams on it are gone, every other stream goes on.
func TestRedisRestartWithoutPersistence(t *testing.T) {
	rate := Rate(200)
	h := Start(t, Options{Users: UsersFor(rate)})
	h.StartLoad(LoadOptions{Rate: rate, Broadcasts: 10})
	goal := EventsGoal(loadTests, 2000)
	for round := 0; round < 1 || h.Events() < goal; round++ {
		h.WaitEvents(200)
		before := h.Check.Stats()
		epochs := h.Tops()
		h.Stack.Redis.Stop()
		h.Fault()
		// Half the devices drop while Redis is down and resume once it is
		// back, from positions of the lost store.
		for i, d := range h.Devices {
			if i%2 == round%2 {
				d.Drop(0)
			}
		}
		h.Stack.Redis.Start()
		if c := h.Stack.RedisCluster; c != nil {
			c.AwaitOK()
		}
		h.WaitOnline()
		h.WaitEvents(200)
		// Every device's chains started again in the new store: by a
		// resync, or a resume that did not recover.
		testkit.Eventually(t, Wait, "every device knows the store lost its events", func() bool {
			s := h.Check.Stats()
			return s.Resynced()-before.Resynced()+s.NotRecovered-before.NotRecovered >= len(h.Devices)
		})
		for st, top := range h.Tops() {
			if !h.OnRestarted(st) {
				if old, ok := epochs[st]; ok && old.Epoch != top.Epoch {
					t.Fatalf("%s, on another master, changed epoch %s to %s", st, old.Epoch, top.Epoch)
				}
				continue
			}
			if old, ok := epochs[st]; ok && old.Epoch == top.Epoch {
				t.Fatalf("%s kept epoch %s across a restart without persistence", st, top.Epoch)
			}
		}
	}
	r := h.Settle()
	record(r)
	s := r.Stats
	t.Logf("%d events checked through %d restarts; %d resyncs %v, %d resumes (%d not recovered); gateway: %v",
		s.Events, h.faults, s.Resynced(), s.Resyncs, s.Resumes, s.NotRecovered, r.Metrics)
	if s.Recovered > 0 {
		// A resume may recover only from a position in the new store.
		t.Logf("%d resumes recovered: each from a position of the new store, as the checker verified", s.Recovered)
	}
	if s.Resyncs["store lost events"] == 0 {
		t.Fatalf("no resync said the store lost events: %v", s.Resyncs)
	}
}
