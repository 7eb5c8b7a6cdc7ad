package fanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Timing of the stall probe (docs/protocol.md section 4): a subscription
// that stops delivering while its connection stays up (a stalled network
// path, a wedged proxy, a frozen Redis) is noticed StallAfter (ProbeEvery +
// ProbeWithin, 1.5 s) after the last probe came back, at most 2 s after
// the stall began: the contract's 2 s.
const (
	// ProbeEvery is how often the worker publishes a probe on its own
	// probe channel, which its subscription also listens to.
	ProbeEvery = 500 * time.Millisecond
	// ProbeWithin is how late, past ProbeEvery, the next probe may come
	// back before the subscription counts as stalled.
	ProbeWithin = time.Second
	// StallAfter is how long a subscription may go without a probe coming
	// back before it counts as stalled.
	StallAfter = ProbeEvery + ProbeWithin
)

// ProbeWith has the Subscriber publish its probes through rdb instead of
// the client it subscribes with (tests put a faulty path in front of the
// subscription only).
func ProbeWith(rdb redis.UniversalClient) Option { return func(s *Subscriber) { s.probe.rdb = rdb } }

// ProbeTiming changes the probe's timing (tests).
func ProbeTiming(every, within time.Duration) Option {
	return func(s *Subscriber) { s.probe.every, s.probe.within = every, within }
}

// Stalls returns how many times the subscription stopped delivering while
// its connection stayed up, and was re-established.
func (s *Subscriber) Stalls() uint64 { return s.stalls.Load() }

// Probed returns the number of the last probe the subscription delivered
// back: it grows every ProbeEvery while the subscription is healthy.
func (s *Subscriber) Probed() uint64 { return s.probe.seen.Load() }

// prober publishes numbered probes through a command connection and
// watches them come back through the subscription.
type prober struct {
	every, within time.Duration
	rdb           redis.UniversalClient
	sent          uint64        // the prober's own
	seen          atomic.Uint64 // the highest probe received, set by the reader
}

// line is one subscription connection's state that its reader and its
// prober share: whether it is live, its probe channel and probes, and its
// current PubSub. The Subscriber's own (the shared channel's) is embedded
// in it; on a Redis Cluster in per-user mode each partition has one more
// (shards.go), probed on a sharded channel in its slot.
type line struct {
	live         atomic.Bool
	waiting      atomic.Bool // its reader waits for room in the queue (enqueue)
	waited       atomic.Bool // it has since the prober last looked
	probe        prober
	probeChannel string
	sharded      bool   // probes with SPUBLISH
	name         string // for logs: "" for the shared channel's
	psState             // the reader's connection, which the prober closes on a stall
}

// probeChannelName returns a channel no other subscription listens to,
// starting with prefix.
func probeChannelName(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails, per crypto/rand
	return prefix + "probe:" + hex.EncodeToString(b[:])
}

// wait records that l's reader waits for room in the queue.
func (l *line) wait() {
	l.waiting.Store(true)
	l.waited.Store(true)
}

// probeSeen records a probe the subscription delivered.
func (l *line) probeSeen(payload string) {
	n, err := strconv.ParseUint(payload, 10, 64)
	if err != nil {
		return
	}
	for {
		seen := l.probe.seen.Load()
		if n <= seen || l.probe.seen.CompareAndSwap(seen, n) {
			return
		}
	}
}

// current records the PubSub the reader uses now, for the prober to close
// on a stall (nil between connections).
func (l *line) current(ps *redis.PubSub) {
	l.psMu.Lock()
	defer l.psMu.Unlock()
	l.ps = ps
}

// probeLoop publishes a probe on l every interval while l is live, and
// when none has come back for ProbeEvery + ProbeWithin declares it
// stalled: not live (so /readyz answers 503), and its connection closed,
// so its reader subscribes anew and the worker fills the gap from the
// streams. That covers a stalled path to Redis (probes accepted, never
// delivered) and a Redis that stopped answering (probes not even
// accepted), which the reader alone would notice only after
// healthInterval.
//
// The probes are published by a goroutine of their own, so that a publish
// held up by a hung Redis (the client's own timeouts may be seconds) does
// not hold up the watch: a probe not sent is a probe not back.
func (s *Subscriber) probeLoop(ctx context.Context, l *line) {
	t := time.NewTicker(l.probe.every)
	defer t.Stop()
	send := make(chan uint64, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { l.publishProbes(ctx, send) })
	var heard time.Time // when a probe last came back, or the watch began
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !l.live.Load() {
			heard = time.Time{} // a new subscription starts a new watch
			continue
		}
		now := time.Now()
		if n := l.probe.seen.Load(); n != seen || heard.IsZero() || l.waiting.Load() || l.waited.Swap(false) {
			seen, heard = n, now
		}
		if silent := now.Sub(heard); silent > l.probe.every+l.probe.within {
			s.stalled(l, silent)
			heard = time.Time{}
			continue
		}
		l.probe.sent++
		select {
		case send <- l.probe.sent:
		default: // the last one is still being published
		}
	}
}

// publishProbes publishes each probe number it receives on l's probe
// channel until ctx is done.
func (l *line) publishProbes(ctx context.Context, send <-chan uint64) {
	for {
		var n uint64
		select {
		case <-ctx.Done():
			return
		case n = <-send:
		}
		pctx, cancel := context.WithTimeout(ctx, l.probe.every)
		body := strconv.FormatUint(n, 10)
		if l.sharded {
			_ = l.probe.rdb.SPublish(pctx, l.probeChannel, body).Err()
		} else {
			_ = l.probe.rdb.Publish(pctx, l.probeChannel, body).Err()
		}
		cancel()
	}
}

// stalled takes down a subscription that stopped delivering.
func (s *Subscriber) stalled(l *line, silent time.Duration) {
	s.stalls.Add(1)
	l.live.Store(false)
	fields := []zap.Field{zap.Duration("silent", silent), zap.String("probe_channel", l.probeChannel)}
	if l.name != "" { // a shard's; the shared channel's line has none
		fields = append(fields, zap.String("line", l.name))
	}
	s.log.Error("redis subscription stalled: a probe did not come back; reconnecting", fields...)
	l.psMu.Lock()
	ps := l.ps
	l.psMu.Unlock()
	if ps != nil {
		_ = ps.Close() // the reader's Receive fails, and it subscribes anew
	}
}

// psState is the reader's current connection, shared with the prober.
type psState struct {
	psMu sync.Mutex
	ps   *redis.PubSub
}
