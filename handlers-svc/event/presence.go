package event

import "context"

// Presence tells which users have sockets open, and on how many devices
// (docs/protocol.md section 7, an extension): what the gateway workers
// record of their sockets in Redis. Package presence implements it.
//
// A socket counts from the moment it is connected until it closes; one of
// a gateway worker that died counts until its lease expires, at most
// GATEWAY_PRESENCE_TTL. A failure to reach the store is an *Error with
// code unavailable.
type Presence interface {
	// Count returns, for each of users, the number of sockets the user
	// has open now: 0 for one with none.
	Count(ctx context.Context, users ...string) (map[string]int, error)
	// Conns returns the connection ids of user's open sockets, sorted.
	Conns(ctx context.Context, user string) ([]string, error)
}
