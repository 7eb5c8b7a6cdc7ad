//go:build linux

package ws

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/rawconn"
)

// rawWriter sends a buffer on a non-blocking socket with raw send(2)
// calls (rawconn.Send; a race build's are syscall.Write, so the race
// detector sees what they read). A send to a loopback or LAN peer returns within microseconds
// (the fd is non-blocking: a full socket answers EAGAIN, and RawConn.Write
// then waits in the netpoller), so the scheduler need not be told of it;
// told, as net.Conn.Write does, sysmon hands the worker's only P to another
// thread whenever a send passes 20 µs, a futex wake-up and a thread switch
// for nothing.
type rawWriter struct {
	p, q   []byte       // what is left to send: p, then q
	stop   *atomic.Bool // set: a close frame went out first; send nothing
	err    error
	nc     net.Conn
	called bool                  // send ran: RawConn.Write did not refuse at once
	armed  bool                  // the write deadline was set for this write
	send   func(fd uintptr) bool // w.sendAll, bound once per pooled writer
}

var rawWriters = sync.Pool{New: func() any {
	w := new(rawWriter)
	w.send = w.sendAll
	return w
}}

// sendAll sends what the socket takes of w.p. At the first EAGAIN it sets
// the write deadline, WriteWait from then, and asks RawConn.Write to wait
// for room: a write the socket takes at once, nearly every one, costs no
// deadline update.
func (w *rawWriter) sendAll(fd uintptr) bool {
	if !w.called && w.stop.Load() {
		// Under the write lock, before the first byte: gorilla's close
		// frame is out, or waits for this lock (gate), and nothing may
		// follow it. Once a batch has begun it is sent whole.
		w.called = true
		w.err = errCloseSent
		return true
	}
	w.called = true
	for len(w.p) > 0 || len(w.q) > 0 {
		if len(w.p) == 0 {
			w.p, w.q = w.q, nil
		}
		n, e := rawconn.Send(fd, w.p)
		switch e {
		case 0:
			if n == 0 { // nothing taken and no error: never loop on it
				w.err = io.ErrUnexpectedEOF
				return true
			}
			w.p = w.p[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			if !w.armed {
				// Setting a deadline takes the descriptor's reference,
				// not its write lock, which this call holds.
				if err := w.nc.SetWriteDeadline(time.Now().Add(WriteWait)); err != nil {
					w.err = err
					return true
				}
				w.armed = true
			}
			return false // wait until writable, or the deadline
		default:
			w.err = e
			return true
		}
	}
	return true
}

const rawWrites = true

// writeFrames writes all of p and then q to nc, whose raw connection is
// rc, within one RawConn.Write: under the socket's write lock from the
// first byte to the last, so that a control frame gorilla writes from the
// read loop (the close of a frame over the limit, of a protocol error)
// lands between two batches, never inside a frame. (Sending what fits
// without the lock and then the rest under it let such a close in
// between.) When stop is set as the lock is taken, it writes nothing and
// returns errCloseSent: gorilla marks it before it writes (gate), so a
// batch never follows its close frame.
//
// A deadline set for an earlier wait stays set, and once it has passed,
// RawConn.Write refuses before sending anything: the write is then tried
// again with a fresh deadline. Clearing the deadline after each wait
// instead could clear the one gorilla sets for its own close.
//
// It returns how many bytes of p and q it sent, all of them unless it
// fails.
func writeFrames(rc syscall.RawConn, nc net.Conn, p, q []byte, stop *atomic.Bool) (int, error) {
	w := rawWriters.Get().(*rawWriter)
	w.p, w.q, w.stop, w.err, w.nc, w.called, w.armed = p, q, stop, nil, nc, false, false
	err := rc.Write(w.send)
	if err != nil && !w.called && errors.Is(err, os.ErrDeadlineExceeded) {
		if err = nc.SetWriteDeadline(time.Now().Add(WriteWait)); err == nil {
			w.armed = true
			err = rc.Write(w.send)
		}
	}
	if err == nil {
		err = w.err
	}
	sent := len(p) + len(q) - len(w.p) - len(w.q)
	w.p, w.q, w.stop, w.err, w.nc = nil, nil, nil, nil, nil
	rawWriters.Put(w)
	return sent, err
}
