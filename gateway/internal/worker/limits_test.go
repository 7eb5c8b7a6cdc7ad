package worker

import (
	"net/http"
	"testing"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/proto"
)

// TestSocketCaps: the per-user cap counts each user apart, the worker cap
// counts everyone, 0 means unlimited, and a released socket frees its place.
func TestSocketCaps(t *testing.T) {
	reserve := func(w *Worker, user string) *refusal {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.reserveSocket(user)
	}
	t.Run("per user", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxConnsPerUser, cfg.MaxConns = 2, 0
		w := New(cfg, 0, zap.NewNop())
		for range 2 {
			if r := reserve(w, "alice"); r != nil {
				t.Fatalf("alice refused below the cap: %+v", r.err)
			}
		}
		r := reserve(w, "alice")
		if r == nil || r.status != http.StatusTooManyRequests || r.err.Code != proto.CodeTooManyConnections {
			t.Fatalf("alice's third socket: %+v, want 429 %s", r, proto.CodeTooManyConnections)
		}
		if r := reserve(w, "bob"); r != nil {
			t.Fatalf("bob refused because of alice: %+v", r.err)
		}
		w.releaseSocket("alice")
		if r := reserve(w, "alice"); r != nil {
			t.Fatalf("alice refused after one of hers closed: %+v", r.err)
		}
	})
	t.Run("per worker", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxConnsPerUser, cfg.MaxConns = 0, 3
		w := New(cfg, 0, zap.NewNop())
		for _, u := range []string{"a", "b", "a"} {
			if r := reserve(w, u); r != nil {
				t.Fatalf("%s refused below the cap: %+v", u, r.err)
			}
		}
		r := reserve(w, "c")
		if r == nil || r.status != http.StatusServiceUnavailable || r.err.Code != proto.CodeUnavailable {
			t.Fatalf("a fourth socket: %+v, want 503 %s", r, proto.CodeUnavailable)
		}
		w.releaseSocket("b")
		if r := reserve(w, "c"); r != nil {
			t.Fatalf("refused after a socket closed: %+v", r.err)
		}
		if len(w.counts.perUser) != 2 || w.counts.perUser["b"] != 0 {
			t.Fatalf("per-user counts %v: a user without sockets must not keep an entry", w.counts.perUser)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxConnsPerUser, cfg.MaxConns = 0, 0
		w := New(cfg, 0, zap.NewNop())
		for range 1000 {
			if r := reserve(w, "alice"); r != nil {
				t.Fatalf("refused with no caps: %+v", r.err)
			}
		}
	})
}
