// Package redisdispatch implements event.Dispatcher over Redis PUBLISH on the
// channel every gateway worker subscribes to (docs/protocol.md section 4).
//
// # Concurrency
//
// A Dispatcher is safe for concurrent use and starts no goroutines. The
// publishes of concurrent callers are written together: while one go-redis
// pipeline is in flight, the calls that arrive queue, and the next pipeline
// carries all of them (one write, one read of the replies), written by the
// oldest waiting caller on its own goroutine. A caller that finds nothing in
// flight writes at once. Each caller still gets its own result, a Batch is
// still one MULTI/EXEC transaction (all its publishes, in order, or none),
// and a call whose context ends while it waits is taken out of the queue
// and returns the context's error. A pipeline that cannot reach Redis fails
// the calls queued behind it too, and if go-redis panics in a flush, the
// panic reaches the caller that was writing and the queued calls fail:
// no caller waits for a second attempt, or for a writer that is gone. The
// queue holds at most one call per waiting caller. The go-redis client's
// connection pool reconnects by itself; the Dispatcher holds no connection
// of its own, so closing the client is all its shutdown needs, once no
// dispatch is running.
package redisdispatch
