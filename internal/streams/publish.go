package streams

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
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
}

// Kinds of unit (the script's "kind").
const (
	kindUsers     = "u"
	kindBroadcast = "b"
)

var nullArgs = []byte("null")

// NewUnit returns the unit of d, which must be valid (event name, args) and
// name each user once. With record false, or no users and no broadcast, the
// dispatch is published only: transient. The published body is d's
// (proto.AppendDispatch) with the positions the script assigns.
func NewUnit(d *proto.Dispatch, record bool) *Unit {
	head := proto.AppendDispatchHead(make([]byte, 0, 128+len(d.Args)), d)
	u := &Unit{}
	kind, n := kindUsers, 0
	switch {
	case !record:
	case d.Broadcast:
		kind, n = kindBroadcast, 1
		u.keys = []string{proto.BroadcastStreamKey, proto.BroadcastMetaKey}
	case len(d.Users) > 0:
		n = len(d.Users)
		u.keys = make([]string, 0, 2*n)
		for _, user := range d.Users {
			u.keys = append(u.keys, proto.UserStreamKey(user), proto.UserMetaKey(user))
		}
	}
	args := []byte(d.Args)
	if args == nil {
		args = nullArgs
	}
	u.args = make([]any, 0, 6+n)
	u.args = append(u.args, proto.Channel, head, d.Event, args, n, kind)
	if kind == kindUsers {
		for _, user := range d.Users[:n] {
			u.args = append(u.args, proto.AppendString(make([]byte, 0, len(user)+2), user))
		}
	}
	return u
}

// Event returns the name of the unit's event.
func (u *Unit) Event() string { return u.args[2].(string) }

// PublishCall returns the keys and arguments of one publish script call
// that records and publishes units, in order, all or none, keeping events
// for window and metas for metaTTL.
func PublishCall(units []*Unit, window, metaTTL time.Duration) (keys []string, args []any) {
	nk, na := 1, 4
	for _, u := range units {
		nk += len(u.keys)
		na += len(u.args)
	}
	keys = make([]string, 0, nk)
	keys = append(keys, proto.RunKey)
	args = make([]any, 0, na)
	args = append(args, window.Milliseconds(), int64(metaTTL/time.Second), NewEpoch(), len(units))
	for _, u := range units {
		keys = append(keys, u.keys...)
		args = append(args, u.args...)
	}
	return keys, args
}

// Publish records and publishes dispatches in one call of the script and
// returns the positions assigned, in target order, and how many of the
// dispatches' publishes no subscriber received: the simple form of what
// handlers-svc's dispatcher does with pipelines, for tools and tests. The
// dispatches must be valid, each naming a user once.
func Publish(ctx context.Context, rdb redis.Scripter, window time.Duration, ds ...*proto.Dispatch) (pos []string, unheard int, err error) {
	units := make([]*Unit, len(ds))
	for i, d := range ds {
		units[i] = NewUnit(d, window > 0)
	}
	keys, args := PublishCall(units, window, MetaTTL)
	res, err := PublishScript.Run(ctx, rdb, keys, args...).StringSlice()
	if err != nil {
		return nil, 0, err
	}
	return SplitResult(res)
}

// SplitResult splits the publish script's reply into the positions it
// assigned, in target order, and the number of its PUBLISHes that no
// subscriber received: with one shared channel, dispatches that reached
// no gateway worker, so no socket, however many the users have (only the
// streams keep them, for a resume).
func SplitResult(res []string) (pos []string, unheard int, err error) {
	if len(res) == 0 {
		return nil, 0, fmt.Errorf("publish script: an empty reply")
	}
	n, err := strconv.Atoi(res[len(res)-1])
	if err != nil {
		return nil, 0, fmt.Errorf("publish script: the reply's last element %q is not a count: %w", res[len(res)-1], err)
	}
	return res[:len(res)-1], n, nil
}
