package streams

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/proto"
)

// publishSrc is the script that records and publishes dispatches in one
// atomic step; its header documents its keys and arguments, which Unit and
// PublishCall build.
//
//go:embed publish.lua
var publishSrc string

// PublishScript records dispatches in their streams and publishes them.
var PublishScript = redis.NewScript(publishSrc)

// Unit is one dispatch's share of a publish script call: the keys of the
// streams it is recorded in and its arguments.
type Unit struct {
	keys []string
	args []any
	// part is the partition all of the unit's keys and user channels are
	// in (proto.PartitionOf), anyPartition when it has none (a transient
	// dispatch on the shared channel), or mixedPartition when they span
	// several: a unit only one Redis takes, not a cluster.
	part int
}

// Partition values of a Unit that names no single partition.
const (
	anyPartition   = -1
	mixedPartition = -2
)

// usersPartition returns the partition of users, or mixedPartition when
// they are in several (or there are none).
func usersPartition(users []string) int {
	p := mixedPartition
	for i, user := range users {
		q := proto.PartitionOf(user)
		if i > 0 && q != p {
			return mixedPartition
		}
		p = q
	}
	return p
}

// Kinds of unit (the script's "kind").
const (
	kindUsers     = "u"
	kindBroadcast = "b"
	kindPerUser   = "p" // to users, each on their own channel, recorded
	kindPerUserTx = "t" // to users, each on their own channel, transient
	// p and t with SPUBLISH (Unit.Shard)
	kindPerUserSharded   = "P"
	kindPerUserTxSharded = "T"
)

var nullArgs = []byte("null")

// NewUnit returns the unit of d, which must be valid (event name, args) and
// name each user once. With record false, or no users and no broadcast, the
// dispatch is published only: transient. The published body is d's
// (proto.AppendDispatch) with the positions the script assigns.
func NewUnit(d *proto.Dispatch, record bool) *Unit {
	head := proto.AppendDispatchHead(make([]byte, 0, 128+len(d.Args)), d)
	u := &Unit{part: anyPartition}
	kind, n := kindUsers, 0
	switch {
	case !record:
	case d.Broadcast:
		kind, n = kindBroadcast, 1
		u.keys = []string{proto.BroadcastStreamKey, proto.BroadcastMetaKey}
		u.part = proto.BroadcastPartition
	case len(d.Users) > 0:
		n = len(d.Users)
		u.part = usersPartition(d.Users)
		u.keys = make([]string, 0, 2*n)
		for _, user := range d.Users {
			u.keys = append(u.keys, proto.UserStreamKey(user), proto.UserMetaKey(user))
		}
	}
	args := []byte(d.Args)
	if args == nil {
		args = nullArgs
	}
	u.args = make([]any, 0, 7+n)
	u.args = append(u.args, proto.Channel, head, d.Event, args, n, kind, exceptArg(d.Except))
	if kind == kindUsers {
		for _, user := range d.Users[:n] {
			u.args = append(u.args, proto.AppendString(make([]byte, 0, len(user)+2), user))
		}
	}
	return u
}

// exceptArg returns the script's except value of a dispatch leaving out
// the connections except (proto.Dispatch.Except): their JSON array, as
// the body writes it and the stream entries keep it, or "" for none.
func exceptArg(except []string) []byte {
	if len(except) == 0 {
		return []byte{}
	}
	out := []byte{'['}
	for i, c := range except {
		if i > 0 {
			out = append(out, ',')
		}
		out = proto.AppendString(out, c)
	}
	return append(out, ']')
}

// Event returns the name of the unit's event.
func (u *Unit) Event() string { return u.args[2].(string) }

// PerUser reports whether the unit is published on its users' own
// channels (NewPerUserUnit) rather than on proto.Channel.
func (u *Unit) PerUser() bool {
	kind := u.args[5].(string)
	return kind == kindPerUser || kind == kindPerUserTx || kind == kindPerUserSharded || kind == kindPerUserTxSharded
}

// Partition returns the partition of the unit's keys and channels, and
// false when it has none (any call may carry it) or when they span
// several (only a call on one Redis may carry it).
func (u *Unit) Partition() (p int, ok bool) { return u.part, u.part >= 0 }

// Mixed reports whether the unit's keys or channels span several
// partitions: a Redis Cluster cannot take it in one script call, so
// dispatches for a cluster are split by partition first (SplitUsers).
func (u *Unit) Mixed() bool { return u.part == mixedPartition }

