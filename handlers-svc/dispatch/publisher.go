package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/streams"
)

// maxFlushCalls is the most calls one flush writes. A longer queue is
// written in several flushes, one after the other, so that one write stays
// bounded (256 sendMessage batches of typical messages are ~150 KB).
const maxFlushCalls = 256

// errLeaderPanicked fails the calls a leader held when its flush panicked.
var errLeaderPanicked = errors.New("redis dispatch: the flush carrying it panicked")

// publisher writes the publishes of concurrent callers to Redis together:
// one go-redis pipeline (one write, one read of the replies) carries every
// call that queued while the previous pipeline was in flight. One pipeline
// is in flight at a time; a caller that finds none in flight writes its own
// call at once, so an idle service adds no wait.
//
// It starts no goroutine. Every flush runs on the goroutine of a caller,
// the leader: the caller that found the publisher idle, or, when a flush
// ends with calls queued, the oldest of them, handed the lead with the
// batch. Every waiting caller is woken once, with its result or with the
// lead, so gathering costs no wake-up that one round trip per caller did
// not already cost. The queue holds at most one call per blocked caller;
// the callers bound it (handlers-svc runs at most natserve's
// MaxConcurrent handlers).
type publisher struct {
	rdb redis.UniversalClient

	// Used by the leader only: the pipeline, its commands and the calls
	// written, reused.
	pipe redis.Pipeliner
	cmds []redis.Cmder
	live []*call

	mu    sync.Mutex
	busy  bool    // a leader exists: a flush is in flight or about to start
	queue []*call // waiting for the next flush, oldest first
	spare []*call // an empty slice no one holds, for the next batch or queue
}

func newPublisher(rdb redis.UniversalClient) publisher {
	return publisher{rdb: rdb, pipe: rdb.Pipeline()}
}

// callState is where a call is; it is guarded by publisher.mu.
type callState uint8

const (
	queued    callState = iota // in publisher.queue
	taken                      // in a batch a leader flushes
	leading                    // taken, and its caller is handed the lead
	abandoned                  // taken, and its caller gone (its context ended)
	finished                   // its result is set and sent on wake
)

// call is one caller's publish: one call of the publish script, which
// records and publishes one dispatch or several, all or none but for a
// unit Redis fails while the script runs it (unitError).
type call struct {
	ctx   context.Context
	keys  []string
	args  []any
	state callState
	// err and pos are the call's result, set by the leader that flushed it
	// before it sends on wake: pos holds the positions the script assigned,
	// in target order.
	err     error
	pos     []string
	unheard int // publishes of the call no subscriber received; uncounted when another call counted them
	// cmd is the script call that carries the call in the pipeline being
	// flushed, maybe with other calls (mergeCalls); the call's positions
	// are the n of its reply from first on, its units the units of the
	// script call's from unit on, and the first call it carries counts
	// all of its unheard publishes.
	cmd         *redis.StringSliceCmd
	first, n    int
	unit, units int
	counts      bool
	// wake gets one message per call, none once it is abandoned: nil once
	// err is set, or the batch whose lead the caller is handed (the call
	// is its first element).
	wake chan []*call
	// late, if not nil, gets the result of an abandoned call from the
	// leader that flushed it, once the flush is over (publishLate).
	late func(pos []string, unheard int, err error)
}

var callPool = sync.Pool{New: func() any { return &call{wake: make(chan []*call, 1)} }}

// publish runs the publish script with keys and args (scriptCall): it
// records and publishes its dispatches in order, all or none but for a
// unit Redis fails while the script runs it (unitError). It returns
// the positions the script assigned, in target order, and how many of its
// publishes no subscriber received, or go-redis's error, or ctx's error
// when ctx ended first. A call whose ctx
// ends before it is written is never written (its error is a
// *notSentError); one whose ctx ends while its pipeline is in flight may
// still be published.
func (p *publisher) publish(ctx context.Context, keys []string, args []any) ([]string, int, error) {
	return p.publishLate(ctx, keys, args, nil)
}

