package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/internal/testkit"
)

// helperEnv runs the test binary as a watched worker (TestMain): its value
// is the worker's behaviour, one of
//
//	beat          beats as asked (HeartbeatEnv), with Beat
//	every:D       beats every D instead, with Beat
//	busy          beats as asked while it keeps one core busy and collects
//	              garbage all the time (GOMAXPROCS=1)
//	hang-once:DIR worker 1 beats a few times, then stops itself (SIGSTOP),
//	              the first time only (it leaves a mark in DIR); the others,
//	              and worker 1 restarted, beat as asked
//	hang-on-term:DIR beats as asked, leaving a mark in DIR once it does,
//	              on after SIGTERM as a draining worker does, then stops
//	              itself (SIGSTOP) three beats into the stop: a worker that
//	              hangs while draining
const helperEnv = "SUPERVISOR_TEST_WORKER"

// helperWorker is a worker process for the watchdog tests: it beats, as
// mode says, until SIGTERM.
func helperWorker(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	every, err := time.ParseDuration(os.Getenv(HeartbeatEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper worker: no heartbeat period:", err)
		return 2
	}
	hang, hangOnTerm, beatingMark := false, false, ""
	switch kind, arg, _ := strings.Cut(mode, ":"); kind {
	case "beat":
	case "hang-on-term":
		hangOnTerm, beatingMark = true, filepath.Join(arg, "beating")
	case "every":
		if every, err = time.ParseDuration(arg); err != nil {
			fmt.Fprintln(os.Stderr, "helper worker:", err)
			return 2
		}
	case "busy":
		runtime.GOMAXPROCS(1)
		for range 4 {
			go churn(ctx)
		}
	case "hang-once":
		mark := filepath.Join(arg, "hung")
		if os.Getenv(WorkerEnv) == "1" {
			if _, err := os.Stat(mark); errors.Is(err, os.ErrNotExist) {
				hang = os.WriteFile(mark, nil, 0o600) == nil
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "helper worker: unknown mode", mode)
		return 2
	}
	beatCtx := ctx
	if hangOnTerm {
		beatCtx = context.WithoutCancel(ctx) // beats on while stopping, as the gateway's workers do
	}
	stopBeat, err := Beat(beatCtx, every, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper worker:", err)
		return 2
	}
	defer stopBeat()
	if hangOnTerm {
		if err := os.WriteFile(beatingMark, nil, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "helper worker:", err)
			return 2
		}
		<-ctx.Done()
		time.Sleep(3 * every) // draining: what the helper simulates, not a wait for a condition
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		select {} // SIGKILL ends it
	}
	if hang {
		t := time.NewTimer(3 * every)
		select {
		case <-t.C:
			// A real hang: alive, holding its sockets, doing nothing.
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	return 0
}

// churn spins and allocates until ctx is done: short-lived garbage over a
// retained heap of some megabytes, so the collector runs all the time.
func churn(ctx context.Context) {
	keep := make([][]byte, 256)
	for i := 0; ctx.Err() == nil; i++ {
		keep[i%len(keep)] = make([]byte, 32<<10)
	}
}

type startedProc struct {
	index, pid int
}

// startReal runs a Supervisor of real worker processes, this test binary
// as helperWorker in mode; each start is reported on the channel.
func startReal(t *testing.T, cfg Config, mode string, log *zap.Logger) (*Supervisor, <-chan startedProc) {
	t.Helper()
	starts := make(chan startedProc, 100)
	execStart := ExecStart(os.Args[0], []string{"-test.run=^$"}, []string{helperEnv + "=" + mode})
	start := func(index int, ln *os.File, hb Inherit) (Process, error) {
		p, err := execStart(index, ln, hb)
		if err == nil {
			starts <- startedProc{index, p.Pid()}
		}
		return p, err
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.StopTimeout = 2 * time.Second
	sup := New(cfg, start, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * wait):
			t.Error("Run did not return at the end of the test")
		}
	})
	return sup, starts
}

func nextStart(t *testing.T, starts <-chan startedProc) startedProc {
	t.Helper()
	select {
	case s := <-starts:
		return s
	case <-time.After(wait):
		t.Fatal("no worker started")
		return startedProc{}
	}
}

// hungLines returns the watchdog's kill lines: worker, pid and silence.
func hungLines(logs *observer.ObservedLogs) []Hung {
	var out []Hung
	for _, e := range logs.FilterMessageSnippet("worker hung").All() {
		m := e.ContextMap()
		w, _ := m["worker"].(int64)
		pid, _ := m["pid"].(int64)
		silent, _ := m["silent"].(time.Duration)
		out = append(out, Hung{Worker: int(w), Pid: int(pid), Silent: silent})
	}
	return out
}

// TestWatchdogKillsHungWorker: of two real workers, worker 1 stops itself
// (SIGSTOP) after a few heartbeats. The watchdog kills it once it has been
// silent for HangTimeout, not before and not much after; it is restarted
// with its index, and the new one, beating, is left alone; worker 0 is
// never touched.
func TestWatchdogKillsHungWorker(t *testing.T) {
	const hangTimeout = time.Second
	core, logs := observer.New(zap.InfoLevel)
	sup, starts := startReal(t, Config{Workers: 2, HangTimeout: hangTimeout, MinBackoff: 10 * time.Millisecond},
		"hang-once:"+t.TempDir(), zap.New(core))
	byIndex := map[int]startedProc{}
	for range 2 {
		s := nextStart(t, starts)
		byIndex[s.index] = s
	}
	hung := byIndex[1]
	restarted := nextStart(t, starts)
	if restarted.index != 1 || restarted.pid == hung.pid {
		t.Fatalf("started worker %d (pid %d), want worker 1 restarted after pid %d hung", restarted.index, restarted.pid, hung.pid)
	}
	lines := hungLines(logs)
	if len(lines) != 1 || lines[0].Worker != 1 || lines[0].Pid != hung.pid {
		t.Fatalf("watchdog kills logged: %+v, want one of worker 1, pid %d", lines, hung.pid)
	}
	// Killed once silent for the timeout: never earlier, and within a
	// few checks (a tenth of the timeout each) after, with room for a
	// loaded machine.
	if s := lines[0].Silent; s < hangTimeout || s > 2*hangTimeout {
		t.Errorf("killed after %s of silence, want from %s to %s", s, hangTimeout, 2*hangTimeout)
	}
	exits := logs.FilterMessage("worker exited, restarting").All()
	if len(exits) != 1 || !strings.Contains(fmt.Sprint(exits[0].ContextMap()["error"]), "killed") {
		t.Errorf("exits logged: %v, want one, by SIGKILL", exits)
	}
	if sup.Hangs() != 1 || sup.Restarts() != 1 {
		t.Errorf("Hangs = %d, Restarts = %d, want 1 and 1", sup.Hangs(), sup.Restarts())
	}
	// The new worker 1 beats: it must outlive the timeout a few times
	// over, and so must worker 0.
	deadline := time.Now().Add(3 * hangTimeout)
	for time.Now().Before(deadline) {
		if h := sup.Hung(); len(h) != 0 {
			t.Fatalf("Hung = %+v after the restart, want none", h)
		}
		select {
		case s := <-starts:
			t.Fatalf("worker %d (pid %d) started again: a beating worker was killed", s.index, s.pid)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if sup.Hangs() != 1 {
		t.Errorf("Hangs = %d after the restart, want still 1", sup.Hangs())
	}
}

// TestWatchdogSparesSlowAndBusyWorkers: a worker that beats late, but
// within HangTimeout, or beats while its one core is busy and its
// collector runs all the time, is never taken for hung; one whose beats
// come further apart than HangTimeout is. Each runs a real process for
// three timeouts.
func TestWatchdogSparesSlowAndBusyWorkers(t *testing.T) {
	const hangTimeout = time.Second
	tests := []struct {
		name   string
		mode   string
		killed bool
	}{
		{"beats every 0.7 timeout, 7 times the period asked", "every:700ms", false},
		{"busy core and collector", "busy", false},
		{"beats every 1.5 timeouts", "every:1500ms", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			sup, starts := startReal(t, Config{Workers: 1, HangTimeout: hangTimeout, MinBackoff: 10 * time.Millisecond},
				tt.mode, zap.New(core))
			first := nextStart(t, starts)
			if tt.killed {
				testkit.Eventually(t, wait, "the worker is killed as hung", func() bool { return sup.Hangs() >= 1 })
				if l := hungLines(logs); len(l) == 0 || l[0].Pid != first.pid || l[0].Silent < hangTimeout {
					t.Errorf("kill lines %+v: want pid %d, silent at least %s", l, first.pid, hangTimeout)
				}
				if s := nextStart(t, starts); s.index != 0 {
					t.Errorf("restarted worker %d, want 0", s.index)
				}
				return
			}
			deadline := time.Now().Add(3 * hangTimeout)
			for time.Now().Before(deadline) {
				if h := sup.Hung(); len(h) != 0 {
					t.Fatalf("Hung = %+v, want none", h)
				}
				select {
				case s := <-starts:
					t.Fatalf("worker restarted (pid %d after %d): killed as hung while beating", s.pid, first.pid)
				case <-time.After(20 * time.Millisecond):
				}
			}
			if sup.Hangs() != 0 || sup.Restarts() != 0 {
				t.Errorf("Hangs = %d, Restarts = %d, want 0 and 0", sup.Hangs(), sup.Restarts())
			}
		})
	}
}

// TestHungUntilGone: a silent worker is reported by Hung, with its pid,
// from the timeout on and for as long as SIGKILL does not end it (a
// process stuck in the kernel); it is sent SIGKILL once, counted once,
// and leaves Hung when it exits, to be restarted.
func TestHungUntilGone(t *testing.T) {
	const hangTimeout = 200 * time.Millisecond
	st := newStarter()
	st.configure = func(p *proc) error { p.ignoreKill = true; return nil } // and never beats
	r := startSup(t, Config{Workers: 1, HangTimeout: hangTimeout, MinBackoff: time.Millisecond}, st)
	p := st.next(t)
	if h := r.sup.Hung(); len(h) != 0 {
		t.Fatalf("Hung = %+v at the start, want none", h)
	}
	select {
	case sig := <-p.gotSig:
		if sig != syscall.SIGKILL {
			t.Fatalf("silent worker got %v, want SIGKILL", sig)
		}
		if since := time.Since(p.started); since < hangTimeout {
			t.Fatalf("SIGKILL %s after the start, before the %s timeout", since, hangTimeout)
		}
	case <-time.After(wait):
		t.Fatal("silent worker was not killed")
	}
	// Still running: hung, for several checks, and not signalled again.
	for range 5 {
		h := r.sup.Hung()
		if len(h) != 1 || h[0].Worker != 0 || h[0].Pid != p.pid || h[0].Silent < hangTimeout {
			t.Fatalf("Hung = %+v, want worker 0, pid %d, silent at least %s", h, p.pid, hangTimeout)
		}
		select {
		case sig := <-p.gotSig:
			t.Fatalf("got %v after SIGKILL, want nothing more", sig)
		case <-time.After(beatEvery(hangTimeout)):
		}
	}
	if r.sup.Hangs() != 1 {
		t.Errorf("Hangs = %d, want 1", r.sup.Hangs())
	}
	p.exit(errors.New("signal: killed"))
	next := st.next(t)
	if next.index != 0 {
		t.Errorf("restarted worker %d, want 0", next.index)
	}
	for _, h := range r.sup.Hung() {
		if h.Pid == p.pid {
			t.Errorf("Hung = %+v after pid %d exited, want it gone", h, p.pid)
		}
	}
	if r.sup.Restarts() != 1 {
		t.Errorf("Restarts = %d, want 1", r.sup.Restarts())
	}
}

// TestBeatStops: beatTo writes at once and then every period; stop ends
// its goroutine (TestMain's leak check) and closes the file.
func TestBeatStops(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stop := beatTo(context.Background(), w, time.Millisecond, nil)
	got := 0
	buf := make([]byte, 1)
	for got < 3 {
		if _, err := r.Read(buf); err != nil {
			t.Fatalf("read beat %d: %v", got+1, err)
		}
		got++
	}
	stop()
	stop() // idempotent
	if _, err := w.Write(buf); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after stop = %v, want the file closed", err)
	}
}

// TestBeatWaitsForAlive: no beat is written while alive blocks (a worker
// whose central lock is deadlocked stops beating, so the watchdog kills
// it), the beats resume once it returns, and stop does not hang on an
// alive that never returns.
func TestBeatWaitsForAlive(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var mu sync.Mutex
	alive := func() { mu.Lock(); mu.Unlock() }
	stop := beatTo(context.Background(), w, time.Millisecond, alive)
	buf := make([]byte, 64)
	if _, err := r.Read(buf); err != nil {
		t.Fatalf("first beat: %v", err)
	}
	mu.Lock() // the worker's lock is now held for good
	// Drain what was written before alive blocked: at most the beat in
	// progress. Then nothing may come.
	if err := r.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.Read(buf); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: %v", err)
			}
			break
		}
	}
	if err := r.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(buf); err == nil {
		t.Fatalf("%d beats written while alive was blocked, want none", n)
	}
	mu.Unlock()
	if err := r.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(buf); err != nil {
		t.Fatalf("beat after alive returned: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop hung on an alive that does not return")
	}
}

