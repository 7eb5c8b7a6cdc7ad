// Package natserve binds an event.Handler to the NATS queue subscription on
// proto.SubjectAll in the queue group proto.QueueGroup, so any number of
// handlers-svc instances share the requests of every gateway (docs/protocol.md
// section 3).
//
// # Concurrency
//
// A Server is run once, by Run. The NATS client delivers the subscription's
// messages one at a time on its own goroutine; for each, the Server decodes
// the request, takes one of Config.MaxConcurrent slots and hands the request
// to a worker goroutine, which runs the handler, replies and frees the slot.
// A worker that is done waits for the next request, so requests reuse its
// grown stack; an idle one takes a request if there is one, otherwise a new
// worker starts. At most 64 workers wait idle; the others exit once their
// request is done, and the idle ones when Run returns. The per-request
// context has the deadline Config.Timeout from when the message was taken
// from the subscription, and is not cancelled when Run's context is.
//
// Overflow: when every slot is busy, the delivery goroutine waits for one,
// but no longer than the request's deadline; a request that gets no slot in
// time is answered unavailable ("handlers-svc is overloaded"). While it
// waits, later messages queue in the subscription's pending buffer, bounded
// by Config.PendingMsgs and PendingBytes (4,096 requests and 16 MiB by
// default, far below nats.go's own limits); beyond them NATS drops
// messages, the client library reports a slow consumer, and the gateway
// answers timeout.
//
// Deadlines: a request carries the time the gateway stops waiting
// (proto.DeadlineHeader). One taken after it, or whose deadline passes
// while it waits for a slot, is dropped unrun and unanswered (counted
// through Config.Expired, logged once a second at most): its client was
// told timeout. The handler's context ends by that deadline too.
//
// Lifecycle hooks (hooks.go): with Config.OnConnect or OnDisconnect set,
// Run also subscribes to proto.LifecycleConnect or LifecycleDisconnect, in
// the same queue group, so one instance takes each message. A message
// runs its hooks in turn on a worker under one handler slot, within
// Config.Timeout, as a request does, hooks in at most half of
// Config.MaxConcurrent; one that gets no slot in that time
// is dropped unrun (a lifecycle message is at most once anyway). A hook's
// error or panic is logged and told to Config.Hooked; no reply is sent.
// Without hooks nothing subscribes to those subjects.
//
// Shutdown: when Run's context is done, Run drains the subscriptions (interest
// is removed at once, so new requests go to other instances, and messages
// already queued are still served), waits for every running handler, flushes
// the replies and returns. All of that is bounded by Config.ShutdownTimeout;
// past it Run cancels the handlers' contexts and returns an error without
// waiting for handlers that ignore their context. After a clean drain Run
// also waits for its idle workers to exit.
package natserve
