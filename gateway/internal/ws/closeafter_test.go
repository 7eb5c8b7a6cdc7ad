package ws_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// TestNoDataFrameAfterTooBigClose: while the writer streams frames to a
// client that reads as fast as it can, the client sends the header of a
// frame over the read limit, so gorilla writes its 1009 close frame from
// the read loop. Nothing may follow that close frame on the wire (RFC 6455
// section 5.5.1). When the writer learned of gorilla's close only from the
// read error, a batch it had checked before went out after the close
// frame (1 to 14 data frames in three runs). Frames of 30,000 bytes go in
// batches; frames over 64 KiB as a header and a payload of their own.
func TestNoDataFrameAfterTooBigClose(t *testing.T) {
	for _, tc := range []struct{ size, rounds int }{{30000, 150}, {100000, 40}} {
		t.Run(fmt.Sprintf("frames of %d bytes", tc.size), func(t *testing.T) {
			noDataAfterTooBigClose(t, tc.size, tc.rounds)
		})
	}
}

func noDataAfterTooBigClose(t *testing.T, size, rounds int) {
	const maxFrame = 1024
	payload := bytes.Repeat([]byte{'x'}, size)
	s := startServer(t, ws.Limits{QueueLen: 1 << 16, QueueBytes: 1 << 30}, maxFrame)
	for r := range rounds {
		cl, c := s.dial(t, nil)
		nc := cl.NetConn() // nothing was sent before the dial returned: gorilla buffered nothing
		got, _ := streamThen(t, c, nc, payload, func() { go func() { _, _ = nc.Write(tooBigHeader) }() })
		_, after, closeAt, err := framesAfterClose(got, size)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if closeAt < 0 {
			<-c.Done()
			code, reason := c.CloseCode()
			t.Fatalf("round %d: no close frame in %d bytes; closed %d %q by %v", r, len(got), code, reason, c.ClosedBy())
		}
		if after > 0 {
			t.Fatalf("round %d: %d data frame(s) after the 1009 close frame (at byte %d of %d)", r, after, closeAt, len(got))
		}
		_ = cl.Close()
		<-c.Done()
	}
}

// streamThen keeps c's queue fed with payload while it reads the raw
// server frames from the client's end nc, calls then once 64 KiB have
// arrived, and returns every byte read until the server closed (or the
// test's wait passed), and how many frames c.Send took.
func streamThen(t *testing.T, c *ws.Conn, nc net.Conn, payload []byte, then func()) ([]byte, int) {
	t.Helper()
	fed := make(chan struct{})
	accepted := 0
	go func() {
		defer close(fed)
		for {
			if _, b := c.Queued(); b > 8*len(payload) {
				runtime.Gosched()
				continue
			}
			if !c.Send(payload) {
				return
			}
			accepted++
		}
	}()
	var got []byte
	buf := make([]byte, 1<<16)
	done := false
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	for {
		n, err := nc.Read(buf)
		got = append(got, buf[:n]...)
		if !done && len(got) > 1<<16 {
			done = true
			then()
		}
		if err != nil { // EOF or a reset once the server closed; the deadline if it never did
			break
		}
	}
	<-fed
	return got, accepted
}

// tooBigHeader is a client's masked text frame header announcing 2,000
// bytes, over the tests' 1,024-byte read limit.
var tooBigHeader = []byte{0x81, 0x80 | 126, 2000 >> 8, 2000 & 0xff, 1, 2, 3, 4}

// framesAfterClose parses unmasked server frames in b, data frames of size
// bytes and a 1009 close, and returns how many whole data frames precede
// the first close frame, how many frames follow it, and where it starts
// (-1: none).
func framesAfterClose(b []byte, size int) (before, after, closeAt int, err error) {
	closeAt = -1
	for i := 0; i+2 <= len(b); {
		op, n, h := b[i]&0x0f, int(b[i+1]&0x7f), 2
		switch n {
		case 126:
			if i+4 > len(b) {
				return before, after, closeAt, nil
			}
			n, h = int(binary.BigEndian.Uint16(b[i+2:])), 4
		case 127:
			if i+10 > len(b) {
				return before, after, closeAt, nil
			}
			n, h = int(binary.BigEndian.Uint64(b[i+2:])), 10
		}
		switch {
		case closeAt >= 0:
			after++
		case op == 0x8:
			closeAt = i
			if n < 2 || i+4 > len(b) || binary.BigEndian.Uint16(b[i+2:]) != 1009 {
				return before, after, closeAt, fmt.Errorf("the close frame at byte %d is not 1009", i)
			}
		case op != 0x1 || n != size:
			return before, after, closeAt, fmt.Errorf("byte %d: a frame (opcode %#x, %d bytes) that is none of those sent", i, op, n)
		case i+h+n <= len(b):
			before++
		}
		i += h + n
	}
	return before, after, closeAt, nil
}

