package rawconn

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// unanswered returns an address on 127.0.0.1 whose connects are never
// answered: a socket listening with the shortest backlog, which nobody
// accepts from, once its queue is full (the kernel then drops the SYNs,
// and a dial waits as for a host that is down).
func unanswered(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("filling the queue of %s: %v", addr, err)
			}
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("the system answers connects beyond a listener's backlog")
	return ""
}

// TestDialTimeout: a dial to an address that never answers ends at the
// Dialer's Timeout, or at the context's deadline, with net.Dialer's
// timeout error; without either it would wait out the kernel's SYN
// retries, minutes.
func TestDialTimeout(t *testing.T) {
	addr := unanswered(t)
	const timeout = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		d    Dialer
		ctx  time.Duration // the context's deadline; 0: none but a backstop
	}{
		{"Timeout", Dialer{Timeout: timeout}, 0},
		{"context", Dialer{}, timeout},
		{"context before Timeout", Dialer{Timeout: time.Hour}, timeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Without a deadline of its own, the context's is a backstop,
			// so that a Timeout not applied fails the test in seconds.
			deadline := tc.ctx
			if deadline == 0 {
				deadline = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			c, err := tc.d.DialContext(ctx, "tcp", addr)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("a dial to an unanswered address succeeded")
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("dial: %v, want a timeout net.Error", err)
			}
			if took < timeout-10*time.Millisecond || took > timeout+3*time.Second {
				t.Fatalf("the dial took %v, want about %v", took, timeout)
			}
		})
	}
}

// TestDialRefused: a dial to a port nobody listens on fails at once with
// the system's refusal, as net.Dialer's, so a caller with a list of
// servers (nats.go's pool, go-redis's cluster) goes on to the next.
func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	c, err := Dialer{Timeout: time.Minute}.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Fatalf("a dial to the closed %s succeeded", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want ECONNREFUSED", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a refused dial took %v", took)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("dial: %#v, want net.Dialer's *net.OpError", err)
	}
}
