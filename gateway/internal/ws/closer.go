package ws

// Closer is who ended a socket: what its close is counted under, rather
// than its reason text, which a backend's disconnect chooses.
type Closer uint8

// Who ended a socket.
const (
	ByNone    Closer = iota // still open
	ByGateway               // Close, a failed write, a frame over the limit, a ping timeout
	ByClient                // the client's close frame
	ByNetwork               // the connection ended without a close frame
)
