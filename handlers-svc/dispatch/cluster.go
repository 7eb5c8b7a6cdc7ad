package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/internal/late"
	"github.com/switchboard/switchboard/internal/streams"
	"github.com/switchboard/switchboard/proto"
)

// On a Redis Cluster a script call may only touch the keys of one slot:
// a user's stream, meta and channel are in the slot of the user's
// partition (proto.PartitionOf), so a dispatch to users of several
// partitions is split by partition (streams.SplitUsers), and the units of
// one publish are sent as one script call per partition, the calls to
// one master in one pipeline, the masters' pipelines at the same time
// (publishParts): each master has a publisher of its own, so that a
// stalled master holds up only the dispatches to its partitions. Each
// call is all or none (but for a unit Redis fails while it runs it, as
// on one Redis); a dispatch is no longer all or none across partitions,
// but every socket gets its user's part or not, as the positions it
// carries say. A part that failed fails the dispatch: unavailable when
// no other part ran or may have, else timeout or handler_error, and when
// another part surely ran the error wraps ErrPartlyDelivered and comes
// with the positions of the parts that ran (clusterResult). The shared channel's PUBLISH
// reaches every node's subscribers, and its count of receivers only the
// node's own, so publishes no gateway worker heard are not counted
// (Unheard) on a cluster.

// clusterUserUnits appends to units those of a dispatch to users (each
// once), split by partition and then at most maxUnitUsers per unit; the
// first unit also carries msg.Conns, and every user it does not name as
// its SkipUsers, as on one Redis (userUnits).
func (d *Dispatcher) clusterUserUnits(units []*streams.Unit, msg *proto.Dispatch, users []string, args any, record bool) ([]*streams.Unit, error) {
	first := true
	for _, part := range streams.SplitUsers(&proto.Dispatch{Event: msg.Event, Users: users}) {
		for start := 0; start < len(part.Users); start += maxUnitUsers {
			chunk := &proto.Dispatch{Event: msg.Event, Users: part.Users[start:min(start+maxUnitUsers, len(part.Users))], Except: msg.Except}
			if first && len(msg.Conns) > 0 {
				chunk.Conns = msg.Conns
				chunk.SkipUsers = usersBut(users, chunk.Users)
			}
			u, err := d.encode(chunk, args, record)
			if err != nil {
				return nil, err
			}
			if first {
				args = chunk.Args // marshalled once: the next units check it only
				first = false
			}
			units = append(units, u)
		}
	}
	if len(units) == 0 {
		return nil, fmt.Errorf("dispatch %s: no users", msg.Event)
	}
	return units, nil
}

// publishCluster records and publishes units with one script call per
// partition (streams.Group), a pipeline per master, and returns the
// positions in target order, or the first error of a call (publishError),
// but timeout rather than unavailable when another call ran or may have.
// The outcome of each partition's call is observed apart.
//
// after is publishLate's. A dispatch to several partitions reports when
// every partition's call has ended: done when all ran, not run when none
// did, unknown otherwise (partly delivered).
func (d *Dispatcher) publishCluster(ctx context.Context, units []*streams.Unit, after func([]string, late.Outcome)) ([]string, error) {
	groups := streams.Group(units)
	if len(groups) == 1 {
		keys, args := streams.PartitionCall(groups[0].Partition, groups[0].Units, d.window, d.ttl)
		return d.publishCall(ctx, d.publisherOf(ctx, groups[0].Partition), keys, args, nil, d.outageBit(groups[0].Partition), after)
	}
	keys := make([][]string, len(groups))
	args := make([][]any, len(groups))
	for gi, g := range groups {
		keys[gi], args[gi] = streams.PartitionCall(g.Partition, g.Units, d.window, d.ttl)
	}
	var parts *partsOutcome
	var lates []func([]string, int, error)
	if after != nil {
		parts = &partsOutcome{left: len(groups), pos: make([][]string, len(groups)), after: after,
			inOrder: func(all [][]string) []string { return inTargetOrder(units, groups, all) }}
		lates = make([]func([]string, int, error), len(groups))
		for gi := range groups {
			lates[gi] = func(pos []string, _ int, err error) { parts.end(gi, pos, err) }
		}
	}
	all, errs := d.publishParts(ctx, groups, keys, args, lates)
	if parts != nil {
		for gi, err := range errs {
			if _, inFlight := errors.AsType[*inFlightError](err); !inFlight {
				parts.end(gi, all[gi], err)
			}
		}
	}
	pos, err := d.clusterResult(ctx, groups, units, all, errs)
	if parts != nil {
		parts.returned(contextError(err))
	}
	return pos, err
}

// partitionKeys holds a key of each partition, whose slot is the
// partition's.
var partitionKeys = func() (keys [proto.Partitions]string) {
	for p := range keys {
		keys[p] = proto.RunKey(p)
	}
	return keys
}()

