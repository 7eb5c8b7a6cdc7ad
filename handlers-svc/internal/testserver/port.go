package testserver

import (
	"net"
	"testing"
)

// FreePort returns a local TCP port that was free a moment ago; someone else
// may take it before the caller binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
