package rawconn

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, the dialing end
// wrapped.
func pair(t testing.TB) (wrapped, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := Dialer{Timeout: 5 * time.Second}.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := <-accepted
	if p == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	return c, p
}

func wantRaw(t *testing.T, c net.Conn) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	if _, ok := c.(interface{ NetConn() net.Conn }); !ok {
		t.Fatalf("Dial returned %T, not the raw conn", c)
	}
}

// TestBothWays moves more than the socket buffers hold each way at once,
// so writes meet EAGAIN and wait in the netpoller, and reads wait for data.
func TestBothWays(t *testing.T) {
	c, p := pair(t)
	wantRaw(t, c)
	const size = 8 << 20
	out, in := make([]byte, size), make([]byte, size)
	rand.Read(out)
	rand.Read(in)
	errs := make(chan error, 3)
	go func() { _, err := c.Write(out); errs <- err }()
	go func() { _, err := p.Write(in); errs <- err }()
	var gotAtPeer bytes.Buffer
	go func() { _, err := io.CopyN(&gotAtPeer, p, size); errs <- err }()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, in) || !bytes.Equal(gotAtPeer.Bytes(), out) {
		t.Fatal("bytes differ from what was sent")
	}
}

func TestReadDeadline(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 16))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout net.Error", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "tcp" {
		t.Fatalf("error %#v, want a *net.OpError of a tcp read", err)
	}
	// A deadline cleared: the connection reads again.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// TestWriteDeadline writes to a peer that reads nothing until the socket
// buffers are full and the deadline passes.
func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past its deadline: %v", err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("wrote %d bytes, want what the buffers took: some, not all", n)
	}
}

func TestEOF(t *testing.T) {
	c, p := pair(t)
	if _, err := p.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	p.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last" {
		t.Fatalf("ReadAll = %q, %v; want \"last\" and the end", got, err)
	}
	if n, err := c.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("read after the end = %d, %v; want 0, io.EOF", n, err)
	}
}

// TestWriteToResetPeer: a write to a connection the peer reset fails with
// the system call's error, and no SIGPIPE ends the test binary.
func TestWriteToResetPeer(t *testing.T) {
	c, p := pair(t)
	p.(*net.TCPConn).SetLinger(0) // close with a RST
	p.Close()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write([]byte("into the void"))
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a reset peer: %v, want ECONNRESET or EPIPE", err)
	}
}

func TestClosed(t *testing.T) {
	c, _ := pair(t)
	blocked := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 16))
		blocked <- err
	}()
	// Close ends a Read that waits in the netpoller, whenever it started.
	c.Close()
	if err := <-blocked; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read waiting when closed: %v, want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 16)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestSyscallConnIsTheSocket(t *testing.T) {
	c, p := pair(t)
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is not a syscall.Conn", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// The peek sees the byte the peer sent; Read then still gets it.
	var peeked int
	if err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		if err == syscall.EAGAIN {
			return false
		}
		peeked = n
		return true
	}); err != nil || peeked != 1 {
		t.Fatalf("peek = %d, %v", peeked, err)
	}
	b := make([]byte, 1)
	if n, err := c.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("read = %d, %v, %q", n, err, b)
	}
}

func TestOtherConnsAsTheyAre(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a net.Pipe end was wrapped")
	}
}

// TestZeroLength: an empty Read or Write does what net.Conn's does: on an
// open connection nothing; past a deadline, a Write says so (it checks
// the deadline, a Read does not); on a closed connection, both say
// net.ErrClosed, as a Reader's Read does.
func TestZeroLength(t *testing.T) {
	c, _ := pair(t)
	wantRaw(t, c)
	plain := c
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		plain = u.NetConn()
	}
	r := NewReader(plain)
	type result struct {
		n   int
		err string
	}
	res := func(n int, err error) result {
		if err == nil {
			return result{n, ""}
		}
		return result{n, err.Error()}
	}
	check := func(when string) {
		t.Helper()
		if got, want := res(c.Read(nil)), res(plain.Read(nil)); got != want {
			t.Errorf("Read(nil) %s = %v, net.Conn's %v", when, got, want)
		}
		if got, want := res(r.Read(nil)), res(plain.Read(nil)); got != want {
			t.Errorf("a Reader's Read(nil) %s = %v, net.Conn's %v", when, got, want)
		}
		if got, want := res(c.Write(nil)), res(plain.Write(nil)); got != want {
			t.Errorf("Write(nil) %s = %v, net.Conn's %v", when, got, want)
		}
	}
	check("when open")
	if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	check("past the deadline")
	c.Close()
	check("when closed")
	if _, err := r.Read(nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a Reader's Read(nil) when closed: %v, want net.ErrClosed", err)
	}
}

