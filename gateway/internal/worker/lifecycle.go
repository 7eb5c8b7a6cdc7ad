package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/announced"
	"github.com/switchboard/switchboard/gateway/internal/metrics"
	"github.com/switchboard/switchboard/gateway/internal/presence"
	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/logevery"
	"github.com/switchboard/switchboard/proto"
)

// lifecycleLogEvery is how often, at most, failed lifecycle publishes are
// logged: during a NATS outage every socket that opens or closes fails one.
const lifecycleLogEvery = 30 * time.Second

// lifecycleQueue is how many lifecycle messages wait for the publisher at
// most: a worker's whole drain, or a mass reconnect, with room to spare
// while NATS takes them at its usual pace; beyond, NATS is stalled and
// they are dropped.
const lifecycleQueue = LifecycleQueue

// LifecycleQueue is lifecycleQueue, for the supervisor's bound on the
// sockets it keeps per worker: open ones plus those closed whose
// disconnect is not yet published.
const LifecycleQueue = 16384

// lifecycleBatch is the most messages the publisher takes at once: what
// it records for the supervisor (package announced) is written once per
// batch, and a dead predecessor's orphans are announced this many at a
// time, between the live sockets' messages.
const lifecycleBatch = 256

// announceRetry is how soon the publisher tries again to write records
// the supervisor's pipe did not take (it was full).
const announceRetry = 100 * time.Millisecond

// announceWait is how long the publisher waits, at most, for a full pipe
// to take the records of a batch's disconnects before it publishes them:
// a disconnect published before its record reached the supervisor would
// be announced again by the replacement of a worker killed then. Past
// it, the supervisor is taken for stalled: the disconnects are published
// without waiting until the pipe takes everything again (a kill in that
// window may announce some twice).
const announceWait = time.Second

// errAnnounceStalled is logged when the supervisor's pipe stays full past
// announceWait.
var errAnnounceStalled = errors.New("announce pipe full: the supervisor is not reading; a worker killed now may have some disconnects announced twice")

// errLifecycleQueueFull is the publish error of a message dropped because
// the queue was full: NATS has stopped taking what the worker writes.
var errLifecycleQueueFull = errors.New("lifecycle queue full: nats is not taking messages")

// lifecycle publishes the connect and disconnect of each socket on NATS
// (docs/protocol.md section 3) for handlers-svc's hooks, fire and forget.
// A socket only queues its message (never waiting): one goroutine (run)
// publishes them in order. nats.go's Publish may block: once its 32 KB
// buffer is full it writes to the connection under its lock, and to a
// NATS that has stopped reading (a stalled path) for up to its flusher
// timeout, a minute; so no socket publishes itself. While NATS is down
// the publish is refused at once (the worker keeps no reconnect buffer);
// while it is stalled the queue fills and what does not fit is dropped.
// A message is sent at most once.
type lifecycle struct {
	w      *Worker
	failed *logevery.Log
	queue  chan lifecycleItem
	// stopped is set once run has returned: what is queued then (a
	// socket still closing after a drain's deadline) is counted failed,
	// as nats.go refused it on the closed connection before.
	stopped atomic.Bool

	// rec, when not nil, records for the supervisor the sockets whose
	// connect was published and, before it is, each disconnect, so that
	// should the worker die the supervisor hands the sockets still
	// announced to its replacement (package announced). Only run uses it.
	rec *announced.Writer
	// orphans are the sockets of the worker this one replaces, which died
	// with their connects announced: run announces their disconnects
	// once serving is closed, lifecycleBatch at a time.
	orphans []announced.Orphan
	serving chan struct{} // closed by serve
	// inBatch holds, while run handles a batch, the sockets whose
	// disconnect is in it and whose connect was not announced before it:
	// if the batch publishes the connect, its record is left out.
	inBatch map[*bool]struct{}
	// stalled is set when the pipe did not take a batch's disconnects
	// within announceWait, until it takes every record again: run does
	// not wait for it meanwhile.
	stalled bool
}

// lifecycleItem is one queued message, or, with flushed set, a marker
// that run closes once everything queued before it was handed to NATS.
type lifecycleItem struct {
	m *proto.Lifecycle
	// announced is the socket's: run sets it once the socket's connect
	// was handed to NATS, and publishes its disconnect only then. Only
	// run touches it.
	announced *bool
	// leased, for a connect with presence on, is closed once the
	// socket's presence lease is written: run publishes the connect only
	// then, or at leaseBy, so a hook that counts the user's sockets finds
	// this one, and a stalled Redis holds the connects at most
	// presenceRemoveWait past their queuing (the socket itself waits for
	// nothing).
	leased  *presence.Count
	leaseBy time.Time
	flushed chan struct{}
	// lost marks the disconnect of an orphan: a socket of the dead
	// worker this one replaces.
	lost bool
}

