package proto

// NATS subjects and the queue group of handlers-svc (docs/protocol.md section 3).
const (
	// SubjectPrefix is prepended to an event name to form its request subject.
	SubjectPrefix = "handlers."
	// SubjectAll is the wildcard handlers-svc instances subscribe to.
	SubjectAll = "handlers.>"
	// QueueGroup is the queue group that shares requests between instances.
	QueueGroup = "handlers-svc"
)

// Channel is the Redis pub/sub channel every gateway worker subscribes to
// (docs/protocol.md section 4).
const Channel = "switchboard:outgoing"

// Redis keys of the recovery streams (docs/protocol.md section 6). Each stream has
// a meta hash beside it: its epoch (e), top offset (s), the time of its top
// entry in ms (t) and the run of the Redis server that wrote it (r). Every
// key starts with its partition's hash tag, "sb:{<tag>}:" (partition.go);
// the run keys are RunKey's.
const (
	// BroadcastStreamKey and BroadcastMetaKey are the broadcast stream, in
	// partition BroadcastPartition.
	BroadcastStreamKey = "sb:{18}:b:s"
	BroadcastMetaKey   = "sb:{18}:b:m"
)

// UserStreamKey returns the key of user's stream: "sb:{<tag>}:u:<user>:s",
// tag being the user's partition's (PartitionOf).
func UserStreamKey(user string) string { return userPrefix(user) + ":s" }

// UserMetaKey returns the key of the meta hash of user's stream.
func UserMetaKey(user string) string { return userPrefix(user) + ":m" }

// UserPresenceKey returns the key of user's presence (docs/protocol.md
// section 7): "sb:{<tag>}:u:<user>:p", a sorted set in the user's
// partition, beside its stream, whose members are the ids of the user's
// open sockets and whose scores are the Unix times in ms their leases
// expire. Gateway workers write it; handlers-svc reads it.
func UserPresenceKey(user string) string { return userPrefix(user) + ":p" }

// userPrefix returns "sb:{<tag>}:u:<user>", the start of user's keys and
// channel.
func userPrefix(user string) string {
	return partitionPrefix(PartitionOf(user)) + "u:" + user
}

// Server-side event names the gateway itself sends (docs/protocol.md section 2).
// No dispatch may name one: handlers-svc refuses it and the gateway drops
// it (Reserved).
const (
	EventConnected = "connected"
	EventAck       = "ack"
	EventError     = "error"
	EventResync    = "resync"
)

// EventHeartbeat is the event of the frame the gateway sends, every ping
// interval, to a socket that asked for it with QueryHeartbeat
// (docs/protocol.md section 2): a sign of life a browser can see, which
// WebSocket pings are not. Its "$" lies outside EventPattern, so no app
// event and no dispatch can ever be named so.
const EventHeartbeat = "$ping"

// QueryHeartbeat is the query parameter of the upgrade request with which
// a client asks for heartbeat frames: heartbeat=1.
const QueryHeartbeat = "heartbeat"

// Reserved reports whether event is one of the gateway's own events, which
// no dispatch may name.
func Reserved(event string) bool {
	switch event {
	case EventConnected, EventAck, EventError, EventResync:
		return true
	}
	return false
}

// Subject returns the NATS subject that carries requests for event.
func Subject(event string) string { return SubjectPrefix + event }

// EventFromSubject returns the event name of a request subject, and false if
// subject does not start with SubjectPrefix.
func EventFromSubject(subject string) (string, bool) {
	if len(subject) <= len(SubjectPrefix) || subject[:len(SubjectPrefix)] != SubjectPrefix {
		return "", false
	}
	return subject[len(SubjectPrefix):], true
}

// Rooms (docs/protocol.md section 5): user-level groups whose membership
// lives in Redis.
const (
	// RoomPattern is the form of a room name.
	RoomPattern = `^[A-Za-z0-9_.:-]{1,64}$`
	// MaxRoomLen is the longest room name, in bytes.
	MaxRoomLen = 64
	// MaxRoomMembers is the most members a room holds; a join beyond it
	// is refused with bad_request.
	MaxRoomMembers = 1000
)

// MaxRoomsPerUser is the most rooms one user is a member of; a join
// beyond it is refused with bad_request. Each room is a Redis set kept
// as long as it has members: without a bound one user could make rooms
// without end.
const MaxRoomsPerUser = 1000

// ValidRoomName reports whether s matches RoomPattern.
func ValidRoomName(s string) bool {
	if len(s) == 0 || len(s) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '.' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// UserRoomsKey returns the key of the Redis set of the rooms user is a
// member of ("sb:{<tag>}:u:<user>:r"), which bounds them by
// MaxRoomsPerUser.
func UserRoomsKey(user string) string { return userPrefix(user) + ":r" }

// RoomMembersKey returns the key of the Redis set of room's members (user
// ids).
func RoomMembersKey(room string) string { return "sb:r:" + room + ":m" }

// RoomJoinKey returns the key of user's join of room while its
// room_joined may still be undone (the join's token, with a TTL):
// "{sb:r:<room>:m}:j:<user>", whose hash tag is the whole of
// RoomMembersKey (a room name holds no braces, and the tag is the first
// braces), so on a Redis Cluster the two share a slot and one script
// reads and writes both.
func RoomJoinKey(room, user string) string { return "{" + RoomMembersKey(room) + "}:j:" + user }

// UserIdemKey returns the key of the record of user's emit with
// idempotency key idem (ValidIdem): "sb:{<tag>}:i:<idem>:u:<user>", in
// user's partition. It starts apart from user's other keys ("...:u:"),
// and idem holds no ':', so no user and key name another user's key.
func UserIdemKey(user, idem string) string {
	return partitionPrefix(PartitionOf(user)) + "i:" + idem + ":u:" + user
}

// IdemHeader is the NATS request header that carries an envelope's
// idempotency key from the gateway to handlers-svc (docs/protocol.md
// section 3).
const IdemHeader = "Switchboard-Idem"

// UnrunHeader, set to "1" on a reply, says that handlers-svc answered the
// request without running anything for its event (no handler slot, an
// idempotency key used by another request, a request it could not read):
// the reply says nothing of whether the event has a handler, so the
// gateway does not take the event name for one (a label of its metrics).
const UnrunHeader = "Switchboard-Unrun"

// IdempotencyKey returns the Redis key that holds the dispatch API's
// record of an Idempotency-Key (docs/protocol.md section 7):
// "sb:idem:<key>". It is one key in no partition: on a Redis Cluster it
// lies in whatever slot its name hashes to (a key that holds "{...}"
// chooses its own), since no script touches it with another key.
func IdempotencyKey(key string) string { return "sb:idem:" + key }