// BenchmarkPingPong is a small message each way on loopback, through the
// raw conn and through net's own, for the allocations and the time of a
// round trip.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{true, false} {
		name := "net"
		if raw {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			c, p := pair(b)
			if u, ok := c.(interface{ NetConn() net.Conn }); ok && !raw {
				c = u.NetConn()
			}
			go func() {
				buf := make([]byte, 64)
				for {
					n, err := p.Read(buf)
					if err != nil {
						return
					}
					if _, err := p.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
			msg, buf := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestErrorsAsNetConns: a deadline passed and a closed connection give
// the errors net.Conn's own Read and Write give, to the letter: those
// that check them (errors.Is, a net.Error's Timeout, a log) see no
// difference.
func TestErrorsAsNetConns(t *testing.T) {
	c, _ := pair(t)
	wantRaw(t, c)
	plain := c
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		plain = u.NetConn()
	}
	same := func(what string, raw, want error) {
		t.Helper()
		if raw == nil || want == nil || raw.Error() != want.Error() {
			t.Errorf("%s: %v, net.Conn's %v", what, raw, want)
		}
		for _, target := range []error{os.ErrDeadlineExceeded, net.ErrClosed} {
			if errors.Is(raw, target) != errors.Is(want, target) {
				t.Errorf("%s: errors.Is(%v) differs", what, target)
			}
		}
	}
	read := func(c net.Conn) error { _, err := c.Read(make([]byte, 8)); return err }
	write := func(c net.Conn) error { _, err := c.Write([]byte("x")); return err }

	if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	same("read past the deadline", read(c), read(plain))
	same("write past the deadline", write(c), write(plain))
	c.Close()
	same("read when closed", read(c), read(plain))
	same("write when closed", write(c), write(plain))
}

// TestUnix: a Unix stream socket is wrapped and moves bytes both ways; a
// Unix datagram socket, whose empty datagram is no end, is left as it is.
func TestUnix(t *testing.T) {
	path := t.TempDir() + "/s"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		p, _ := ln.Accept()
		accepted <- p
	}()
	c, err := Dialer{Timeout: 5 * time.Second}.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := <-accepted
	if p == nil {
		t.Fatal("accept failed")
	}
	defer p.Close()
	wantRaw(t, c)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(p, b); err != nil || string(b) != "ping" {
		t.Fatalf("peer read %q, %v", b, err)
	}
	if _, err := p.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "pong" {
		t.Fatalf("read %q, %v", b, err)
	}

	gram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: t.TempDir() + "/g", Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer gram.Close()
	if Wrap(gram) != net.Conn(gram) {
		t.Fatal("a unixgram socket was wrapped")
	}
}

// TestRaceDetectorSeesTheBytes: with -race, a goroutine that sets x and
// then writes to a socket happens before one that reads those bytes and
// then reads x, as with net.Conns, both ways round. Raw system calls hid
// the write and the read from the detector, which reported a race on x.
// (Without -race this test checks nothing the others do not.)
func TestRaceDetectorSeesTheBytes(t *testing.T) {
	for _, rawWrites := range []bool{true, false} {
		c, p := pair(t)
		wantRaw(t, c)
		writer, reader := c, p
		if !rawWrites {
			writer, reader = p, c
		}
		var x int
		go func() {
			x = 1
			_, _ = writer.Write([]byte{1})
		}()
		if _, err := io.ReadFull(reader, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if x != 1 {
			t.Fatalf("x = %d after the write it came before", x)
		}
	}
}

// TestDeadlineSetWhileWaiting: a deadline set from another goroutine
// ends a Read or a Write already waiting in the netpoller, as gorilla's
// close and go-redis's per-command deadlines expect; Close ends a waiting
// Write as it does a Read.
func TestDeadlineSetWhileWaiting(t *testing.T) {
	c, _ := pair(t)
	read := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 8)); read <- err }()
	write := make(chan error, 1)
	go func() { _, err := c.Write(make([]byte, 64<<20)); write <- err }() // more than the buffers hold: it waits
	// Whether or not the calls have started waiting, the deadlines end them.
	if err := c.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := <-read; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a timeout", err)
	}
	c.Close()
	if err := <-write; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write waiting when closed: %v, want net.ErrClosed", err)
	}
}
