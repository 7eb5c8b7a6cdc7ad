// Package proto is the Go form of the switchboard wire contract, v2
// (docs/protocol.md): the client envelope and the server frames of the WebSocket,
// the NATS request and reply between the gateway and handlers-svc, the Redis
// dispatch message, subject and channel names, room names, error codes and close codes.
//
// The package depends on the standard library only. Decoders of outside input
// (DecodeEnvelope, DecodeDispatch, DecodeReply, DecodeResult) never panic and return an
// *Error whose Message says, for a person, what is wrong; these values may
// be shared between calls, so callers must not modify them. Encoders append to a
// caller's buffer so the hot paths can reuse memory.
package proto