// publishLate is publish, and when ctx ends while the call's pipeline is
// in flight and late is not nil, it returns an *inFlightError at once and
// the leader of that flush calls late with the call's result (the result
// publish would have returned: an unwritten call's is a *notSentError)
// once the flush is over, on its own goroutine: late must not block.
// late is called at most once, and never when publishLate returns any
// other error (whose outcome its caller then knows): never either if
// go-redis panics in the flush.
func (p *publisher) publishLate(ctx context.Context, keys []string, args []any, late func([]string, int, error)) ([]string, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, &notSentError{err}
	}
	c := callPool.Get().(*call)
	c.ctx, c.keys, c.args, c.err, c.late = ctx, keys, args, nil, late

	p.mu.Lock()
	if p.busy {
		c.state = queued
		p.queue = append(p.queue, c)
		p.mu.Unlock()
		return p.wait(c)
	}
	p.busy = true
	c.state = taken
	batch := append(p.spare, c)
	p.spare = nil
	p.mu.Unlock()
	p.lead(c, batch)
	return p.done(c)
}

// publishAll runs several calls of the publish script (keys[i] with
// args[i]) queued together, so that they go out in the same pipeline: one
// round trip where one call after the other would take one each, and on a
// Redis Cluster go-redis writes each node its share of the pipeline in
// parallel. It returns each call's positions and error. Unheard
// publishes are not counted (a cluster's shared channel cannot tell them).
//
// lates, when not nil, holds a func per call, which is to that call what
// publishLate's late is to its: a call whose error is an *inFlightError
// has its result given to lates[i] later.
func (p *publisher) publishAll(ctx context.Context, keys [][]string, args [][]any, lates []func([]string, int, error)) ([][]string, []error) {
	out, errs := make([][]string, len(keys)), make([]error, len(keys))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = &notSentError{err}
		}
		return out, errs
	}
	calls := make([]*call, len(keys))
	for i := range calls {
		c := callPool.Get().(*call)
		c.ctx, c.keys, c.args, c.err = ctx, keys[i], args[i], nil
		if lates != nil {
			c.late = lates[i]
		}
		calls[i] = c
	}
	p.mu.Lock()
	led := !p.busy
	if led {
		p.busy = true
		for _, c := range calls {
			c.state = taken
		}
		batch := append(p.spare, calls...)
		p.spare = nil
		p.mu.Unlock()
		p.lead(calls[0], batch) // wakes the others with their results
	} else {
		for _, c := range calls {
			c.state = queued
		}
		p.queue = append(p.queue, calls...)
		p.mu.Unlock()
	}
	// Waited for in queue order: a later call is handed the lead only
	// after the flush of an earlier one has woken it, so each wait ends.
	for i, c := range calls {
		if led && i == 0 {
			out[i], _, errs[i] = p.done(c)
		} else {
			out[i], _, errs[i] = p.wait(c)
		}
	}
	return out, errs
}

// wait waits for c's result or for the lead, whichever comes. When c's
// context ends first, a queued c is taken out of the queue and never
// written; a c already taken returns at once unless it was handed the lead,
// which it cannot refuse, or its result is there already: its caller
// abandons it to its leader (publishLate).
func (p *publisher) wait(c *call) ([]string, int, error) {
	select {
	case batch := <-c.wake:
		if batch != nil {
			p.lead(c, batch)
		}
		return p.done(c)
	case <-c.ctx.Done():
	}
	p.mu.Lock()
	switch c.state {
	case queued:
		p.queue = slices.DeleteFunc(p.queue, func(q *call) bool { return q == c })
		p.mu.Unlock()
		c.err = &notSentError{c.ctx.Err()}
		return p.done(c) // no message can come any more: c can be reused
	case leading:
		p.mu.Unlock()
		p.lead(c, <-c.wake) // sent right after c.state was set
		return p.done(c)
	case finished:
		p.mu.Unlock()
		<-c.wake // sent right after c.state was set
		return p.done(c)
	}
	// Taken: its leader will set its result later, and give it to late
	// rather than send it on wake, so c is left to the garbage collector
	// rather than reused.
	c.state = abandoned
	p.mu.Unlock()
	if c.late != nil {
		return nil, 0, &inFlightError{c.ctx.Err()}
	}
	return nil, 0, c.ctx.Err()
}

