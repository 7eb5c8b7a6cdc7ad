package presence

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestSocketsModel: random opens and closes (again, of unknown sockets,
// of users with more sockets than are scanned, indexFrom) against a map
// of sets: each user's sockets, their index, and Len follow it, and a
// user with no socket left is gone.
func TestSocketsModel(t *testing.T) {
	l := New(client(t, testkit.StartRedis(t)), MinTTL, &counter{}, zap.NewNop())
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]map[string]bool{}
	n := 0
	for step := range 20000 {
		user := "u" + strconv.Itoa(rng.IntN(3))
		conn := "c" + strconv.Itoa(rng.IntN(3*indexFrom))
		if rng.IntN(2) == 0 {
			l.Opened(user, conn)
			if model[user] == nil {
				model[user] = map[string]bool{}
			}
			if !model[user][conn] {
				model[user][conn] = true
				n++
			}
		} else {
			l.closing(user, conn)
			if model[user][conn] {
				delete(model[user], conn)
				n--
				if len(model[user]) == 0 {
					delete(model, user)
				}
			}
		}
		if step%64 == 0 {
			l.mu.Lock()
			l.pending = l.pending[:0] // no Run: let the queue go
			l.mu.Unlock()
		}
		if got := l.Len(); got != n {
			t.Fatalf("step %d: Len = %d, want %d", step, got, n)
		}
		if len(l.local) != len(model) {
			t.Fatalf("step %d: %d users, want %d", step, len(l.local), len(model))
		}
		for u, want := range model {
			s := l.local[u]
			if s == nil || len(s.conns) != len(want) {
				t.Fatalf("step %d: %s's sockets %v, want %v", step, u, s, want)
			}
			for i, c := range s.conns {
				if !want[c.(string)] {
					t.Fatalf("step %d: %s has %s, not open", step, u, c)
				}
				if s.index != nil && s.index[c.(string)] != i {
					t.Fatalf("step %d: %s's index has %s at %d, it is at %d", step, u, c, s.index[c.(string)], i)
				}
			}
			if s.index != nil && len(s.index) != len(s.conns) {
				t.Fatalf("step %d: %s's index has %d sockets, its list %d", step, u, len(s.index), len(s.conns))
			}
		}
	}
}
