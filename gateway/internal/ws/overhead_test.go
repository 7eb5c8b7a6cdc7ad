package ws_test

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/ws"
)

// overheadLimits allow 6,000 bytes a second of frame overhead, with a
// burst of as much, and answer one ping: every ping read is then counted
// by PingsIgnored.
func overheadLimits(ignored *atomic.Int64) ws.Limits {
	limits := defaultLimits
	limits.PingRate, limits.PingBurst = 1, 1
	limits.PingsIgnored = func() { ignored.Add(1) }
	limits.OverheadRate, limits.OverheadBurst = 6000, 6000
	return limits
}

// flood writes first, then raw over and over for d, to a client's
// connection, as fast as the server takes it.
func flood(t *testing.T, s *server, first, raw []byte, d time.Duration) {
	t.Helper()
	cl, _ := s.dial(t, nil)
	nc := cl.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(d))
	if _, err := nc.Write(first); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := nc.Write(raw); err != nil {
			return // the deadline: the server reads no faster
		}
	}
}

// overheadBound is the most bytes of overhead the server may have read in
// d: the burst, the rate over d, and a read buffer read ahead.
func overheadBound(d time.Duration) float64 {
	return 6000 + 6000*d.Seconds() + ws.ReadBufferSize
}

// TestControlFrameFloodAttack: a client sending empty pings as fast as it
// can, ignored over its ping allowance, had the read loop parse each one:
// a single socket kept a worker's core busy (10 million frames in 5 s in
// the attack on a real gateway) while every frame limit looked only at
// data frames. The bytes a socket reads that no payload accounts for are
// bounded now: over the allowance the socket is not read, so the flood
// backs up into the client's buffers.
func TestControlFrameFloodAttack(t *testing.T) {
	var ignored atomic.Int64
	s := startServer(t, overheadLimits(&ignored), 65536)
	ping := ws.ClientFrame(0x89, [4]byte{1, 2, 3, 4}, nil) // 6 bytes
	start := time.Now()
	flood(t, s, nil, bytes.Repeat(ping, 1000), time.Second)
	got := ignored.Load()
	took := time.Since(start) // after the count: what was read by then
	if limit := overheadBound(took) / 6; float64(got) > limit {
		t.Fatalf("%d pings read in %s, want at most %.0f (6,000 bytes a second of overhead)", got, took, limit)
	}
	t.Logf("%d pings read in %s", got, took)
}

// TestFragmentFloodAttack: a client that starts a message and never ends
// it, sending empty continuation frames, kept the read loop busy at the
// speed of the network without a message ever counting against a limit.
// A ping every hundred frames shows how far the server read.
func TestFragmentFloodAttack(t *testing.T) {
	var ignored atomic.Int64
	s := startServer(t, overheadLimits(&ignored), 65536)
	mask := [4]byte{1, 2, 3, 4}
	first := ws.ClientFrame(0x01, mask, []byte(`{"event":`)) // no FIN
	empty := ws.ClientFrame(0x00, mask, nil)                 // continuation, no FIN
	group := append(bytes.Repeat(empty, 99), ws.ClientFrame(0x89, mask, nil)...)
	start := time.Now()
	flood(t, s, first, bytes.Repeat(group, 100), time.Second)
	got := ignored.Load()
	took := time.Since(start) // after the count: what was read by then
	if limit := overheadBound(took)/600 + 1; float64(got) > limit {
		t.Fatalf("%d pings, one per 100 frames, read in %s: want at most %.0f", got, took, limit)
	}
	t.Logf("%d hundreds of frames read in %s", got, took)
}

// TestFragmentedPayloadNotOverhead: the payload of data frames is not
// overhead, fragmented or not: twenty 60 KB messages, each in fifteen
// frames, pass at once with an allowance of 6,000 bytes of overhead.
func TestFragmentedPayloadNotOverhead(t *testing.T) {
	var ignored atomic.Int64
	s := startServer(t, overheadLimits(&ignored), 65536)
	cl, _ := s.dial(t, nil)
	chunk := bytes.Repeat([]byte{'x'}, 4000)
	var raw bytes.Buffer
	for range 20 {
		for i := range 15 {
			b0 := byte(0x00)
			switch i {
			case 0:
				b0 = 0x01
			case 14:
				b0 = 0x80
			}
			if i == 0 {
				raw.Write(extFrame(b0, []byte(`"`+string(chunk[1:]))))
			} else if i == 14 {
				raw.Write(extFrame(b0, []byte(string(chunk[1:])+`"`)))
			} else {
				raw.Write(extFrame(b0, chunk))
			}
		}
	}
	go func() { _, _ = cl.NetConn().Write(raw.Bytes()) }()
	for i := range 20 {
		select {
		case f := <-s.rec.frames:
			if len(f.data) != 60000 {
				t.Fatalf("message %d: %d bytes, want 60000", i, len(f.data))
			}
		case <-time.After(wait):
			t.Fatalf("message %d of 20 not handed on within %s", i, wait)
		}
	}
}

// extFrame is a client frame with a 16-bit payload length and a zero
// mask.
func extFrame(b0 byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{b0, 0x80 | 126, byte(n >> 8), byte(n), 0, 0, 0, 0}, payload...)
}
