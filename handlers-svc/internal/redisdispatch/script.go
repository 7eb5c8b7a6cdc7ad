package redisdispatch

import (
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/proto"
)

// publishSrc is the script that records and publishes dispatches in one
// atomic step (docs/protocol.md section 6); its header documents its keys
// and arguments, which unit and scriptCall build.
//
//go:embed publish.lua
var publishSrc string

var publishScript = redis.NewScript(publishSrc)

// unit is one dispatch's share of a publish script call: the keys of the
// streams it is recorded in and its arguments.
type unit struct {
	keys []string
	args []any
}

// Kinds of unit (the script's "kind").
const (
	kindUsers     = "u"
	kindBroadcast = "b"
)

// newUnit returns the unit of msg, already checked, whose body head is
// head. With record false the dispatch is published only (transient).
func newUnit(msg *proto.Dispatch, head []byte, record bool) *unit {
	u := &unit{}
	kind, n := kindUsers, 0
	switch {
	case !record:
	case msg.Broadcast:
		kind, n = kindBroadcast, 1
		u.keys = []string{proto.BroadcastStreamKey, proto.BroadcastMetaKey}
	case len(msg.Users) > 0:
		n = len(msg.Users)
		u.keys = make([]string, 0, 2*n)
		for _, user := range msg.Users {
			u.keys = append(u.keys, proto.UserStreamKey(user), proto.UserMetaKey(user))
		}
	}
	args := msg.Args
	if args == nil {
		args = nullArgs
	}
	u.args = make([]any, 0, 6+n)
	u.args = append(u.args, proto.Channel, head, msg.Event, []byte(args), n, kind)
	if kind == kindUsers {
		for _, user := range msg.Users[:n] {
			u.args = append(u.args, proto.AppendString(make([]byte, 0, len(user)+2), user))
		}
	}
	return u
}

var nullArgs = []byte("null")

// scriptCall returns the keys and arguments of one script call that
// records and publishes units, in order, all or none.
func scriptCall(units []*unit, window, metaTTL time.Duration) (keys []string, args []any) {
	nk, na := 1, 4
	for _, u := range units {
		nk += len(u.keys)
		na += len(u.args)
	}
	keys = make([]string, 0, nk)
	keys = append(keys, proto.RunKey)
	args = make([]any, 0, na)
	args = append(args, window.Milliseconds(), int64(metaTTL/time.Second), newEpochSeed(), len(units))
	for _, u := range units {
		keys = append(keys, u.keys...)
		args = append(args, u.args...)
	}
	return keys, args
}

// newEpochSeed returns a random prefix for the epochs one call may start:
// 64 bits in base 36, so an epoch never repeats one that was lost.
func newEpochSeed() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails, per crypto/rand
	return strconv.FormatUint(binary.LittleEndian.Uint64(b[:]), 36)
}
