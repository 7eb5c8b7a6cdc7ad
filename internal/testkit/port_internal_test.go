package testkit

import (
	"runtime"
	"testing"
)

// TestFreePortReserved: a port FreePort hands out is reserved on the
// machine while the test runs, so another test process cannot draw it;
// the reservation is one holder's at a time and free again once let go.
func TestFreePortReserved(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ports are reserved across processes on Linux only")
	}
	var p int
	t.Run("holder", func(t *testing.T) {
		p = FreePort(t)
		if r, ok := reservePort(p); ok {
			r.Close()
			t.Fatalf("port %d handed out but not reserved", p)
		}
	})
	// The subtest has ended: its reservation with it.
	r, ok := reservePort(p)
	if !ok {
		t.Fatalf("port %d still reserved after the test that drew it ended", p)
	}
	if r2, ok := reservePort(p); ok {
		r2.Close()
		t.Fatalf("port %d reserved twice at once", p)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
