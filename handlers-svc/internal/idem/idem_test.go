package idem_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/internal/idem"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestWaitGivesUpOnDeadHolder: a key whose holder went away without
// settling it (its process was killed mid-request) stays pending until
// it expires; a repeat stops waiting once the holder's own deadline, and
// the time it had to record its answer, have passed, rather than
// holding on until the repeat's deadline, each repeat of it for as long
// as the record lasts. It is refused (ErrUnknown), never reserved.
func TestWaitGivesUpOnDeadHolder(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := idem.New(rdb, 2*time.Minute)

	holder, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if res, _, err := s.Reserve(holder, "k", "h"); res == nil || err != nil {
		t.Fatalf("Reserve: %v, %v", res, err)
	}
	// The holder is gone: nothing settles the key.

	ctx, cancel2 := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel2()
	start := time.Now()
	res, answer, err := s.Wait(ctx, "k", "h")
	if res != nil || answer != nil || !errors.Is(err, idem.ErrUnknown) {
		t.Errorf("Wait on a dead holder's key: %v, %q, %v; want ErrUnknown", res, answer, err)
	}
	if d := time.Since(start); ctx.Err() != nil {
		t.Errorf("Wait held on %s, to its own deadline", d.Round(time.Millisecond))
	}
}

// TestWaitForLiveHolder: a repeat whose holder is within its deadline
// waits for its answer and gets it.
func TestWaitForLiveHolder(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := idem.New(rdb, 2*time.Minute)

	holder, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, _, err := s.Reserve(holder, "k", "h")
	if res == nil || err != nil {
		t.Fatalf("Reserve: %v, %v", res, err)
	}
	got := make(chan error, 1)
	var answer []byte
	go func() {
		var err error
		_, answer, err = s.Wait(context.Background(), "k", "h")
		got <- err
	}()
	if err := s.Record(holder, res, []byte("the answer")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil || string(answer) != "the answer" {
		t.Errorf("Wait: %q, %v; want the holder's answer", answer, err)
	}
}

// TestReserveOnAStalledRedis: a reservation whose answer Redis did not
// give within the caller's deadline is refused at that deadline, not 2 s
// later (the dispatch API answered 503 after 7 s with a 5 s timeout),
// and is still undone in the background once Redis answers, so a repeat
// does not find it pending.
func TestReserveOnAStalledRedis(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close(); _ = admin.Close() })
	s := idem.New(rdb, 2*time.Minute)
	bg := context.Background()
	if err := rdb.Ping(bg).Err(); err != nil { // a connection pooled, the script not yet loaded
		t.Fatal(err)
	}
	if err := admin.Do(bg, "CLIENT", "PAUSE", "20000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, _, err := s.Reserve(ctx, "k", "h")
	took := time.Since(start)
	if res != nil || err == nil {
		t.Fatalf("Reserve on a paused Redis: %v, %v; want an error", res, err)
	}
	// The undo must not be waited for: 300 ms and not 2.3 s (its bound).
	if took > 1500*time.Millisecond {
		t.Errorf("Reserve returned after %s, past its 300 ms deadline by the undo's wait", took)
	}
	if err := admin.Do(bg, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, err := admin.Exists(bg, "k").Result()
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reservation made once Redis went on was not undone (exists %d, %v)", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
