package httpserver

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs New(h) on a loopback port until the test ends.
func serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(rw, "ok") }), zap.NewNop())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// TestHugeHeadersAttack: a request whose headers pass 16 KiB is refused
// with 431 before any handler runs; one just under it is served.
func TestHugeHeadersAttack(t *testing.T) {
	addr := serve(t)
	get := func(header int) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Header.Set("X-Pad", strings.Repeat("a", header))
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}).Do(req)
		if err != nil {
			t.Fatalf("GET with %d bytes of header: %v", header, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(MaxHeaderBytes - 1024); got != http.StatusOK {
		t.Errorf("headers under the limit: %d, want 200", got)
	}
	// net/http buffers 4 KiB beyond MaxHeaderBytes before it refuses.
	if got := get(MaxHeaderBytes + 8<<10); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers over the limit: %d, want 431", got)
	}
}

// TestSlowHeadersAttack: a client that sends half a request and then
// nothing is cut off once ReadHeaderTimeout has passed, not held forever.
func TestSlowHeadersAttack(t *testing.T) {
	t.Parallel()
	addr := serve(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(ReadHeaderTimeout + 5*time.Second))
	_, err = io.Copy(io.Discard, c) // a 408, if anything, then EOF
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the half-sent request was still open after %s", time.Since(start))
	}
	if d := time.Since(start); d < ReadHeaderTimeout-time.Second {
		t.Errorf("closed after %s, before the header timeout of %s", d, ReadHeaderTimeout)
	}
}

// TestSlowBodyAttack: a client that announces a body and sends none is
// cut off once ReadTimeout has passed, not held forever, even by a handler
// that does not read bodies (net/http discards the body after it).
func TestSlowBodyAttack(t *testing.T) {
	t.Parallel()
	addr := serve(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(ReadTimeout + 5*time.Second))
	_, err = io.Copy(io.Discard, c) // the handler's 200, then EOF
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the request without its body was still open after %s", time.Since(start))
	}
	if d := time.Since(start); d < ReadTimeout-time.Second {
		t.Errorf("closed after %s, before the read timeout of %s", d, ReadTimeout)
	}
}

// TestBounds: the idle timeout, which would take a minute to see happen,
// is set like the others.
func TestBounds(t *testing.T) {
	srv := New(http.NotFoundHandler(), zap.NewNop())
	if srv.ReadHeaderTimeout != ReadHeaderTimeout || srv.ReadTimeout != ReadTimeout || srv.IdleTimeout != IdleTimeout || srv.MaxHeaderBytes != MaxHeaderBytes || srv.ErrorLog == nil {
		t.Errorf("New = %+v, want the package's bounds and an error log", srv)
	}
}

// TestCheckAddr: the addresses net.Listen takes pass; a port that is not
// one is refused before any listen.
func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:8081", ":0", "[::1]:65535", "localhost:http"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:-1"} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%q): no error", bad)
		}
	}
}
