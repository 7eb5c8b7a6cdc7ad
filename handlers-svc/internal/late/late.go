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

import "context"

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
