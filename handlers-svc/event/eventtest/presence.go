package eventtest

import (
	"context"
	"slices"
)

// Presence is an event.Presence held in memory, for handler tests: each
// user's open sockets by connection id. The zero value has nobody online.
// Set it before the handler runs; it is read-only after, and so safe for
// concurrent use then.
type Presence map[string][]string

// Count returns the number of connections of each of users; a context
// that has ended fails it with the context's error.
func (p Presence) Count(ctx context.Context, users ...string) (map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]int, len(users))
	for _, u := range users {
		out[u] = len(p[u])
	}
	return out, nil
}

// Conns returns user's connections, sorted.
func (p Presence) Conns(ctx context.Context, user string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conns := slices.Clone(p[user])
	slices.Sort(conns)
	return conns, nil
}