// done returns c's result and puts c back in the pool, which only a call
// that no leader holds any more may enter.
func (p *publisher) done(c *call) ([]string, int, error) {
	pos, unheard, err := c.pos, c.unheard, c.err
	*c = call{wake: c.wake}
	callPool.Put(c)
	if err != nil {
		if _, unit := errors.AsType[*unitError](err); unit {
			// The call's units that ran have their positions; those of
			// its failed units are "" (splitMerged).
			return pos, unheard, err
		}
		return nil, unheard, err // counted for a *unitError (splitMerged), else 0
	}
	return pos, unheard, nil
}

// lead flushes batch, which holds self, then hands the lead to the oldest
// queued call with the queue as its batch, or leaves the publisher idle.
//
// When the flush could not reach Redis, the calls queued while it tried
// fail with its error, unwritten, rather than wait for a second attempt:
// with Redis down or hung, a dispatch answers unavailable after one
// attempt's time (go-redis's dial retries, or its read timeout), as it did
// with a connection per caller, not after two or more. The next call
// tries again.
func (p *publisher) lead(self *call, batch []*call) {
	flushed := false
	defer func() {
		if !flushed {
			// go-redis panicked (the panic goes on up self's stack): no
			// caller may be left waiting for a leader that is gone.
			p.mu.Lock()
			p.failQueue(errLeaderPanicked, &batch)
			for _, c := range batch {
				if c.err == nil {
					c.err = errLeaderPanicked
				}
				if c != self && c.state != abandoned {
					c.state = finished
					c.wake <- nil
				}
			}
			p.busy = false
			p.mu.Unlock()
		}
	}()
	unreachable := p.flush(batch)
	flushed = true
	p.mu.Lock()
	if unreachable != nil {
		p.failQueue(unreachable, &batch)
	}
	// Under the lock, so that batch can be reused at once: the sends never
	// block (each wake has room for its one message).
	var gone []*call // abandoned calls whose late gets their result
	for _, c := range batch {
		switch {
		case c == self:
		case c.state == abandoned:
			if c.late != nil {
				gone = append(gone, c)
			}
		default:
			c.state = finished
			c.wake <- nil
		}
	}
	// After the lock and the lead are given up: late must not block, but
	// it is its caller's code.
	defer func() {
		for _, c := range gone {
			c.late(c.pos, c.unheard, c.err)
		}
	}()
	clear(batch)
	p.spare = batch[:0]
	if len(p.queue) == 0 {
		p.busy = false
		p.mu.Unlock()
		return
	}
	next := p.queue
	if len(next) > maxFlushCalls {
		next = append(p.spare, next[:maxFlushCalls]...)
		n := copy(p.queue, p.queue[maxFlushCalls:])
		clear(p.queue[n:])
		p.queue = p.queue[:n]
	} else {
		p.queue = p.spare // next is the new leader's now
	}
	p.spare = nil
	for _, c := range next {
		c.state = taken
	}
	next[0].state = leading
	p.mu.Unlock()
	// Last, so that the new leader is the goroutine this P runs next.
	next[0].wake <- next
}

// failQueue takes every queued call into *batch with err as its result.
// p.mu is held.
func (p *publisher) failQueue(err error, batch *[]*call) {
	for _, c := range p.queue {
		c.state, c.err = taken, err
	}
	*batch = append(*batch, p.queue...)
	clear(p.queue)
	p.queue = p.queue[:0]
}

