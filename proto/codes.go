package proto

// Code is a wire error code: what a client sees in an error frame's args
// and in the body of a refused upgrade, and what a NATS reply carries
// (docs/protocol.md sections 2 and 3). Codes lists the ones switchboard
// itself uses, which clients may switch on; a handler may fail with a code
// of its own, which the gateway passes through, so the wire's set is not
// closed. A Code is encoded in JSON as a plain string.
type Code string

// Error codes of error frames and NATS replies (docs/protocol.md sections 2 and 3).
const (
	CodeBadRequest   Code = "bad_request"   // not JSON, not an object, bad event or ref, binary frame, or args rejected by a handler
	CodeUnknownEvent Code = "unknown_event" // no handler is registered for the event
	CodeUnavailable  Code = "unavailable"   // NATS, handlers-svc or Redis cannot be reached
	CodeTimeout      Code = "timeout"       // the handler did not answer within the handler timeout
	CodeHandlerError Code = "handler_error" // the handler failed for another reason
	CodeRateLimited  Code = "rate_limited"  // the connection sent more than its allowance
	CodeForbidden    Code = "forbidden"     // the user may not do this, such as send to a room it is not in
)

// Codes of the JSON body of a refused WebSocket upgrade (docs/protocol.md section 2).
const (
	CodeUnauthorized    Code = "unauthorized"     // HTTP 401: no token, bad signature, expired, no sub
	CodeForbiddenOrigin Code = "forbidden_origin" // HTTP 403: Origin not allowed
	// CodeTooManyConnections is an extension: HTTP 429, the user already
	// has the most sockets a worker allows one user.
	CodeTooManyConnections Code = "too_many_connections"
)

// codes is switchboard's own set, in the order of the contract's tables.
var codes = [...]Code{
	CodeBadRequest, CodeUnknownEvent, CodeUnavailable, CodeTimeout, CodeHandlerError, CodeRateLimited,
	CodeForbidden, CodeUnauthorized, CodeForbiddenOrigin, CodeTooManyConnections,
}

// Codes returns every Code of the contract: those of error frames and NATS
// replies first, then those of refused upgrades. The slice is the caller's.
func Codes() []Code { return append([]Code(nil), codes[:]...) }

// Valid reports whether c is one of Codes.
func (c Code) Valid() bool {
	for _, k := range codes {
		if c == k {
			return true
		}
	}
	return false
}

// WebSocket close codes the gateway uses (RFC 6455 section 7.4.1).
const (
	CloseNormal    = 1000 // the client or server closed normally
	CloseGoingAway = 1001 // the gateway is shutting down
	// CloseAbnormal is never sent (RFC 6455: the connection ended without
	// a close frame); the disconnect of a socket whose worker died is
	// announced with it (docs/protocol.md section 3).
	CloseAbnormal      = 1006
	CloseInvalidData   = 1007 // a text frame held invalid UTF-8
	ClosePolicy        = 1008 // slow consumer or persistent rate-limit abuse
	CloseMessageTooBig = 1009 // a message larger than the max frame size
	CloseInternalError = 1011 // the connection's code failed unexpectedly
	// CloseTryAgainLater is an extension: the gateway could not read the
	// recovery store for a new socket; the client reconnects with back-off
	// and resumes, losing nothing.
	CloseTryAgainLater = 1013
	// CloseTokenExpired: the socket's token expired; the client reconnects
	// at once with a fresh token and resumes (docs/protocol.md section 2).
	CloseTokenExpired = 4001
)

// Close reasons sent with ClosePolicy, so clients can tell which policy,
// with CloseTokenExpired, and with CloseGoingAway when the gateway stops.
const (
	ReasonShuttingDown = "gateway shutting down" // with CloseGoingAway
	ReasonSlowConsumer = "slow consumer: outgoing queue full"
	ReasonRateLimited  = "rate limit exceeded"
	ReasonTokenExpired = "token expired" // with CloseTokenExpired
	ReasonRevoked      = "token revoked" // with CloseDisconnected, for a revoke whose disconnect the socket's worker missed
)