// TestWatchdogDuringShutdown: a worker that hangs while it drains after
// SIGTERM (it beats on while stopping, then stops itself) is killed once
// silent for HangTimeout, as it would be while serving: the supervisor's
// shutdown does not wait out StopTimeout (the drain limit,
// GATEWAY_SHUTDOWN_TIMEOUT + 5s) for it.
func TestWatchdogDuringShutdown(t *testing.T) {
	const hangTimeout, stopTimeout = time.Second, 30 * time.Second
	core, logs := observer.New(zap.InfoLevel)
	starts := make(chan startedProc, 10)
	dir := t.TempDir()
	execStart := ExecStart(os.Args[0], []string{"-test.run=^$"}, []string{helperEnv + "=hang-on-term:" + dir})
	start := func(index int, ln *os.File, hb Inherit) (Process, error) {
		p, err := execStart(index, ln, hb)
		if err == nil {
			starts <- startedProc{index, p.Pid()}
		}
		return p, err
	}
	sup := New(Config{Addr: "127.0.0.1:0", Workers: 1, HangTimeout: hangTimeout, StopTimeout: stopTimeout},
		start, zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	p := nextStart(t, starts)
	testkit.Eventually(t, wait, "the worker beats", func() bool {
		_, err := os.Stat(filepath.Join(dir, "beating"))
		return err == nil
	})
	stopAt := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		t.Fatalf("Run did not return within StopTimeout (%s) of the shutdown", stopTimeout)
	}
	took := time.Since(stopAt)
	lines := hungLines(logs)
	if len(lines) != 1 || lines[0].Pid != p.pid || lines[0].Silent < hangTimeout {
		t.Fatalf("watchdog kills logged: %+v, want one of pid %d, silent at least %s", lines, p.pid, hangTimeout)
	}
	if took > stopTimeout/3 {
		t.Errorf("shutdown took %s, want about the hang timeout (%s) after the worker hung, far below StopTimeout", took, hangTimeout)
	}
	if n := len(logs.FilterMessage("worker did not stop in time, killing it").All()); n != 0 {
		t.Errorf("killed by StopTimeout too (%d lines)", n)
	}
	if sup.Hangs() != 1 || sup.Restarts() != 0 {
		t.Errorf("Hangs = %d, Restarts = %d, want 1 and 0 (not restarted while stopping)", sup.Hangs(), sup.Restarts())
	}
}
