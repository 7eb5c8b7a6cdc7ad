package hub_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/hub"
)

// TestReserve: the per-user cap counts each user apart, the hub's cap
// counts everyone, 0 means no cap; a place is held from Reserve until
// Cancel, or until the socket registered in it is removed.
func TestReserve(t *testing.T) {
	t.Run("per user", func(t *testing.T) {
		h := hub.New[*conn]()
		for range 2 {
			if err := h.Reserve("alice", 0, 2); err != nil {
				t.Fatalf("alice refused below the cap: %v", err)
			}
		}
		if err := h.Reserve("alice", 0, 2); !errors.Is(err, hub.ErrUserFull) {
			t.Fatalf("alice's third place: %v, want ErrUserFull", err)
		}
		if err := h.Reserve("bob", 0, 2); err != nil {
			t.Fatalf("bob refused because of alice: %v", err)
		}
		h.Cancel("alice")
		if err := h.Reserve("alice", 0, 2); err != nil {
			t.Fatalf("alice refused after one of her places was given back: %v", err)
		}
	})
	t.Run("registered sockets count", func(t *testing.T) {
		h := hub.New[*conn]()
		a1, a2 := &conn{id: "a1", user: "alice"}, &conn{id: "a2", user: "alice"}
		for _, c := range []*conn{a1, a2} {
			if err := h.Reserve("alice", 0, 2); err != nil {
				t.Fatal(err)
			}
			h.AddReserved(c)
		}
		if n := h.UserLen("alice"); n != 2 {
			t.Fatalf("UserLen = %d after two AddReserved, want 2", n)
		}
		if err := h.Reserve("alice", 0, 2); !errors.Is(err, hub.ErrUserFull) {
			t.Fatalf("a place beside two registered sockets: %v, want ErrUserFull", err)
		}
		h.Remove(a1)
		if err := h.Reserve("alice", 0, 2); err != nil {
			t.Fatalf("refused after a registered socket was removed: %v", err)
		}
	})
	t.Run("per hub", func(t *testing.T) {
		h := hub.New[*conn]()
		h.Add(&conn{id: "b1", user: "b"}) // unreserved sockets count too
		for _, u := range []string{"a", "a"} {
			if err := h.Reserve(u, 3, 0); err != nil {
				t.Fatalf("%s refused below the cap: %v", u, err)
			}
		}
		if err := h.Reserve("c", 3, 0); !errors.Is(err, hub.ErrFull) {
			t.Fatalf("a fourth place: %v, want ErrFull", err)
		}
		if err := h.Reserve("c", 3, 1); !errors.Is(err, hub.ErrFull) {
			t.Fatalf("a fourth place under both caps: %v, want ErrFull first", err)
		}
		h.Cancel("a")
		if err := h.Reserve("c", 3, 0); err != nil {
			t.Fatalf("refused after a place was given back: %v", err)
		}
	})
	t.Run("no caps", func(t *testing.T) {
		h := hub.New[*conn]()
		for range 1000 {
			if err := h.Reserve("alice", 0, 0); err != nil {
				t.Fatalf("refused with no caps: %v", err)
			}
		}
	})
}

// TestReserveConcurrent: upgrades racing for the last places never go over
// a cap together: exactly the cap's worth of places is granted.
func TestReserveConcurrent(t *testing.T) {
	const perUser, total, racers = 3, 10, 64
	h := hub.New[*conn]()
	var mine, all atomic.Int64
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := "alice"
			if i%2 == 1 {
				user = fmt.Sprintf("u%d", i)
			}
			if err := h.Reserve(user, total, perUser); err == nil {
				all.Add(1)
				if user == "alice" {
					mine.Add(1)
				}
				h.AddReserved(&conn{id: fmt.Sprintf("c%d", i), user: user})
			}
		}()
	}
	wg.Wait()
	if got := all.Load(); got != total {
		t.Errorf("%d places granted in all, want the cap of %d", got, total)
	}
	if got := mine.Load(); got > perUser {
		t.Errorf("alice got %d places, over her cap of %d", got, perUser)
	}
	if h.Len() != total {
		t.Errorf("Len = %d, want %d", h.Len(), total)
	}
}
