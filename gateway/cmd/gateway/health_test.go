package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// workers binds n listeners on one port with SO_REUSEPORT, as the
// supervisor does for its workers, and serves a worker's /healthz on each
// but those in hung, which accept nothing: the kernel completes their
// connections into the accept queue and no one reads them, as with a
// stopped worker. It returns the port's address.
func workers(t *testing.T, n int, hung map[int]bool) string {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	addr := "127.0.0.1:0"
	for i := range n {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		if hung[i] {
			t.Cleanup(func() { _ = ln.Close() })
			continue
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(rw, `{"status":"ok","worker":%d}`, i)
		})}
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close(); <-done })
	}
	return addr
}

// TestHealthWithoutAdminAddress: with GATEWAY_METRICS_ADDR=off, "gateway
// health" asks every worker on GATEWAY_ADDR, not whichever one the kernel
// picks: one worker of four that accepts and never answers (stopped, or
// stuck in the kernel where SIGKILL cannot end it) fails the check every
// time, and four that answer pass it, each named.
func TestHealthWithoutAdminAddress(t *testing.T) {
	for _, tt := range []struct {
		name    string
		hung    map[int]bool
		wantErr string
	}{
		{"all answer", nil, ""},
		{"one hung", map[int]bool{2: true}, "did not answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := workers(t, 4, tt.hung)
			t.Setenv("GATEWAY_JWT_SECRET", "")
			t.Setenv("GATEWAY_METRICS_ADDR", "off")
			t.Setenv("GATEWAY_ADDR", addr)
			t.Setenv("GATEWAY_WORKERS", "4")
			for range 3 { // one probe would pass three times in four
				var out bytes.Buffer
				err := health(context.Background(), nil, &out)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("health = %v, want healthy", err)
					}
					for i := range 4 {
						if !strings.Contains(out.String(), strconv.Itoa(i)) {
							t.Fatalf("output %q does not name worker %d", out.String(), i)
						}
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("health = %v (output %q), want an error saying %q", err, out.String(), tt.wantErr)
				}
			}
		})
	}
}