func newLifecycle(w *Worker) *lifecycle {
	return &lifecycle{
		w:       w,
		failed:  logevery.New(w.log.Named("lifecycle"), "lifecycle message not published", lifecycleLogEvery),
		queue:   make(chan lifecycleItem, lifecycleQueue),
		serving: make(chan struct{}),
		inBatch: make(map[*bool]struct{}),
	}
}

// serve has run announce the orphans: NATS is up and the worker serves.
func (l *lifecycle) serve() { close(l.serving) }

// on reports whether connects and disconnects are published.
func (l *lifecycle) on() bool { return l.w.cfg.LifecycleHooks }

// connected queues the connect of c, which resumed when its client asked
// to resume, to be published once its presence lease is written (leased,
// nil with presence off) with the user's sockets then, and returns what socketClosed hands to
// disconnected (nil with the hooks off): the disconnect is published
// only for a socket whose connect was.
func (l *lifecycle) connected(c *ws.Conn, resumed bool, leased *presence.Count) *bool {
	if !l.on() {
		return nil
	}
	announced := new(bool)
	l.enqueue(lifecycleItem{announced: announced, leased: leased, leaseBy: time.Now().Add(presenceRemoveWait), m: &proto.Lifecycle{
		Type: proto.LifecycleTypeConnect, User: c.User(), Conn: c.ID(), Worker: l.w.index,
		At: time.Now().UnixMilli(), Resumed: resumed,
	}})
	return announced
}

// disconnected queues the disconnect of c, closed with code and why, the
// bounded close reason the worker counts it under (metrics.CloseReason),
// and the user's sockets left with a presence lease (nil: not known);
// announced is what connected returned, nil for a socket never announced.
func (l *lifecycle) disconnected(c *ws.Conn, announced *bool, code int, why string, left *int) {
	if announced == nil {
		return
	}
	l.enqueue(lifecycleItem{announced: announced, m: &proto.Lifecycle{
		Type: proto.LifecycleTypeDisconnect, User: c.User(), Conn: c.ID(), Worker: l.w.index,
		At: time.Now().UnixMilli(), Code: code, Reason: why, Sockets: left,
	}})
}

// enqueue hands it to run, or counts it failed when the queue is full.
func (l *lifecycle) enqueue(it lifecycleItem) {
	if l.stopped.Load() {
		l.counted(it.m, nats.ErrConnectionClosed)
		return
	}
	select {
	case l.queue <- it:
	default:
		l.counted(it.m, errLifecycleQueueFull)
	}
}

// run publishes what is queued, in order, in batches of up to
// lifecycleBatch, and the orphans' disconnects once the worker serves,
// until ctx ends (after the drain's flush); what is left then is counted
// failed.
func (l *lifecycle) run(ctx context.Context) {
	batch := make([]lifecycleItem, 0, lifecycleBatch)
	for {
		var lost <-chan struct{}
		if len(l.orphans) > 0 {
			lost = l.serving
		}
		var retry <-chan time.Time
		var t *time.Timer
		if l.rec != nil && l.rec.Pending() {
			t = time.NewTimer(announceRetry)
			retry = t.C
		}
		select {
		case <-ctx.Done():
			l.stopped.Store(true)
			for {
				batch = l.take(batch[:0])
				if len(batch) == 0 {
					l.record()
					return
				}
				l.handle(batch, nats.ErrConnectionClosed)
			}
		case it := <-l.queue:
			l.handle(l.take(append(batch[:0], it)), nil)
		case <-lost:
			l.handle(l.lostBatch(batch[:0]), nil)
		case <-retry:
			l.record()
		}
		if t != nil {
			t.Stop()
		}
	}
}