// Shard has a unit made by NewPerUserUnit publish with SPUBLISH (sharded
// pub/sub) rather than PUBLISH: its users' channels on a Redis Cluster,
// where they are in the slot of their streams. It returns u.
func (u *Unit) Shard() *Unit {
	switch u.args[5].(string) {
	case kindPerUser:
		u.args[5] = kindPerUserSharded
	case kindPerUserTx:
		u.args[5] = kindPerUserTxSharded
	}
	return u
}

// perUserTail ends the body of a per-user unit's message after its one
// user id: the form proto.AppendDispatchHead writes for a dispatch to one
// user and no connection.
const perUserTail = `],"conns":[],"broadcast":false`

// NewPerUserUnit returns the unit of d, a dispatch to users only (no
// connection, no broadcast), published on each user's own channel
// (proto.UserChannel; FANOUT_MODE=per_user) instead of proto.Channel: one
// message per user, naming that user only and carrying that user's
// position, as NewUnit's message would for a dispatch to that user alone.
// d must be valid and name each user once, and at least one. With record
// false the messages are transient.
func NewPerUserUnit(d *proto.Dispatch, record bool) *Unit {
	one := proto.Dispatch{Event: d.Event, Args: d.Args, Transient: d.Transient, Except: d.Except}
	head := proto.AppendDispatchHead(make([]byte, 0, 128+len(d.Args)), &one)
	// head ends with the empty user list and the tail; the script puts
	// each user id in between.
	tail := perUserTail
	if d.Transient {
		tail += proto.TransientField
	}
	if len(d.Except) > 0 {
		tail += proto.ExceptField + string(exceptArg(d.Except))
	}
	head = head[:len(head)-len(tail)]
	u := &Unit{part: usersPartition(d.Users)}
	n, kind := len(d.Users), kindPerUserTx
	if record {
		kind = kindPerUser
		u.keys = make([]string, 0, 2*n)
		for _, user := range d.Users {
			u.keys = append(u.keys, proto.UserStreamKey(user), proto.UserMetaKey(user))
		}
	}
	args := []byte(d.Args)
	if args == nil {
		args = nullArgs
	}
	u.args = make([]any, 0, 7+2*n)
	u.args = append(u.args, tail, head, d.Event, args, n, kind, exceptArg(d.Except))
	for _, user := range d.Users {
		u.args = append(u.args, proto.AppendString(make([]byte, 0, len(user)+2), user), proto.UserChannel(user))
	}
	return u
}

// The arguments of a publish script call (PublishCall, PartitionCall)
// begin with CallHeader values of the call's own: the history window, the
// meta TTL, the epoch seed (at CallSeed), the number of units (at
// CallUnits) and the run check; the units' arguments follow. Two calls with the same run key
// and the same window, TTL and run check can be merged into one that
// carries both calls' units, in order (handlers-svc's publisher does).
const (
	CallHeader = 5
	CallSeed   = 2
	CallUnits  = 3
)

// PublishCall returns the keys and arguments of one publish script call
// on one Redis that records and publishes units, in order, all or none,
// keeping events for window and metas for metaTTL: but for a unit that
// Redis fails while the script runs it, which fails alone (UnitError). On
// one Redis every stream goes by one run key, partition
// proto.BroadcastPartition's.
func PublishCall(units []*Unit, window, metaTTL time.Duration) (keys []string, args []any) {
	return publishCall(proto.BroadcastPartition, false, units, window, metaTTL)
}

// PartitionCall is PublishCall for a Redis Cluster: one call of the
// script in partition p, whose units must all be of p, or of none
// (Group). The call runs on the master of p's slot, by p's run key, which
// the script checks against the server's own run id (liveRun).
func PartitionCall(p int, units []*Unit, window, metaTTL time.Duration) (keys []string, args []any) {
	return publishCall(p, true, units, window, metaTTL)
}

// liveRun is the scripts' flag to check the run key against the server's
// own run. On a Redis Cluster, "1": the run id and the replication id
// (INFO server and replication, about 15 µs a call): go-redis keeps
// connections to every node, opened while it may have been a replica
// (CLUSTER SLOTS asks any node), or before it restarted and served its
// slots, and reuses them, so OnConnect cannot be relied on to have
// recorded the current run. On one Redis, "r": the replication id only
// (INFO replication, about 5 µs), which a promotion changes: a restart
// drops every connection and OnConnect records the new run, but a
// connection made while the server was a replica (a REDIS_URL host that
// moves to it), or one idle through its time as a replica (a failback),
// outlives its promotion.
func liveRun(cluster bool) string {
	if cluster {
		return "1"
	}
	return "r"
}

