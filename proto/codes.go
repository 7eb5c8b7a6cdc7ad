package proto

// Error codes sent to clients in error frames and carried in NATS replies
// (PROTOCOL section 2 and 3). The set is closed: clients may switch on it.
const (
	CodeBadRequest   = "bad_request"   // not JSON, not an object, bad event or ref, binary frame, or args rejected by a handler
	CodeUnknownEvent = "unknown_event" // no handler is registered for the event
	CodeUnavailable  = "unavailable"   // NATS, handlers-svc or Redis cannot be reached
	CodeTimeout      = "timeout"       // the handler did not answer within the handler timeout
	CodeHandlerError = "handler_error" // the handler failed for another reason
	CodeRateLimited  = "rate_limited"  // the connection sent more than its allowance
)

// Codes of the JSON body of a refused WebSocket upgrade (PROTOCOL section 2).
const (
	CodeUnauthorized    = "unauthorized"     // HTTP 401: no token, bad signature, expired, no sub
	CodeForbiddenOrigin = "forbidden_origin" // HTTP 403: Origin not allowed
	// CodeTooManyConnections is an extension: HTTP 429, the user already
	// has the most sockets a worker allows one user.
	CodeTooManyConnections = "too_many_connections"
)

// WebSocket close codes the gateway uses (RFC 6455 section 7.4.1).
const (
	CloseNormal        = 1000 // the client or server closed normally
	CloseGoingAway     = 1001 // the gateway is shutting down
	CloseInvalidData   = 1007 // a text frame held invalid UTF-8
	ClosePolicy        = 1008 // slow consumer or persistent rate-limit abuse
	CloseMessageTooBig = 1009 // a message larger than the max frame size
	CloseInternalError = 1011 // the connection's code failed unexpectedly
)

// Close reasons sent with ClosePolicy, so clients can tell which policy.
const (
	ReasonSlowConsumer = "slow consumer: outgoing queue full"
	ReasonRateLimited  = "rate limit exceeded"
)
