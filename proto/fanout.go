package proto

import "fmt"

// FanoutMode is how dispatches travel from handlers-svc to the gateway
// workers (FANOUT_MODE, docs/protocol.md section 4). Both services must run
// the same mode.
type FanoutMode string

const (
	// FanoutShared publishes every dispatch on Channel, which every worker
	// subscribes to: the default.
	FanoutShared FanoutMode = "shared"
	// FanoutPerUser publishes a dispatch to users on each target user's
	// channel (UserChannel), which a worker subscribes to while it holds a
	// socket of that user; broadcasts and dispatches to connections stay
	// on Channel, which every worker still subscribes to.
	FanoutPerUser FanoutMode = "per_user"
)

// ParseFanoutMode returns the mode s names, "" being the default
// (FanoutShared), or an error naming the modes there are.
func ParseFanoutMode(s string) (FanoutMode, error) {
	switch FanoutMode(s) {
	case "", FanoutShared:
		return FanoutShared, nil
	case FanoutPerUser:
		return FanoutPerUser, nil
	}
	return "", fmt.Errorf("%q is not a fan-out mode: want %s or %s", s, FanoutShared, FanoutPerUser)
}

// UserChannel returns the pub/sub channel of user's dispatches in
// FanoutPerUser mode: "sb:{<tag>}:u:<user>:c", beside the user's stream and
// meta keys (UserStreamKey, UserMetaKey), in the same partition, so that on
// a Redis Cluster all three share one hash slot (and the channel is a
// sharded one, SPUBLISH/SSUBSCRIBE, on the node that holds the streams).
func UserChannel(user string) string { return userPrefix(user) + ":c" }

// PerUserMarkerChannel is a channel that gateway workers in FanoutPerUser
// mode subscribe to beside Channel, and on which nothing is published: a
// worker subscribed to Channel but not to it runs FanoutShared, and a
// handlers-svc publishing per user can tell (with PUBSUB NUMSUB) that the
// sockets of that worker get no dispatch to their users.
const PerUserMarkerChannel = "switchboard:per_user"