func publishCall(p int, cluster bool, units []*Unit, window, metaTTL time.Duration) (keys []string, args []any) {
	nk, na := 1, 5
	for _, u := range units {
		nk += len(u.keys)
		na += len(u.args)
	}
	keys = make([]string, 0, nk)
	keys = append(keys, proto.RunKey(p))
	args = make([]any, 0, na)
	args = append(args, window.Milliseconds(), int64(metaTTL/time.Second), NewEpoch(), len(units), liveRun(cluster))
	for _, u := range units {
		keys = append(keys, u.keys...)
		args = append(args, u.args...)
	}
	return keys, args
}

// Publish records and publishes dispatches and returns the positions
// assigned, in target order, and how many of the dispatches' publishes no
// subscriber received: the simple form of what handlers-svc's dispatcher
// does with pipelines, for tools and tests. On one Redis it is one call of
// the script, all or none (but for a unit Redis fails, which fails
// alone); on a Redis Cluster (rdb a *redis.ClusterClient) one call per
// partition (SplitUsers, Group), one after the other, each tried whatever
// the others' outcome. The dispatches must be valid, each naming a user
// once.
//
// The error is the first failure: a *UnitError (errors.As) whose Unit is
// the index in ds of the dispatch Redis failed while the script ran it,
// or Redis's error for a call it refused or did not answer. When other
// dispatches, or other partitions of the same dispatch, were recorded
// and published all the same, or the failed dispatch had recorded some
// of its users before it failed, the error wraps ErrPartlyPublished and
// pos comes with it: the position of each target that has it, "" for
// each that did not get it (or, where Redis did not answer, may have);
// without ErrPartlyPublished nothing of ds was recorded, unless Redis did
// not answer (a failed transient dispatch may have been published to
// some of its users: UnitError.Wrote).
func Publish(ctx context.Context, rdb redis.Scripter, window time.Duration, ds ...*proto.Dispatch) (pos []string, unheard int, err error) {
	if !IsCluster(rdb) {
		units := make([]*Unit, len(ds))
		for i, d := range ds {
			units[i] = NewUnit(d, window > 0)
		}
		keys, args := PublishCall(units, window, MetaTTL)
		res, err := PublishScript.Run(ctx, rdb, keys, args...).StringSlice()
		if err != nil {
			return nil, 0, err
		}
		r, err := ParseResult(res)
		switch {
		case err != nil:
			return nil, 0, err
		case len(r.Failed) == 0:
			return r.Pos, r.Unheard, nil
		case len(r.Failed) < len(units) || recorded(r.Pos): // the others ran, or a failed one recorded some
			return r.Pos, r.Unheard, fmt.Errorf("%w: %w", ErrPartlyPublished, &r.Failed[0])
		}
		return nil, 0, &r.Failed[0] // a unit's index in the call is its dispatch's
	}
	var units []*Unit
	var of []int // of[i] is the index in ds of units[i]'s dispatch
	for di, d := range ds {
		for _, part := range SplitUsers(d) {
			units = append(units, NewUnit(part, window > 0))
			of = append(of, di)
		}
	}
	got := make([][]string, len(units))
	var first error
	ran := false // a call ran some of its units
	for _, g := range Group(units) {
		keys, args := PartitionCall(g.Partition, g.Units, window, MetaTTL)
		res, err := PublishScript.Run(ctx, rdb, keys, args...).StringSlice()
		var r PublishResult
		if err == nil {
			r, err = ParseResult(res)
		}
		if err != nil {
			if first == nil {
				first = err
			}
			continue // the next partitions are tried all the same
		}
		unheard += r.Unheard
		p := r.Pos
		for _, i := range g.Index {
			k := min(units[i].Targets(), len(p))
			got[i], p = p[:k], p[k:]
		}
		if len(r.Failed) < len(g.Units) || recorded(r.Pos) {
			ran = true
		}
		if len(r.Failed) > 0 && first == nil {
			ue := r.Failed[0]
			if ue.Unit < len(g.Index) {
				ue.Unit = of[g.Index[ue.Unit]] // the dispatch's index, not the unit's in this call
			}
			first = &ue
		}
	}
	if first != nil && !ran {
		return nil, 0, first
	}
	for i, p := range got {
		pos = append(pos, p...)
		for range units[i].Targets() - len(p) {
			pos = append(pos, "") // its call failed
		}
	}
	if first != nil {
		return pos, unheard, fmt.Errorf("%w: %w", ErrPartlyPublished, first)
	}
	return pos, unheard, nil
}

