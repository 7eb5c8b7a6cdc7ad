package httpapi

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
)

// A dispatch with an idempotency key that runs out of time is answered
// 504 while its call to Redis may still be in flight, carried by another
// caller's pipeline (package dispatch). Its outcome, when package dispatch
// learns it (package late), is recorded under the key as a finished
// dispatch's would have been: the 200 answer with its positions, replayed
// to retries, or the key freed when the call surely did not run. An
// outcome that stays unknown leaves the key reserved until it expires.

// lateOutcome takes the report of one dispatch's outcome for its
// reservation. One that comes before Dispatch returns is kept for
// ServeHTTP, which records it before answering; one that comes after is
// recorded on its own (lateRecords).
type lateOutcome struct {
	a   *API
	res *reservation

	mu       sync.Mutex
	returned bool         // Dispatch has returned
	report   *late.Report // one that came before
}

// take is the dispatch's late.Func: it does not block.
func (l *lateOutcome) take(r late.Report) {
	l.mu.Lock()
	if !l.returned {
		l.report = &r
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.a.lates.record(l.a, l.res, r)
}

// dispatchReturned marks Dispatch returned, and returns the report that
// came before, if one did.
func (l *lateOutcome) dispatchReturned() (late.Report, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.returned = true
	if l.report == nil {
		return late.Report{}, false
	}
	return *l.report, true
}

// settle records r, the outcome of res's dispatch: its answer when it
// was done, the key freed when it did not run, nothing when unknown.
func (a *API) settle(ctx context.Context, res *reservation, r late.Report) {
	switch r.Outcome {
	case late.Done:
		a.finish(ctx, res, dispatch.Positions{Users: r.Users, Broadcast: r.Broadcast}.JSON(), nil)
		a.log.Debug("outcome of a dispatch answered 504 recorded: delivered", zap.String("key", res.Key))
	case late.NotRun:
		a.release(ctx, res)
		a.log.Debug("outcome of a dispatch answered 504 recorded: not delivered, key freed", zap.String("key", res.Key))
	}
}

// lateRecords runs the Redis commands that record outcomes reported after
// their dispatch returned: each on a goroutine of its own, at most
// MaxInFlight at once (beyond that an outcome is dropped, its key left
// reserved until it expires, as an unknown one), each bounded by
// finishTimeout and ended by Close.
type lateRecords struct {
	slots chan struct{}
	ctx   context.Context // ended by Close
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

func (l *lateRecords) init() {
	l.slots = make(chan struct{}, MaxInFlight)
	l.ctx, l.stop = context.WithCancel(context.Background())
}

// record records r for res on a goroutine of its own, or drops it.
func (l *lateRecords) record(a *API, res *reservation, r late.Report) {
	if r.Outcome == late.Unknown {
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return // shutting down: the key stays reserved until it expires
	}
	select {
	case l.slots <- struct{}{}:
	default:
		l.mu.Unlock()
		a.log.Warn("outcome of a dispatch answered 504 not recorded: too many at once; retries with its key get 409 until it expires",
			zap.String("key", res.Key))
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		defer func() { <-l.slots }()
		a.settle(l.ctx, res, r)
	}()
}

// Close stops recording the outcomes of dispatches answered 504 (later
// ones leave their keys reserved until they expire), ends those being
// recorded and waits for them. Call it once the API serves no more, before
// closing the Redis client of its records. It is idempotent.
func (a *API) Close() {
	l := &a.lates
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.stop()
	l.wg.Wait()
}