// publisherOf returns the publisher of the master that serves partition
// part now (Dispatcher.masters), or d.pub when the cluster's layout is not
// known. A partition that moves to another master has its next calls go
// through that master's publisher; go-redis follows a MOVED either way.
func (d *Dispatcher) publisherOf(ctx context.Context, part int) *publisher {
	cc, ok := d.pub.rdb.(*redis.ClusterClient)
	if !ok {
		return &d.pub
	}
	node, err := cc.MasterForKey(ctx, partitionKeys[part])
	if err != nil {
		return &d.pub // its call fails or is redirected in the pipeline
	}
	addr := node.Options().Addr
	if p, ok := d.masters.Load(addr); ok {
		return p.(*publisher)
	}
	// A master not seen before: the layout changed (a failover, a node
	// replaced), so the publishers of addresses that are no longer
	// masters go, or they would pile up over a long life.
	d.pruneMasters(ctx, cc)
	p := newPublisher(d.pub.rdb)
	got, _ := d.masters.LoadOrStore(addr, &p)
	return got.(*publisher)
}

// pruneMasters drops from d.masters the publishers of addresses that are
// not masters of cc now. A call in flight on one finishes unharmed; a
// master that comes back gets a new publisher. It sends no command: the
// layout is go-redis's own.
func (d *Dispatcher) pruneMasters(ctx context.Context, cc *redis.ClusterClient) {
	var mu sync.Mutex
	live := map[string]bool{}
	if err := cc.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
		mu.Lock()
		live[m.Options().Addr] = true
		mu.Unlock()
		return nil
	}); err != nil {
		return
	}
	d.masters.Range(func(addr, _ any) bool {
		if !live[addr.(string)] {
			d.masters.Delete(addr)
		}
		return true
	})
}

// publishParts runs the partitions' script calls (keys[i] and args[i] for
// groups[i]) as publishAll does, through the publisher of each one's
// master: the calls to one master in one pipeline, the masters' pipelines
// at the same time, so that it returns once the slowest master answered
// (or the deadline came), and a stalled master holds up no other
// master's publisher.
func (d *Dispatcher) publishParts(ctx context.Context, groups []streams.CallGroup, keys [][]string, args [][]any,
	lates []func([]string, int, error)) ([][]string, []error) {
	pubs := make([]*publisher, len(groups))
	for gi, g := range groups {
		pubs[gi] = d.publisherOf(ctx, g.Partition)
	}
	if !slices.ContainsFunc(pubs, func(p *publisher) bool { return p != pubs[0] }) {
		return pubs[0].publishAll(ctx, keys, args, lates)
	}
	all, errs := make([][]string, len(groups)), make([]error, len(groups))
	// run publishes the calls at (indices of groups) through their
	// master's publisher.
	run := func(p *publisher, at []int) {
		k, a := make([][]string, len(at)), make([][]any, len(at))
		var l []func([]string, int, error)
		if lates != nil {
			l = make([]func([]string, int, error), len(at))
		}
		for j, i := range at {
			k[j], a[j] = keys[i], args[i]
			if lates != nil {
				l[j] = lates[i]
			}
		}
		pos, perr := p.publishAll(ctx, k, a, l)
		for j, i := range at {
			all[i], errs[i] = pos[j], perr[j]
		}
	}
	var wg sync.WaitGroup
	// A panic of go-redis in a flush goes up the stack of the caller that
	// was writing (publisher.lead), where a handler's recovery answers
	// it: one on a goroutine of publishParts is carried to its caller,
	// or it would end the process.
	var panicked atomic.Pointer[any]
	var own []int // the first master's calls, published on this goroutine
	for gi, p := range pubs {
		if slices.Index(pubs, p) != gi {
			continue // goes with that master's first call
		}
		var at []int
		for i, q := range pubs {
			if q == p {
				at = append(at, i)
			}
		}
		if gi == 0 {
			own = at
		} else {
			wg.Go(func() {
				defer func() {
					if r := recover(); r != nil {
						panicked.CompareAndSwap(nil, &r)
					}
				}()
				run(p, at)
			})
		}
	}
	func() {
		defer wg.Wait() // also when this goroutine's own flush panics
		run(pubs[0], own)
	}()
	if r := panicked.Load(); r != nil {
		panic(*r)
	}
	return all, errs
}