// ErrPartlyPublished is wrapped by Publish's error when some of its
// dispatches, or some partitions of one, were recorded and published and
// others failed (or failed after recording some of their users): the
// positions it returns with the error are those of the targets that got
// it, "" for the others.
var ErrPartlyPublished = errors.New("partly published: some of the dispatches, or of their partitions, were recorded and published")

// recorded reports whether pos, a reply's positions, holds any: some
// target has the event.
func recorded(pos []string) bool {
	for _, p := range pos {
		if p != "" {
			return true
		}
	}
	return false
}

// SplitResult splits the publish script's reply into the positions it
// assigned, in target order, and the number of its PUBLISHes that no
// subscriber received: with one shared channel, dispatches that reached
// no gateway worker, so no socket, however many the users have (only the
// streams keep them, for a resume). When a unit failed (ParseResult), its
// error is the first failed unit's *UnitError: the other units of the
// call ran all the same.
func SplitResult(res []string) (pos []string, unheard int, err error) {
	r, err := ParseResult(res)
	if err != nil {
		return nil, 0, err
	}
	if len(r.Failed) > 0 {
		return nil, 0, &r.Failed[0]
	}
	return r.Pos, r.Unheard, nil
}

// PublishResult is the publish script's reply (ParseResult).
type PublishResult struct {
	// Pos holds the positions assigned, in target order; each target of
	// a unit that failed has "" (a position is never empty), but for
	// those the unit had recorded before it failed: they have the event,
	// at that position.
	Pos []string
	// Unheard is the number of PUBLISHes on a shared channel that no
	// subscriber received (SplitResult).
	Unheard int
	// Failed holds the units Redis failed while the script ran them, in
	// order.
	Failed []UnitError
}

// UnitError is an error Redis raised while the publish script ran one of
// its call's units (WRONGTYPE on a user's stream or meta key that
// something else overwrote, say). The script runs each unit apart: the
// units before and after it in the call ran as if it had not been there,
// and Redis kept what the failed unit wrote before the error: the users
// it had recorded have their positions in the reply (PublishResult.Pos).
type UnitError struct {
	// Unit is the unit's index in its call, from 0; in Publish's error,
	// the index of the dispatch among those it was given.
	Unit int
	// Wrote says the unit had appended to a stream or published before
	// it failed: some of it may have been delivered. Without it, nothing
	// of the unit was recorded or published.
	Wrote bool
	// Err is Redis's error.
	Err string
}

func (e *UnitError) Error() string {
	what := "after it recorded or published some of it"
	if !e.Wrote {
		what = "before it recorded or published any of it"
	}
	return fmt.Sprintf("publish script: unit %d failed inside Redis %s: %s", e.Unit, what, e.Err)
}

// ParseResult reads the publish script's reply: the positions assigned,
// in target order ("" for each target a failed unit did not record), then for
// each unit that failed "!", its index in the call from 1, "w" when it had
// written or "-", a space and Redis's error, then the count of unheard
// PUBLISHes. A reply without failed units is what SplitResult always
// read.
func ParseResult(res []string) (PublishResult, error) {
	if len(res) == 0 {
		return PublishResult{}, fmt.Errorf("publish script: an empty reply")
	}
	n, err := strconv.Atoi(res[len(res)-1])
	if err != nil || n < 0 {
		// A negative count would wrap the dispatcher's unsigned counter.
		return PublishResult{}, fmt.Errorf("publish script: the reply's last element %q is not a count", res[len(res)-1])
	}
	res = res[:len(res)-1]
	end := len(res)
	for end > 0 && strings.HasPrefix(res[end-1], "!") {
		end--
	}
	r := PublishResult{Pos: res[:end:end], Unheard: n}
	for _, f := range res[end:] {
		num, rest, ok := strings.Cut(f[1:], " ")
		if !ok || len(num) < 2 || (num[len(num)-1] != 'w' && num[len(num)-1] != '-') {
			return PublishResult{}, fmt.Errorf("publish script: the reply's failed unit %q is not readable", f)
		}
		i, err := strconv.Atoi(num[:len(num)-1])
		if err != nil || i < 1 {
			return PublishResult{}, fmt.Errorf("publish script: the reply's failed unit %q is not readable", f)
		}
		r.Failed = append(r.Failed, UnitError{Unit: i - 1, Wrote: num[len(num)-1] == 'w', Err: rest})
	}
	return r, nil
}