// TestTooBigCloseCountsDroppedFrames: the frames the writer had taken
// from the queue when gorilla's 1009 went out, which may not follow it,
// are told to Limits.Discarded as the queue's are: every frame Send took
// is either on the wire before the close frame or counted discarded (the
// frames_discarded metric: they were counted as delivered). The writer
// dropped them uncounted, so the metric said fewer than were lost.
func TestTooBigCloseCountsDroppedFrames(t *testing.T) {
	for _, tc := range []struct{ size, rounds int }{{30000, 40}, {100000, 20}} {
		t.Run(fmt.Sprintf("frames of %d bytes", tc.size), func(t *testing.T) {
			tooBigCloseCountsDropped(t, tc.size, tc.rounds)
		})
	}
}

func tooBigCloseCountsDropped(t *testing.T, size, rounds int) {
	const maxFrame = 1024
	payload := bytes.Repeat([]byte{'x'}, size)
	var discarded atomic.Int64
	s := startServer(t, ws.Limits{QueueLen: 1 << 16, QueueBytes: 1 << 30,
		Discarded: func(n int) { discarded.Add(int64(n)) }}, maxFrame)
	for r := range rounds {
		discarded.Store(0)
		cl, c := s.dial(t, nil)
		nc := cl.NetConn()
		got, accepted := streamThen(t, c, nc, payload, func() { go func() { _, _ = nc.Write(tooBigHeader) }() })
		<-c.Done()
		written, after, closeAt, err := framesAfterClose(got, size)
		if err != nil || closeAt < 0 || after > 0 {
			t.Fatalf("round %d: close at %d, %d frames after it, %v", r, closeAt, after, err)
		}
		if n := discarded.Load(); int(n)+written != accepted {
			t.Fatalf("round %d: Send took %d frames, %d went out before the close frame, %d counted discarded (want %d)",
				r, accepted, written, n, accepted-written)
		}
		_ = cl.Close()
	}
}

// TestHalfCloseGetsNo1006OnTheWire: a client that shuts down its sending
// side (TCP FIN, no close frame) while the writer is busy makes gorilla
// report 1006 (a CloseError); readFailed records it with markClosing, and
// the writer, still running, ends with writeClose(1006). RFC 6455 section
// 7.4.1: 1006 "MUST NOT be set as a status code in a Close control frame
// by an endpoint"; a browser fails the connection on receiving it. The
// client here still reads, so it sees the frame.
func TestHalfCloseGetsNo1006OnTheWire(t *testing.T) {
	const size = 30000
	payload := bytes.Repeat([]byte{'x'}, size)
	s := startServer(t, ws.Limits{QueueLen: 1 << 16, QueueBytes: 1 << 30}, 1024)
	for r := range 50 {
		cl, c := s.dial(t, nil)
		nc := cl.NetConn()
		got, _ := streamThen(t, c, nc, payload, func() { _ = nc.(*net.TCPConn).CloseWrite() })
		if code := closeCode(got); code == 1006 {
			t.Fatalf("round %d: the server sent a close frame with code 1006", r)
		}
		_ = cl.Close()
		<-c.Done()
	}
}

// closeCode returns the code of the first close frame among the unmasked
// server frames in b, 0 when there is none, 1005 when it has no code.
func closeCode(b []byte) int {
	for i := 0; i+2 <= len(b); {
		op, n, h := b[i]&0x0f, int(b[i+1]&0x7f), 2
		switch n {
		case 126:
			if i+4 > len(b) {
				return 0
			}
			n, h = int(binary.BigEndian.Uint16(b[i+2:])), 4
		case 127:
			if i+10 > len(b) {
				return 0
			}
			n, h = int(binary.BigEndian.Uint64(b[i+2:])), 10
		}
		if op == 0x8 {
			if n < 2 || i+h+2 > len(b) {
				return 1005
			}
			return int(binary.BigEndian.Uint16(b[i+h:]))
		}
		i += h + n
	}
	return 0
}
