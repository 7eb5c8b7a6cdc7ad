// Package announced tells a gateway's supervisor which sockets of each
// worker have had their connect announced to the lifecycle hooks and not
// yet their disconnect (docs/protocol.md section 3), so that when a worker
// dies without a drain (killed, crashed) the supervisor hands those
// sockets, its orphans, to the worker it starts in its place, which
// announces their disconnects.
//
// A worker's lifecycle publisher, one goroutine, records through a Writer
// on the write end of a pipe (Writer is not safe for concurrent use): a
// batch of records is written with one write per PIPE_BUF bytes, each
// write whole records and so atomic, and never waits: while the pipe is
// full (a supervisor that does not read) the records wait in the Writer,
// up to a bound past which they are dropped and a reset record sent
// instead, once the pipe takes it, which makes the supervisor forget the
// worker's sockets rather than hold a set it can no longer trust.
//
// The supervisor reads each worker's pipe into a Set (Read, one goroutine
// per worker), bounded, safe for concurrent use. When the worker dies it
// takes the set's sockets (Take) and writes them to a file the
// replacement inherits (WriteOrphans); the replacement reads them
// (ReadOrphans) and announces their disconnects through its own
// publisher, which records those like any other, so that the supervisor
// hands on whatever a replacement that died too had not announced.
//
// Records, bytes: '+' len(conn) conn len(user) (2 bytes, big endian) user:
// the connect of conn, of user, was announced; '-' len(conn) conn: the
// disconnect of conn is about to be; '!': forget every socket recorded
// before.
package announced
