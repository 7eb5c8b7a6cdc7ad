package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// HeartbeatFD is the file descriptor a watched worker writes its
// heartbeats to: the write end of a pipe whose read end the supervisor
// holds.
const HeartbeatFD = 4

// Heartbeat is what a StartFunc hands a worker for the watchdog: the write
// end of the heartbeat pipe, which the process must inherit as
// HeartbeatFD, and how often to write to it. File is nil when the watchdog
// is off.
type Heartbeat struct {
	File  *os.File
	Every time.Duration
}

// Hung is a worker that has not written a heartbeat for HangTimeout and is
// still running: the watchdog has killed it, or is about to, and it has not
// exited yet.
type Hung struct {
	Worker int           // its index
	Pid    int           // its process
	Silent time.Duration // since its last heartbeat (or its start)
}

// beatEvery is how often a worker beats under hangTimeout: every tenth of
// the timeout, or every second when that is shorter (so at least ten
// beats per timeout, and at least one a second), so one late beat is
// never a hang.
func beatEvery(hangTimeout time.Duration) time.Duration {
	return min(hangTimeout/10, time.Second)
}

// watched is the watchdog's view of one running worker.
type watched struct {
	pid  int
	last time.Time // the last heartbeat, or the start
}

// readBeats reads heartbeats from r until it fails (EOF once every copy
// of the write end is closed, when the worker has exited; or r closed),
// calling beat for each read.
func readBeats(r io.Reader, beat func()) {
	var buf [64]byte
	for {
		if _, err := r.Read(buf[:]); err != nil {
			return
		}
		beat()
	}
}

// Beat writes a heartbeat to the supervisor (fd HeartbeatFD) every period
// until ctx is done or the write fails (the supervisor is gone), and
// returns a function that stops it and waits for its goroutine. It runs
// on its own goroutine woken by a timer and writes one byte, so it keeps
// beating while the rest of the worker is busy: a worker is taken for hung
// only when its runtime no longer runs it (the process stopped, or
// wedged); see docs/operations.md, "Hung workers".
//
// alive, when not nil, is called before each beat and must return
// promptly in a healthy worker: the worker's check of its own central
// locks (a deadlock there blocks it, and the beats stop).
func Beat(ctx context.Context, every time.Duration, alive func()) (stop func(), err error) {
	// Non-blocking, so that Close ends a write blocked on a full pipe (a
	// supervisor that stopped reading) through the runtime's poller.
	if err := syscall.SetNonblock(HeartbeatFD, true); err != nil {
		return nil, fmt.Errorf("heartbeat fd %d: %w", HeartbeatFD, err)
	}
	f := os.NewFile(HeartbeatFD, "heartbeat")
	if f == nil {
		return nil, errors.New("no heartbeat fd")
	}
	return beatTo(ctx, f, every, alive), nil
}

// beatTo writes a byte to f every period, each after alive (when not nil)
// has returned, until ctx is done, stop is called or a write fails; stop
// closes f. stop waits for the goroutine unless it is stuck in alive: a
// worker stopping with a deadlock is left to the supervisor's kill.
func beatTo(ctx context.Context, f *os.File, every time.Duration, alive func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		b := []byte{'.'}
		for {
			if alive != nil {
				alive()
			}
			if _, err := f.Write(b); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			_ = f.Close()
			t := time.NewTimer(every + time.Second)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C: // stuck in alive
			}
		})
	}
}
