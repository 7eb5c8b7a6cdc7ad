// Package resume keeps every socket at its place in the recovery streams
// (docs/protocol.md section 6): its user's stream and the broadcast stream.
//
// At connect, Resumer.Connect reads both streams and resumes the socket
// after the positions its client sent (replaying what it missed, in order,
// right after "connected"), or places it at the streams' tops. What a
// socket is sent from a stream goes a part at a time, each part what fits
// in its send queue: a replay larger than the queue is recovered, the next
// part read from the stream when the socket's writer has taken the queue,
// while the socket holds what comes live. Live, the
// fan-out offers each event to the socket with its position: the next
// offset of its stream is sent, an offset the socket had is dropped, and a
// gap (or another epoch) makes the socket hold what comes while a reader
// fills the gap from the stream. A gap that cannot be filled (the store
// lost data, the events expired, too many) is announced with a "resync"
// frame and the socket carries on from the stream's top. After the fan-out
// (re)subscribes, Sweep checks every socket against its streams' tops, so
// what was published while nothing listened is filled too. While it holds
// a socket of a user, Run also keeps the metadata of the user's stream and
// of the broadcast stream from expiring (Keep), which the scripts refresh
// only at a read or write: a user connected a day without an event would
// otherwise get a resync for nothing at the next one.
//
// # Concurrency
//
// A Socket is safe for concurrent use: its lock orders the fan-out's
// offers, Connect, and the reads that fill its gaps, so a socket gets each
// event once and in offset order whichever goroutine sends it. Offer never
// blocks: frames are queued to the connection or held, within bounds
// (Config.HeldFrames, HeldBytes) past which they are read again from the
// stream afterwards. Reads for live sockets run on Config.Readers
// goroutines that Run owns; a read that fails is retried with back-off
// while the socket holds its frames. Connect reads on its caller's
// goroutine and never blocks on a reader. A socket whose send queue has no
// room waits with no goroutine and no timer: its Conn's writer calls back
// (Conn.WhenDrained) when it takes the queue, and the socket is queued
// for a reader then; a socket that closes meanwhile is simply never
// called back, or dropped by the reader.
package resume
