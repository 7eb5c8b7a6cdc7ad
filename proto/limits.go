package proto

// MaxDispatchArgs is the most bytes the JSON args of one dispatch may have
// (docs/protocol.md section 4). handlers-svc refuses a bigger dispatch with
// bad_request and never publishes it: every socket it names would queue
// it whole, so one handler's outsized dispatch could fill the send queues
// of thousands of sockets at once. The largest built-in dispatch, a
// 4,000-character message every character of which JSON escapes, is a
// third of it.
const MaxDispatchArgs = 64 << 10

// MaxEventFrame is the most bytes of the frame of one dispatched event, as
// the gateway writes it to a socket (AppendEventAt): an event name of
// MaxEventLen characters, a user id of MaxUserLen bytes each of which JSON
// escapes to six ("<" is \u003c), args of MaxDispatchArgs bytes, and a
// position of MaxPosLen bytes under "bpos", the longer key. A socket's send
// queue smaller than this could never take such an event: the gateway
// would close the socket at every replay of it (GATEWAY_SEND_QUEUE_BYTES).
const MaxEventFrame = len(`{"event":"","id":"","args":,"bpos":""}`) +
	MaxEventLen + maxEscape*MaxUserLen + MaxDispatchArgs + MaxPosLen

// maxEscape is the most bytes AppendString writes for one byte of a
// string (an ASCII character it writes as \u00XX).
const maxEscape = len(`\u0000`)

// MaxResult is the most bytes the JSON result of one handler may have
// (docs/protocol.md section 3): the ack that carries it is queued whole to
// one socket, like a dispatched event, so it has the same bound.
// handlers-svc answers a bigger result with handler_error, and the gateway
// does the same for one that reaches it from elsewhere.
const MaxResult = MaxDispatchArgs

// MaxAckFrame is the most bytes of an ack frame (AppendAckResult): a user
// id of MaxUserLen bytes and a ref of MaxRefLen characters, every one of
// which JSON escapes to six bytes, and a result of MaxResult bytes.
const MaxAckFrame = len(`{"event":"ack","id":"","ref":"","args":}`) +
	maxEscape*MaxUserLen + maxEscape*MaxRefLen + MaxResult

// MaxResyncReason is the most bytes of a resync frame's reason; the
// gateway's own are plain ASCII, under 40.
const MaxResyncReason = 64

// MaxResyncFrame is the most bytes of a resync frame (AppendResync): a
// user id of MaxUserLen bytes every one of which JSON escapes to six, both
// positions of MaxPosLen bytes, and a reason of MaxResyncReason.
const MaxResyncFrame = len(`{"event":"resync","id":"","args":{"pos":"","bpos":"","reason":""}}`) +
	maxEscape*MaxUserLen + 2*MaxPosLen + MaxResyncReason

// MaxHeartbeatFrame is the most bytes of a heartbeat frame
// (AppendHeartbeat, AppendHeartbeatAt), for a user id of MaxUserLen
// escaped bytes and both positions of MaxPosLen bytes.
const MaxHeartbeatFrame = len(`{"event":"","id":"","pos":"","bpos":""}`) + len(EventHeartbeat) +
	maxEscape*MaxUserLen + 2*MaxPosLen
