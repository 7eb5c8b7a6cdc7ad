// Package dispatch is switchboard's dispatch path, public so that any Go
// service dispatches exactly as handlers do: a Dispatcher records every
// dispatch to users and every broadcast in the recovery streams and
// publishes it on the channel every gateway worker subscribes to, in one
// atomic script call (docs/protocol.md sections 4 and 6), so the events are
// recovered by a client that was away. It implements event.Dispatcher and
// event.Rooms for handlers; Dispatch takes one Message (users, connections,
// rooms or everyone) and returns the positions it was recorded at, for
// other backends, as the dispatch API does over HTTP (section 7).
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", MaxRetries: -1, ContextTimeoutEnabled: true, OnConnect: dispatch.OnConnect})
//	d, err := dispatch.NewChecked(rdb, dispatch.Options{Window: 2 * time.Minute}) // refuses a client that retries, say
//	pos, err := d.Dispatch(ctx, dispatch.Message{Event: "post_updated", Users: []string{"bob"}, Args: args})
//
// Disconnect closes sockets instead: every socket of some users, or some
// connections, with 4003 (the client stops) or, with Reconnect, 4002 (it
// reconnects at once with a fresh token), as POST /v1/disconnect does. It
// is published on the shared channel in either fan-out mode, and not
// recorded.
//
// Options.Window is the gateway's HISTORY_WINDOW: left 0 it is
// DefaultWindow (120 s, the services' default), so a backend that forgets
// it still records; NoHistory turns recording off (HISTORY_WINDOW=0), and
// every dispatch is then transient, as in v1. Other windows lie within
// HISTORY_WINDOW's bounds; New panics on Options that fail Options.Check.
//
// One dispatch is transient, whatever the window, with Message.Transient
// or through Transient (event.Transient for handlers): published to the
// sockets connected now, without positions, and in no stream, for typing
// indicators, cursors and presence pings, which a resume must not replay.
//
// Options.PerUser must match the gateways' FANOUT_MODE: a per-user
// Dispatcher's dispatches to users never reach a gateway worker left in
// shared mode, and no publish shows it. CheckFanout counts the workers of
// each mode (PUBSUB NUMSUB, as handlers-svc checks every 10 s) and
// returns ErrFanoutMismatch for that case; call it at start-up.
//
// Every target is bounded as the dispatch API bounds it (Message.Check):
// ToUsers, ToConns, ToRooms (alone or in a Batch) and Join refuse with a
// bad_request *event.Error more than MaxUsers users, MaxConns connections
// or MaxRooms rooms, and an id no token or gateway can carry, so that no
// call records events for a user that can never connect, or holds Redis
// for long.
//
// Rooms are user-level groups whose membership is a Redis set
// (proto.RoomMembersKey): Join, Leave and Members manage it, and a dispatch
// to rooms goes to their members' user streams, like any dispatch to users.
// JoinUndoably and UndoJoin undo a join only while no other join was
// answered for the membership (proto.RoomJoinKey, kept a minute past the
// request's deadline).
//
// # Concurrency
//
// A Dispatcher is safe for concurrent use and starts no goroutines (but
// one, bounded by 2 s, that frees the key of a keyed Dispatch whose
// reservation Redis took without answering). The
// publishes of concurrent callers are written together: while one go-redis
// pipeline is in flight, the calls that arrive queue, and the next pipeline
// carries all of them (one write, one read of the replies), written by the
// oldest waiting caller on its own goroutine. A caller that finds nothing in
// flight writes at once. Each caller still gets its own result, a Batch is
// still one script call (all its publishes, in order, or none), and a call
// whose context ends while it waits is taken out of the queue and returns
// the context's error. A pipeline that cannot reach Redis fails the calls
// queued behind it too, and if go-redis panics in a flush, the panic
// reaches the caller that was writing and the queued calls fail: no caller
// waits for a second attempt, or for a writer that is gone. The queue holds
// at most one call per waiting caller. The go-redis client's connection
// pool reconnects by itself; the Dispatcher holds no connection of its own,
// so closing the client is all its shutdown needs, once no dispatch is
// running.
package dispatch
