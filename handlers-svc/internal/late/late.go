// Package late carries, in a context, the func that learns how a dispatch
// ended when the context gave up on it first: package dispatch calls it,
// the dispatch API (package httpapi) gives it, so that the outcome of a
// dispatch answered 504 is recorded under its idempotency key once it is
// known (docs/protocol.md section 7). It is internal to handlers-svc: the
// Dispatcher's public API does not change.
//
// It is the shape of net/http/httptrace: a hook in the context, which the
// callee calls if it is there.
package late

import (
	"context"
	"sync/atomic"
)

// Outcome is how a dispatch ended.
type Outcome uint8

const (
	// Unknown: Redis may have run it and its answer was lost (the
	// connection cut or timed out mid-flight), or, on a Redis Cluster, it
	// ran on some partitions and not on others.
	Unknown Outcome = iota
	// Done: it was recorded and published; the Report carries its
	// positions.
	Done
	// NotRun: it surely did not run: never written to Redis, or refused by
	// Redis without running.
	NotRun
)

// Report is the outcome of a dispatch and, when Done, its positions, as
// dispatch.Positions holds them.
type Report struct {
	Outcome   Outcome
	Users     map[string]string
	Broadcast string
}

// Func learns the outcome of a dispatch whose context ended before it was
// known. It is called at most once, on whatever goroutine learns the
// outcome, maybe before the dispatch returns: it must not block.
type Func func(Report)

type key struct{}

// With returns ctx carrying f.
func With(ctx context.Context, f Func) context.Context {
	return context.WithValue(ctx, key{}, f)
}

// From returns the Func ctx carries, or nil.
func From(ctx context.Context) Func {
	f, _ := ctx.Value(key{}).(Func)
	return f
}

// Effects is what one request's dispatches may have done: whether any of
// them was, or may have been, delivered. natserve tracks it for each
// request it serves (Track), and package dispatch marks it (Mark) after
// every publish but one that surely did not run, so that a handler that
// delivered one event and then failed another with "unavailable" (nothing
// sent, retry safe, true of that dispatch alone) is not answered as
// though it had done nothing: a client that sent it again would get the
// first event twice.
type Effects struct{ maybe atomic.Bool }

type effectsKey struct{}

// Track returns ctx carrying a new Effects, and the Effects.
func Track(ctx context.Context) (context.Context, *Effects) {
	e := &Effects{}
	return context.WithValue(ctx, effectsKey{}, e), e
}

// Mark records, in the Effects ctx carries if any, that a dispatch may
// have been delivered.
func Mark(ctx context.Context) {
	if e, _ := ctx.Value(effectsKey{}).(*Effects); e != nil {
		e.maybe.Store(true)
	}
}

// Maybe reports whether any dispatch of the request may have been
// delivered.
func (e *Effects) Maybe() bool { return e.maybe.Load() }