// clusterResult is publishCluster's answer from the results of the
// partitions' calls, all and errs: the positions in target order, or the
// first error (publishError), but timeout rather than unavailable when
// another call ran or may have. The outcome of each partition's call is
// observed apart.
//
// A dispatch some partition's call ran (all of it, or some of its units)
// while another's failed is partly delivered: the error wraps
// ErrPartlyDelivered, and the positions of the partitions that ran come
// with it, in target order, "" for each target of a partition (or unit)
// that did not run or whose outcome is unknown.
func (d *Dispatcher) clusterResult(ctx context.Context, groups []streams.CallGroup, units []*streams.Unit, all [][]string, errs []error) ([]string, error) {
	var first, firstRaw error
	delivered := false // a partition's call may have delivered some of it
	ran := false       // a partition's call surely delivered some of it
	for gi, g := range groups {
		err := d.observe(ctx, errs[gi], d.outageBit(g.Partition))
		if err != nil && first == nil {
			first, firstRaw = err, errs[gi]
		}
		if outcomeOf(errs[gi]) != late.NotRun {
			delivered = true
		}
		if u, ok := errors.AsType[*unitError](errs[gi]); errs[gi] == nil || (ok && u.ran) {
			ran = true
		}
	}
	if first == nil {
		return inTargetOrder(units, groups, all), nil
	}
	var pos []string
	if ran {
		pos = inTargetOrder(units, groups, all) // a failed call's are none, or "" (splitMerged)
	}
	if u, ok := errors.AsType[*unitError](firstRaw); ok && !u.delivered && delivered && !unsentError(first) {
		// Nothing of the failed call was written, but another partition
		// ran its part, or may have: not NotDelivered.
		err := publishError(ctx, &unitError{err: u.err, failed: u.failed, delivered: true})
		if ran {
			err = partlyDelivered(err)
		}
		return pos, err
	}
	if delivered && unsentError(first) {
		// unavailable says nothing was delivered, and a retry is
		// safe: here it would deliver again what the partitions that
		// were reached published. Nor is it ErrNotSent, though the
		// call that failed first was not sent: only the context's
		// error is kept of it.
		cause := first
		if errors.Is(first, ErrNotSent) {
			cause = fmt.Errorf("publish %s: %w", proto.Channel, ctx.Err())
		}
		msg := "dispatch partly delivered: some of Redis refused it or could not be reached, some recorded and published it"
		if !ran {
			msg = "dispatch partly delivered: some of Redis refused it or could not be reached, some may have recorded and published it"
		}
		var err error = &event.Error{Code: proto.CodeTimeout, Message: msg, Err: cause}
		if ran {
			err = partlyDelivered(err)
		}
		return pos, err
	}
	if ran {
		return pos, partlyDelivered(first)
	}
	return pos, first
}

// inTargetOrder returns the positions the partitions' calls returned
// (all, one slice per group) in the order of units' targets; a call that
// returned fewer than its units' targets (none, when it failed) has ""
// for each target it lacks, so that every target keeps its place.
func inTargetOrder(units []*streams.Unit, groups []streams.CallGroup, all [][]string) []string {
	got := make([][]string, len(units))
	for gi, g := range groups {
		pos := all[gi]
		for _, i := range g.Index {
			k := units[i].Targets()
			n := min(k, len(pos))
			got[i], pos = pos[:n:n], pos[n:]
			for range k - n {
				got[i] = append(got[i], "")
			}
		}
	}
	var out []string
	for _, p := range got {
		out = append(out, p...)
	}
	return out
}

// partsOutcome gathers the outcomes of a dispatch's calls to several
// partitions, some known when publishAll returns, the others later (on
// the goroutines of the flushes that carried them), and tells after once
// every call has ended and publishCluster has returned a context's error:
// only then is its caller waiting for a late outcome.
type partsOutcome struct {
	after   func([]string, late.Outcome)
	inOrder func([][]string) []string

	mu             sync.Mutex
	left           int        // calls not ended
	pos            [][]string // per call, its positions once done
	done, notRun   int
	decided, waits bool // publishCluster returned; with a context's error
}

// end takes the result of call gi.
func (p *partsOutcome) end(gi int, pos []string, err error) {
	p.mu.Lock()
	switch outcomeOf(err) {
	case late.Done:
		p.pos[gi] = pos
		p.done++
	case late.NotRun:
		p.notRun++
	}
	p.left--
	p.tell()
}

// returned says publishCluster returned, with a context's error or not.
func (p *partsOutcome) returned(contextErr bool) {
	p.mu.Lock()
	p.decided, p.waits = true, contextErr
	p.tell()
}

// tell calls after, outside p.mu, which it releases, once both are known.
func (p *partsOutcome) tell() {
	if p.left > 0 || !p.decided || !p.waits {
		p.mu.Unlock()
		return
	}
	p.waits = false // once
	n := len(p.pos)
	done, notRun := p.done, p.notRun
	p.mu.Unlock()
	switch {
	case done == n:
		p.after(p.inOrder(p.pos), late.Done)
	case notRun == n:
		p.after(nil, late.NotRun)
	default:
		p.after(nil, late.Unknown) // partly delivered
	}
}

// usersBut returns the users of all (each named once) that unit does not
// name, or nil if there are none.
func usersBut(all, unit []string) []string {
	if len(all) == len(unit) {
		return nil
	}
	in := make(map[string]struct{}, len(unit))
	for _, u := range unit {
		in[u] = struct{}{}
	}
	out := make([]string, 0, len(all)-len(unit))
	for _, u := range all {
		if _, ok := in[u]; !ok {
			out = append(out, u)
		}
	}
	return out
}

// unsentError reports whether err, publishError's, says the call never
// reached Redis (unavailable): a non-nil error that is not, or nil, means
// it ran or may have.
func unsentError(err error) bool {
	e, ok := errors.AsType[*event.Error](err)
	return ok && e.Code == proto.CodeUnavailable
}
