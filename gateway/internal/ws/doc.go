// Package ws owns the client WebSockets: the upgrade and the Conn with its
// read loop and write loop. It knows gorilla/websocket; nothing else does.
//
// It is transport only: frames, the bounded queue and its writer, pings and
// pongs, and the close codes of the transport (1009 too big, 1007 invalid
// UTF-8, 1008 slow consumer, the read deadline). It knows no envelope: every
// data frame goes to the FrameHandler the socket was given, which decides
// what the frame means and what to answer.
//
// Concurrency contract: each Conn has exactly one reader, the goroutine
// running ReadLoop, and at most one writer goroutine, started when frames are
// queued and ended when the queue is empty, so an idle socket costs one
// goroutine. Send, Close and Ping never block: they append to a queue bounded
// by frame count and bytes, and a socket whose queue overflows is closed with
// 1008 (slow consumer) instead of being waited for. A client's pings are
// answered within a per-socket allowance (Limits.PingRate); those over it
// are not answered, so a ping flood costs no write per ping.
package ws
