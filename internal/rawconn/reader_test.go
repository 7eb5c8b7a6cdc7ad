package rawconn

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// readerPair returns a Reader of the accepting end of a loopback TCP
// connection (a plain *net.TCPConn, as the gateway's client sockets are),
// that end, and the dialing end.
func readerPair(t *testing.T) (Reader, net.Conn, net.Conn) {
	t.Helper()
	c, p := pair(t)
	r := NewReader(p)
	if runtime.GOOS == "linux" && r.kind != kindTCP {
		t.Fatalf("a Reader of a %T reads through its Read, not raw", p)
	}
	return r, p, c
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

// TestReader: a Reader reads what the peer sends, to the end; its RawConn
// is the connection's socket.
func TestReader(t *testing.T) {
	r, p, c := readerPair(t)
	rc := r.RawConn()
	if rc == nil {
		t.Fatal("no RawConn")
	}
	if want := rawConn(p); fd(t, rc) != fd(t, want) {
		t.Fatal("RawConn is not the connection's socket")
	}
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	go func() {
		_, _ = c.Write([]byte("first "))
		_, _ = c.Write([]byte("last"))
		c.Close()
	}()
	got, err := io.ReadAll(&r)
	if err != nil || string(got) != "first last" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("read after the end = %d, %v; want 0, io.EOF", n, err)
	}
}

// TestReaderErrorsAsNetConns: a Reader's errors are the connection's own
// Read's, to the letter, for a deadline passed before or during a read,
// and for a closed connection.
func TestReaderErrorsAsNetConns(t *testing.T) {
	r, p, _ := readerPair(t)
	same := func(what string, got, want error) {
		t.Helper()
		if got == nil || want == nil || got.Error() != want.Error() {
			t.Errorf("%s: %v, net.Conn's %v", what, got, want)
		}
		var ne net.Error
		if errors.As(got, &ne) != errors.As(want, &ne) {
			t.Errorf("%s: a net.Error: %v, net.Conn's %v", what, got, want)
		}
		for _, target := range []error{os.ErrDeadlineExceeded, net.ErrClosed} {
			if errors.Is(got, target) != errors.Is(want, target) {
				t.Errorf("%s: errors.Is(%v) differs", what, target)
			}
		}
	}
	read := func(rd io.Reader) error { _, err := rd.Read(make([]byte, 8)); return err }

	if err := p.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	same("read past the deadline", read(&r), read(p))

	// A deadline set while the Reader waits ends the wait.
	if err := p.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() { waiting <- read(&r) }()
	if err := p.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if err := <-waiting; !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read waiting past a deadline set meanwhile: %v, want a timeout net.Error", err)
	}

	if err := p.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() { waiting <- read(&r) }()
	p.Close() // ends a read that waits, whenever it started
	if err := <-waiting; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read waiting when closed: %v, want net.ErrClosed", err)
	}
	same("read when closed", read(&r), read(p))
}

// TestReaderOthers: a Reader of a connection Wrap leaves as it is reads
// through the connection's own Read.
func TestReaderOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	r := NewReader(a)
	if r.kind != 0 || r.RawConn() != nil {
		t.Fatalf("a net.Pipe end's Reader: kind %d, RawConn %v", r.kind, r.RawConn())
	}
	go func() { _, _ = b.Write([]byte("pipe")) }()
	got := make([]byte, 4)
	if _, err := io.ReadFull(&r, got); err != nil || string(got) != "pipe" {
		t.Fatalf("read %q, %v", got, err)
	}

	gram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: t.TempDir() + "/g", Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer gram.Close()
	if r := NewReader(gram); r.kind != 0 || r.RawConn() == nil {
		t.Fatalf("a unixgram socket's Reader: kind %d, RawConn %v; want its Read and its RawConn", r.kind, r.RawConn())
	}
}

// TestReaderAllocs: a Read allocates nothing, NewReader only the
// connection's RawConn.
func TestReaderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random in a race build")
	}
	r, p, c := readerPair(t)
	if n := testing.AllocsPerRun(100, func() { _ = NewReader(p) }); n > 1 {
		t.Errorf("NewReader: %.0f allocations, want at most 1 (SyscallConn's)", n)
	}
	msg, buf := []byte("x"), make([]byte, 1)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a write and a Read: %.1f allocations, want 0", n)
	}
}