// take appends to batch what is queued, up to lifecycleBatch.
func (l *lifecycle) take(batch []lifecycleItem) []lifecycleItem {
	for len(batch) < lifecycleBatch {
		select {
		case it := <-l.queue:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// lostBatch appends to batch the disconnects of up to lifecycleBatch
// orphans, code 1006 and reason worker_lost, at when their worker's death
// was noticed; with presence on, their leases' removals are queued first,
// in one write, and each disconnect waits for its own as a connect does.
func (l *lifecycle) lostBatch(batch []lifecycleItem) []lifecycleItem {
	n := min(len(l.orphans), lifecycleBatch)
	by := time.Now().Add(presenceRemoveWait)
	for _, o := range l.orphans[:n] {
		var removed *presence.Count
		if l.w.leases != nil {
			removed = l.w.leases.Forget(o.User, o.Conn)
		}
		announced := true
		batch = append(batch, lifecycleItem{announced: &announced, leased: removed, leaseBy: by, lost: true, m: &proto.Lifecycle{
			Type: proto.LifecycleTypeDisconnect, User: o.User, Conn: o.Conn, Worker: l.w.index,
			At: o.Lost, Code: proto.CloseAbnormal, Reason: metrics.ReasonWorkerLost,
		}})
	}
	clear(l.orphans[:n]) // for the collector
	l.orphans = l.orphans[n:]
	if len(l.orphans) == 0 {
		l.orphans = nil
	}
	return batch
}

// handle publishes batch, in order, or counts it failed with refused when
// that is set, and records it for the supervisor: each disconnect of a
// socket announced before the batch ahead of publishing it, so that a
// worker killed at any point never has its replacement announce one
// again (at the cost of losing one published, should the kill fall
// between the record and the publish); each connect once published,
// unless the batch published its disconnect too.
func (l *lifecycle) handle(batch []lifecycleItem, refused error) {
	if l.rec == nil {
		for _, it := range batch {
			l.publish(it, refused)
		}
		clear(batch)
		return
	}
	recorded := false
	for _, it := range batch {
		if it.m == nil || it.m.Type != proto.LifecycleTypeDisconnect {
			continue
		}
		switch {
		case !*it.announced:
			// Its connect, if in this batch, is not recorded. Noted
			// before any publish: once its connect is published, its
			// announced no longer tells.
			l.inBatch[it.announced] = struct{}{}
		case refused == nil:
			l.rec.Disconnect(it.m.Conn)
			recorded = true
		}
	}
	if recorded {
		l.recordDisconnects()
	}
	for _, it := range batch {
		l.publish(it, refused)
	}
	for _, it := range batch {
		if it.m != nil && it.m.Type == proto.LifecycleTypeConnect && *it.announced {
			if _, closed := l.inBatch[it.announced]; !closed {
				l.rec.Connect(it.m.Conn, it.m.User)
			}
		}
	}
	clear(l.inBatch)
	l.record()
	clear(batch) // run reuses its array: let the messages go
}

// record writes to the supervisor what rec holds, as far as the pipe
// takes it.
func (l *lifecycle) record() {
	if l.rec == nil {
		return
	}
	if err := l.rec.Flush(); err != nil {
		l.failed.Failed(err)
	}
	if !l.rec.Pending() {
		l.stalled = false
	}
}

// recordDisconnects writes to the supervisor what rec holds, disconnects
// about to be published among it, waiting up to announceWait for a full
// pipe unless the supervisor is stalled.
func (l *lifecycle) recordDisconnects() {
	if l.stalled {
		l.record()
		return
	}
	if err := l.rec.FlushWithin(announceWait); err != nil {
		l.failed.Failed(err)
	}
	if l.rec.Pending() {
		l.stalled = true
		l.failed.Failed(errAnnounceStalled)
	}
}

// publish hands it to NATS, or counts it failed with refused when that
// is set.
func (l *lifecycle) publish(it lifecycleItem, refused error) {
	if it.flushed != nil {
		close(it.flushed)
		return
	}
	if it.m.Type == proto.LifecycleTypeDisconnect && !*it.announced {
		return // its connect was refused or dropped: the hook never heard of it
	}
	err := refused
	if err == nil && it.leased != nil {
		awaitLease(it.leased.Done(), it.leaseBy)
		if n, ok := it.leased.Sockets(); ok {
			it.m.Sockets = &n
		}
	}
	if err == nil {
		subject, _ := proto.LifecycleSubject(it.m.Type)
		err = l.w.nc.Publish(subject, proto.AppendLifecycle(make([]byte, 0, 160), it.m))
	}
	if it.m.Type == proto.LifecycleTypeConnect {
		*it.announced = err == nil
	}
	if it.lost && err == nil {
		l.w.metrics.LifecycleLost()
	}
	l.counted(it.m, err)
}

func (l *lifecycle) counted(m *proto.Lifecycle, err error) {
	l.w.metrics.LifecyclePublished(m.Type, err)
	if err != nil {
		l.failed.Failed(err, zap.String("type", m.Type), zap.String("user", m.User), zap.String("conn", m.Conn))
	}
}

// flush waits until run has handed NATS what was queued and NATS has
// taken it, within timeout: at the end of a drain, so the disconnects of
// the sockets it closed are not lost with the connection. Nothing is
// waited for with the hooks off, and NATS is not waited for while down.
func (l *lifecycle) flush(timeout time.Duration) {
	if !l.on() {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	flushed := make(chan struct{})
	select {
	case l.queue <- lifecycleItem{flushed: flushed}:
	case <-t.C:
		l.w.log.Warn("lifecycle messages may be lost: the queue is full and nats not taking them")
		return
	}
	select {
	case <-flushed:
	case <-t.C:
		l.w.log.Warn("lifecycle messages may be lost: nats did not take them in time", zap.Int("queued", len(l.queue)))
		return
	}
	if !l.w.link.Connected() {
		return
	}
	if err := l.w.nc.FlushTimeout(time.Until(deadline)); err != nil {
		l.w.log.Warn("lifecycle messages may be lost: nats flush failed", zap.Error(err))
	}
}

// awaitLease waits until leased is closed or by has passed. The connects
// are queued in the order their leases were, and each waits only until
// its own deadline, so a stalled Redis delays them all by at most
// presenceRemoveWait, not that much each.
func awaitLease(leased <-chan struct{}, by time.Time) {
	select {
	case <-leased:
		return
	default:
	}
	d := time.Until(by)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-leased:
	case <-t.C:
	}
}