// flush writes the calls of batch whose context has not ended in one
// pipeline and sets every call's err. It returns the pipeline's error when
// that is not Redis's answer but a failure to reach it.
func (p *publisher) flush(batch []*call) error {
	// The commands carry no caller's context: the pipeline carries every
	// caller's call, so one caller's deadline must not cut the others'.
	ctx := context.Background()
	cmds := p.cmds[:0]
	var last time.Time // the latest deadline of the calls written
	endless := false   // a call written has no deadline
	live := p.live[:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = &notSentError{err}
			continue
		}
		if d, ok := c.ctx.Deadline(); !ok {
			endless = true
		} else if d.After(last) {
			last = d
		}
		live = append(live, c)
	}
	cmds = mergeCalls(ctx, cmds, live)
	clear(live)
	p.live = live[:0]
	p.cmds = cmds
	if len(cmds) == 0 {
		return nil
	}
	// The round trip ends by the last deadline of the calls it carries
	// (but no sooner than minFlushTime from now), when go-redis's own
	// timeouts (5 s to read and to dial by default) would end it later: a
	// hung Redis then fails a dispatch in about its handler's time, so the
	// handler can still answer the gateway before the gateway gives up. No
	// caller is cut before its deadline; the leader's caller may wait past
	// its own for the others', or for minFlushTime.
	var deadline time.Time
	if !endless {
		deadline = last
		if soonest := time.Now().Add(minFlushTime); deadline.Before(soonest) {
			deadline = soonest
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	// Every command carries its own result: go-redis sets the error of a
	// failed round trip on each command it left without a reply.
	err := p.exec(ctx, cmds)
	if _, answered := errors.AsType[redis.Error](err); (err == nil || answered) && p.reload(ctx, batch) {
		// Redis lost its scripts (a restart, SCRIPT FLUSH): a call refused
		// with NOSCRIPT ran nothing, so it is safe to send again, once the
		// script is back.
		err = p.exec(ctx, p.cmds)
	}
	// A round trip cut by that deadline means the callers ran out of time,
	// not that Redis is unreachable: they end as their deadline would have
	// ended them (timeout, not unavailable, and no outage logged), and the
	// calls queued meanwhile get their own attempt instead of failing with
	// it.
	outOfTime := err != nil && !deadline.IsZero() && isTimeout(err) && !time.Now().Before(deadline)
	for _, c := range batch {
		if c.cmd == nil {
			continue
		}
		if err := c.cmd.Err(); err != nil && c.err == nil {
			c.err = err
			if outOfTime && isTimeout(err) {
				c.err = fmt.Errorf("%w: the round trip to Redis outlasted it (%w)", context.DeadlineExceeded, err)
			} else if _, answered := errors.AsType[redis.Error](err); !answered && !unsent(err) {
				c.err = &maybeSentError{err}
			}
		} else if err == nil {
			c.pos, c.unheard, c.err = splitMerged(c)
		}
		c.cmd = nil
	}
	clear(p.cmds) // let the commands and their bodies go
	if _, answered := errors.AsType[redis.Error](err); err != nil && !answered && !outOfTime {
		return err
	}
	return nil
}

// exec writes cmds in one pipeline and returns the pipeline's error.
func (p *publisher) exec(ctx context.Context, cmds []redis.Cmder) error {
	_ = p.pipe.BatchProcess(ctx, cmds...)
	_, err := p.pipe.Exec(ctx)
	return err
}

// reload loads the publish script again when a call of batch was refused
// with NOSCRIPT, and leaves in p.cmds fresh commands for exactly those
// calls. It reports whether there are any.
func (p *publisher) reload(ctx context.Context, batch []*call) bool {
	again := p.live[:0]
	for _, c := range batch {
		if c.cmd != nil && isNoScript(c.cmd.Err()) {
			again = append(again, c)
		}
	}
	defer func() { clear(again); p.live = again[:0] }()
	if len(again) == 0 {
		return false
	}
	if err := streams.PublishScript.Load(ctx, p.rdb).Err(); err != nil {
		return false // the calls keep their NOSCRIPT error
	}
	p.cmds = mergeCalls(ctx, p.cmds[:0], again)
	return true
}

// Bounds of one merged script call (mergeCalls): a call this size is
// already a long one for Redis (a dispatch to ~250 users), so merging
// more into it saves nothing worth the time it holds Redis.
const (
	maxMergedKeys = 512
	maxMergedArgs = 2048
)

// mergeCalls appends to cmds the script calls that carry calls, in order:
// consecutive calls go in one call of the publish script as long as it
// stays within maxMergedKeys and maxMergedArgs. The script records and
// publishes its units one after the other, so a merged call publishes
// exactly what the calls would have, in the same order, and each call
// reads its own positions from the reply (splitMerged); what merging
// saves is the script's fixed cost in Redis (the call itself, reading the
// run key and the time), which under load is a third of a small call's.
// A merged call that Redis refuses fails every call it carries, as one
// pipeline that cannot reach Redis fails every call it carries; but the
// script runs each unit apart, so an error Redis raises while it runs
// one (WRONGTYPE on a key something else overwrote) fails only the call
// that unit is of (splitMerged, unitError), and the calls before and
// after it in the merged call are as if it had not been there.
func mergeCalls(ctx context.Context, cmds []redis.Cmder, calls []*call) []redis.Cmder {
	for i := 0; i < len(calls); {
		j, nk, na := i+1, len(calls[i].keys), len(calls[i].args)
		for j < len(calls) && sameSettings(calls[i], calls[j]) &&
			nk+len(calls[j].keys)-1 <= maxMergedKeys && na+len(calls[j].args)-streams.CallHeader <= maxMergedArgs {
			nk += len(calls[j].keys) - 1
			na += len(calls[j].args) - streams.CallHeader
			j++
		}
		cmdArgs := make([]any, 0, 3+nk+na)
		cmdArgs = append(cmdArgs, "evalsha", streams.PublishScript.Hash(), nk)
		for _, k := range calls[i].keys {
			cmdArgs = append(cmdArgs, k)
		}
		for _, c := range calls[i+1 : j] {
			for _, k := range c.keys[1:] {
				cmdArgs = append(cmdArgs, k)
			}
		}
		units := 0
		for _, c := range calls[i:j] {
			units += c.args[streams.CallUnits].(int)
		}
		at := len(cmdArgs)
		cmdArgs = append(cmdArgs, calls[i].args[:streams.CallHeader]...)
		cmdArgs[at+streams.CallUnits] = units
		for _, c := range calls[i:j] {
			cmdArgs = append(cmdArgs, c.args[streams.CallHeader:]...)
		}
		cmd := redis.NewStringSliceCmd(ctx, cmdArgs...)
		first, unit := 0, 0
		for k, c := range calls[i:j] {
			c.cmd, c.first, c.n, c.counts = cmd, first, (len(c.keys)-1)/2, k == 0
			c.unit, c.units = unit, c.args[streams.CallUnits].(int)
			first += c.n
			unit += c.units
		}
		cmds = append(cmds, noRetry{cmd})
		i = j
	}
	return cmds
}

// noRetry is a call of the publish script that go-redis must never send
// twice. A ClusterClient sends a pipeline's commands again after a
// connection error, also those Redis had already run (go-redis's
// MaxRetries does not govern that loop): a script whose reply was lost
// would record and publish its events a second time, at new offsets, and
// devices would get them twice. Redis's redirections (MOVED, ASK), which
// say the command did not run, are still followed.
type noRetry struct{ *redis.StringSliceCmd }

// NoRetry tells go-redis not to send the command again.
func (noRetry) NoRetry() bool { return true }

// sameSettings reports whether the script calls of a and b have the same
// run key (their first key: on a Redis Cluster, the same partition) and
// the same header (streams.CallHeader) but for the epoch seed and the
// number of units, so that they can be merged into one.
func sameSettings(a, b *call) bool {
	if a.keys[0] != b.keys[0] {
		return false
	}
	for i := range streams.CallHeader {
		if i != streams.CallSeed && i != streams.CallUnits && a.args[i] != b.args[i] {
			return false
		}
	}
	return true
}

// splitMerged returns c's share of the reply of the script call that
// carried it (mergeCalls).
//
// A reply it cannot read came from a script that ran: its errors say the
// call may have been delivered (maybeSentError), never that it was not.
// When Redis failed one of c's units while the script ran it, c's error
// is a *unitError, and its positions come with it: those of the units
// that ran and of the users a failed unit had recorded before it failed,
// "" for each other target of a unit that failed (the script's reply),
// so that the caller knows who got it. The failures of other calls'
// units are not c's.
func splitMerged(c *call) ([]string, int, error) {
	r, err := streams.ParseResult(c.cmd.Val())
	if err != nil {
		return nil, 0, &maybeSentError{err: err}
	}
	pos, unheard := r.Pos, r.Unheard
	var failed *unitError
	for i := range r.Failed {
		f := &r.Failed[i]
		if f.Unit < c.unit || f.Unit >= c.unit+c.units {
			continue
		}
		if failed == nil {
			failed = &unitError{err: f}
		}
		failed.failed++
		failed.delivered = failed.delivered || f.Wrote
	}
	if !c.counts {
		unheard = uncounted
	}
	if c.first+c.n > len(pos) {
		if failed != nil {
			return nil, unheard, failed // ran, whatever the reply says of its positions
		}
		return nil, 0, &maybeSentError{err: fmt.Errorf("publish script: %d positions in the reply, want at least %d", len(pos), c.first+c.n)}
	}
	mine := pos[c.first : c.first+c.n : c.first+c.n]
	if failed != nil {
		// The call's other units ran: they were delivered; so was a
		// failed unit to the users it recorded before it failed (a
		// position). The unheard publishes are still counted, for the
		// calls merged behind this one too.
		failed.ran = failed.failed < c.units || slices.ContainsFunc(mine, func(p string) bool { return p != "" })
		failed.delivered = failed.delivered || failed.ran
		return mine, unheard, failed
	}
	return mine, unheard, nil
}

// uncounted is the unheard of a call merged into a script call whose first
// call counted all of its unheard publishes: it tells nothing of whether
// this call's were heard. (0 would say they were, and the dispatcher would
// log dispatches heard again in the middle of an episode of unheard ones.)
const uncounted = -1

// isNoScript reports whether err is Redis's answer to a script it does not
// have.
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// minFlushTime is the least time a round trip to Redis is given, however
// little its callers have left: a round trip cut short closes go-redis's
// connection, and under overload, when calls come with little time left,
// cutting each at its callers' deadline would reconnect over and over. It
// is well inside the default margin between HANDLERS_TIMEOUT and
// GATEWAY_HANDLER_TIMEOUT (1 s).
const minFlushTime = 250 * time.Millisecond

// maybeSentError is the failure of a script call that was written to
// Redis (or may have been) and got no answer: a connection lost, or
// go-redis's read timeout passing before the callers' deadline (a Redis
// slower than ReadTimeout). Redis may have run the call, so its events
// may have been recorded and published: it is not "unavailable", whose
// dispatch was surely not delivered and is safe to send again
// (publishError).
type maybeSentError struct{ err error }

func (e *maybeSentError) Error() string {
	return "no answer from Redis to a call it may have run: " + e.err.Error()
}

func (e *maybeSentError) Unwrap() error { return e.err }

// unitError is the error of a call one or more of whose units Redis
// failed while the publish script ran them (streams.UnitError): an error
// it raised in the script, such as WRONGTYPE on a stream or meta key that
// something else overwrote. Redis kept what the script wrote before it,
// and the script ran the call's other units, and the other calls merged
// with it (mergeCalls), all the same.
type unitError struct {
	err    *streams.UnitError // the call's first failed unit
	failed int                // the call's units that failed
	// delivered says some of the call may have been delivered: one of
	// its units ran, or a failed one had written before it failed.
	// Without it, nothing of the call was recorded or published.
	delivered bool
	// ran says some of the call's units ran without failing, or a
	// failed one had recorded some of its users (their positions): the
	// call was delivered in part for sure (ErrPartlyDelivered).
	ran bool
}

func (e *unitError) Error() string {
	if e.failed > 1 {
		return fmt.Sprintf("%v (and %d more of the call's units)", e.err, e.failed-1)
	}
	return e.err.Error()
}

func (e *unitError) Unwrap() error { return e.err }

// notSentError is the error of a call never written to Redis because its
// context ended first: the context's error, which it wraps and reads as.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }

func (e *notSentError) Unwrap() error { return e.err }

// inFlightError is publishLate's error for a call abandoned while its
// pipeline was in flight: the context's error, which it wraps and reads
// as; the call's late func gets its result.
type inFlightError struct{ err error }

func (e *inFlightError) Error() string { return e.err.Error() }

func (e *inFlightError) Unwrap() error { return e.err }

// unsent reports whether err, a failed round trip's, proves that no call
// reached Redis: no connection could be had (a refused or failed dial, a
// pool that had none to give, a closed client). Any other failure may
// come after the call was written.
func unsent(err error) bool {
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) || errors.Is(err, redis.ErrClosed) {
		return true
	}
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}
