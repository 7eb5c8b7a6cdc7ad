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
