package ws_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ws"
	"github.com/switchboard/switchboard/internal/rawconn"
)

// TestReadsRaw: an upgraded socket's meter reads the network through a
// rawconn.Reader of the socket itself (rawconn's tests check that such a
// Reader reads raw on Linux), the Conn waits for data on that Reader's
// RawConn, and a client's frames arrive through it.
func TestReadsRaw(t *testing.T) {
	s := startServer(t, defaultLimits, 65536)
	cl, c := s.dial(t, nil)
	src := ws.MeterSource(c)
	if src == nil {
		t.Fatal("the socket has no meter")
	}
	r, ok := src.(rawconn.Reader)
	if !ok {
		t.Fatalf("the meter reads through a %T, not a rawconn.Reader", src)
	}
	rc := r.RawConn()
	if rc == nil {
		t.Fatal("the meter's Reader has no RawConn: it reads through net.Conn's Read")
	}
	if rc != ws.RawConn(c) {
		t.Fatal("the Conn waits on another RawConn than the one its meter reads through")
	}
	if got, want := fd(t, rc), socketFD(t, ws.NetConn(c)); got != want {
		t.Fatalf("the meter reads descriptor %d, the socket is %d", got, want)
	}
	if err := cl.WriteMessage(websocket.TextMessage, []byte(`{"raw":true}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-s.rec.frames:
		if string(f.data) != `{"raw":true}` {
			t.Fatalf("frame %q", f.data)
		}
	case <-time.After(wait):
		t.Fatal("the frame did not arrive")
	}
}

// fd returns the descriptor of rc's socket.
func fd(t *testing.T, rc syscall.RawConn) uintptr {
	t.Helper()
	var got uintptr
	if err := rc.Control(func(fd uintptr) { got = fd }); err != nil {
		t.Fatal(err)
	}
	return got
}

// socketFD returns nc's descriptor.
func socketFD(t *testing.T, nc net.Conn) uintptr {
	t.Helper()
	sc, ok := nc.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is no syscall.Conn", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return fd(t, rc)
}
