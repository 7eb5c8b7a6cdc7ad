package proto

// MaxDispatchArgs is the most bytes the JSON args of one dispatch may have
// (docs/protocol.md section 4). handlers-svc refuses a bigger dispatch with
// bad_request and never publishes it: every socket it names would queue
// it whole, so one handler's outsized dispatch could fill the send queues
// of thousands of sockets at once. The largest built-in dispatch, a
// 4,000-character message every character of which JSON escapes, is a
// third of it.
const MaxDispatchArgs = 64 << 10
