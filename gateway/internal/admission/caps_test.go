package admission

import (
	"net/http"
	"testing"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/proto"
)

// TestSocketCaps: the per-user cap counts each user apart, the worker cap
// counts everyone, 0 means unlimited, and a released socket frees its place.
func TestSocketCaps(t *testing.T) {
	reserve := func(a *Admission, user string) *refusal {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.reserveSocket(user)
	}
	t.Run("per user", func(t *testing.T) {
		a := New(Config{MaxConnsPerUser: 2}, nopRecorder{}, zap.NewNop())
		for range 2 {
			if r := reserve(a, "alice"); r != nil {
				t.Fatalf("alice refused below the cap: %+v", r.err)
			}
		}
		r := reserve(a, "alice")
		if r == nil || r.status != http.StatusTooManyRequests || r.err.Code != proto.CodeTooManyConnections {
			t.Fatalf("alice's third socket: %+v, want 429 %s", r, proto.CodeTooManyConnections)
		}
		if r := reserve(a, "bob"); r != nil {
			t.Fatalf("bob refused because of alice: %+v", r.err)
		}
		a.releaseSocket("alice")
		if r := reserve(a, "alice"); r != nil {
			t.Fatalf("alice refused after one of hers closed: %+v", r.err)
		}
	})
	t.Run("per worker", func(t *testing.T) {
		a := New(Config{MaxConns: 3}, nopRecorder{}, zap.NewNop())
		for _, u := range []string{"a", "b", "a"} {
			if r := reserve(a, u); r != nil {
				t.Fatalf("%s refused below the cap: %+v", u, r.err)
			}
		}
		r := reserve(a, "c")
		if r == nil || r.status != http.StatusServiceUnavailable || r.err.Code != proto.CodeUnavailable {
			t.Fatalf("a fourth socket: %+v, want 503 %s", r, proto.CodeUnavailable)
		}
		a.releaseSocket("b")
		if r := reserve(a, "c"); r != nil {
			t.Fatalf("refused after a socket closed: %+v", r.err)
		}
		if len(a.counts.perUser) != 2 || a.counts.perUser["b"] != 0 {
			t.Fatalf("per-user counts %v: a user without sockets must not keep an entry", a.counts.perUser)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		a := New(Config{}, nopRecorder{}, zap.NewNop())
		for range 1000 {
			if r := reserve(a, "alice"); r != nil {
				t.Fatalf("refused with no caps: %+v", r.err)
			}
		}
	})
}
