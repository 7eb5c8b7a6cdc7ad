package supervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/gateway/internal/announced"
	"github.com/switchboard/switchboard/internal/testkit"
)

func TestMain(m *testing.M) {
	// Run as a watched worker by the watchdog tests: a real process.
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperWorker(mode))
	}
	goleak.VerifyTestMain(m)
}

const wait = 5 * time.Second

// proc is a Process whose life the test drives: it exits when exit is
// called, or on a signal it does not ignore.
type proc struct {
	pid, index int
	addr       string // address of the listener it was given
	started    time.Time
	ignoreTerm bool // SIGTERM does not stop it
	ignoreKill bool // nor SIGKILL (a process stuck in the kernel)
	holdTerm   bool // SIGTERM is recorded but the exit waits for exit()

	// rec writes to the announce pipe it inherited, when it did (closed
	// as it exits, as a dying process's descriptors are); orphans are
	// those it was handed.
	rec        *announced.Writer
	announceFD int // rec's descriptor
	orphans    []announced.Orphan

	mu      sync.Mutex
	signals []os.Signal
	sigAt   []time.Time
	gotSig  chan os.Signal // every signal, as it arrives
	exited  chan struct{}
	once    sync.Once
	err     error
}

func (p *proc) Pid() int { return p.pid }

func (p *proc) Signal(sig os.Signal) error {
	p.mu.Lock()
	p.signals = append(p.signals, sig)
	p.sigAt = append(p.sigAt, time.Now())
	p.mu.Unlock()
	p.gotSig <- sig
	switch {
	case sig == syscall.SIGKILL && !p.ignoreKill:
		p.exit(errors.New("signal: killed"))
	case sig == syscall.SIGTERM && !p.ignoreTerm && !p.holdTerm:
		p.exit(nil)
	}
	return nil
}

func (p *proc) Wait() error {
	<-p.exited
	return p.err
}

func (p *proc) exit(err error) {
	p.once.Do(func() {
		if p.rec != nil {
			_ = p.rec.Close()
		}
		p.err = err
		close(p.exited)
	})
}

func (p *proc) sigs() []os.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]os.Signal(nil), p.signals...)
}

// starter is a StartFunc that makes procs and reports each start.
type starter struct {
	mu      sync.Mutex
	nextPid int
	procs   []*proc
	started chan *proc
	// configure, when set, adjusts a proc before it is returned; returning
	// an error fails the start.
	configure func(p *proc) error
}

func newStarter() *starter { return &starter{nextPid: 1000, started: make(chan *proc, 1000)} }

func (s *starter) start(index int, ln *os.File, in Inherit) (Process, error) {
	s.mu.Lock()
	s.nextPid++
	p := &proc{pid: s.nextPid, index: index, started: time.Now(), gotSig: make(chan os.Signal, 16), exited: make(chan struct{})}
	s.mu.Unlock()
	if ln == nil {
		return nil, errors.New("no listener")
	}
	// What a real worker inherits: its own copy of the announce pipe's
	// write end, and the orphans.
	if in.Announce != nil {
		fd, err := syscall.Dup(int(in.Announce.Fd()))
		if err != nil {
			return nil, err
		}
		// Room for any test's records while the supervisor reads.
		p.announceFD = fd
		if p.rec, err = announced.NewWriter(fd, 64<<20); err != nil {
			return nil, err
		}
	}
	if in.Orphans != nil {
		var err error
		if p.orphans, err = announced.ReadOrphans(in.Orphans, 1<<30); err != nil {
			return nil, err
		}
	}
	// The listener must still be usable here: the real worker inherits it.
	fl, err := net.FileListener(ln)
	if err != nil {
		return nil, err
	}
	p.addr = fl.Addr().String()
	_ = fl.Close()
	if s.configure != nil {
		if err := s.configure(p); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.started <- p
	return p, nil
}

func (s *starter) next(t *testing.T) *proc {
	t.Helper()
	select {
	case p := <-s.started:
		return p
	case <-time.After(wait):
		t.Fatal("no worker started")
		return nil
	}
}

func (s *starter) all() []*proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*proc(nil), s.procs...)
}

// runSup runs a Supervisor in the background; stop cancels it and waits.
type runSup struct {
	sup    *Supervisor
	cancel context.CancelFunc
	done   chan error
}

func startSup(t *testing.T, cfg Config, st *starter) *runSup {
	t.Helper()
	return startSupLog(t, cfg, st, zap.NewNop())
}

func startSupLog(t *testing.T, cfg Config, st *starter, log *zap.Logger) *runSup {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runSup{sup: New(cfg, st.start, log), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, p := range st.all() {
			p.exit(errors.New("test ended"))
		}
		select {
		case <-r.done:
		case <-time.After(wait):
			t.Error("Run did not return at the end of the test")
		}
	})
	return r
}

// returned waits for Run to return nil, and fails with why when it does
// not within wait; the result is put back for the test's cleanup.
func (r *runSup) returned(t *testing.T, why string) {
	t.Helper()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		r.done <- err
	case <-time.After(wait):
		t.Fatal(why)
	}
}

func TestStartsWorkersWithIndexes(t *testing.T) {
	st := newStarter()
	const n = 4
	r := startSup(t, Config{Workers: n}, st)
	var idx []int
	pids := map[int]bool{}
	for range n {
		p := st.next(t)
		idx = append(idx, p.index)
		pids[p.pid] = true
	}
	sort.Ints(idx)
	for i, got := range idx {
		if got != i {
			t.Fatalf("started indexes %v, want 0..%d", idx, n-1)
		}
	}
	addr := r.sup.Addr()
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		t.Fatalf("Addr = %q, want the bound address with its real port", addr)
	}
	for _, p := range st.all() {
		if p.addr != addr {
			t.Errorf("worker %d got a listener on %s, want %s", p.index, p.addr, addr)
		}
	}
	select {
	case p := <-st.started:
		t.Errorf("worker %d started beyond the %d configured", p.index, n)
	case <-time.After(100 * time.Millisecond):
	}
	if r.sup.Restarts() != 0 {
		t.Errorf("Restarts = %d, want 0", r.sup.Restarts())
	}
}

func TestRestartsWithSameIndex(t *testing.T) {
	st := newStarter()
	r := startSup(t, Config{Workers: 3, MinBackoff: time.Millisecond}, st)
	byIndex := map[int]*proc{}
	for range 3 {
		p := st.next(t)
		byIndex[p.index] = p
	}
	tests := []struct {
		name  string
		index int
		err   error
	}{
		{"crash", 1, errors.New("exit status 2")},
		{"clean exit is restarted too", 2, nil},
		{"restarted worker crashes again", 1, errors.New("signal: segmentation fault")},
	}
	for i, tt := range tests {
		old := byIndex[tt.index]
		old.exit(tt.err)
		p := st.next(t)
		if p.index != tt.index {
			t.Fatalf("%s: restarted worker has index %d, want %d", tt.name, p.index, tt.index)
		}
		if p.pid == old.pid {
			t.Errorf("%s: restart reused the dead process", tt.name)
		}
		if p.addr != r.sup.Addr() {
			t.Errorf("%s: restarted worker listens on %s, want %s", tt.name, p.addr, r.sup.Addr())
		}
		byIndex[tt.index] = p
		testkit.Eventually(t, wait, "Restarts counts "+strconv.Itoa(i+1), func() bool { return r.sup.Restarts() == i+1 })
	}
	if sigs := byIndex[0].sigs(); len(sigs) != 0 {
		t.Errorf("worker 0, never crashed, got signals %v", sigs)
	}
	select {
	case p := <-st.started:
		t.Errorf("unexpected start of worker %d", p.index)
	case <-time.After(50 * time.Millisecond):
	}
}

// crashing returns a configure func under which every worker of index 0
// exits as soon as it starts, except those keep says to keep.
func crashing(keep func(n int) bool) func(p *proc) error {
	var mu sync.Mutex
	n := 0
	return func(p *proc) error {
		mu.Lock()
		defer mu.Unlock()
		if !keep(n) {
			p.exit(errors.New("exit status 1"))
		}
		n++
		return nil
	}
}

func TestBackoffGrows(t *testing.T) {
	const minB, maxB = 10 * time.Millisecond, 80 * time.Millisecond
	st := newStarter()
	st.configure = crashing(func(int) bool { return false })
	core, logs := observer.New(zap.InfoLevel)
	startSupLog(t, Config{Workers: 1, MinBackoff: minB, MaxBackoff: maxB, StableAfter: time.Hour}, st, zap.New(core))
	var starts []time.Time
	for range 8 {
		starts = append(starts, st.next(t).started)
	}
	want := []time.Duration{10, 20, 40, 80, 80, 80, 80} // ms: doubling, capped at MaxBackoff
	// The delays the supervisor chose, from its log: exact, whatever the
	// machine's load. Uncapped, the last would be 320ms and 640ms.
	chosen := backoffs(logs)
	if len(chosen) < len(want) {
		t.Fatalf("%d restarts logged, want at least %d", len(chosen), len(want))
	}
	for i := range want {
		if chosen[i] != want[i]*time.Millisecond {
			t.Errorf("restart %d: back-off %s, want %s", i+1, chosen[i], want[i]*time.Millisecond)
		}
		// And it really waited: a sleep never ends early.
		if gap, lo := starts[i+1].Sub(starts[i]), want[i]*time.Millisecond; gap < lo {
			t.Errorf("restart %d came %s after the crash, want at least %s", i+1, gap, lo)
		}
	}
}

// backoffs returns the back-off of each "worker exited, restarting" line.
func backoffs(logs *observer.ObservedLogs) []time.Duration {
	var out []time.Duration
	for _, e := range logs.FilterMessage("worker exited, restarting").All() {
		for _, f := range e.Context {
			if f.Key == "backoff" {
				out = append(out, time.Duration(f.Integer))
			}
		}
	}
	return out
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	const minB, stable = 20 * time.Millisecond, 100 * time.Millisecond
	st := newStarter()
	st.configure = crashing(func(n int) bool { return n == 5 }) // the 6th start runs
	core, logs := observer.New(zap.InfoLevel)
	startSupLog(t, Config{Workers: 1, MinBackoff: minB, MaxBackoff: time.Minute, StableAfter: stable}, st, zap.New(core))
	var p *proc
	for range 6 {
		p = st.next(t) // back-offs 20, 40, 80, 160, 320ms: the next would be 640ms
	}
	testkit.Eventually(t, wait, "the worker has run longer than StableAfter", func() bool {
		return time.Since(p.started) > stable+20*time.Millisecond
	})
	crashed := time.Now()
	p.exit(errors.New("exit status 1"))
	next := st.next(t)
	// The restarted worker crashes again at once, so more lines may follow
	// the sixth.
	chosen := backoffs(logs)
	if len(chosen) < 6 || chosen[4] != 320*time.Millisecond || chosen[5] != minB {
		t.Errorf("back-offs %v: want the 6th, after a stable run, back at MinBackoff %s, not the grown 640ms", chosen, minB)
	}
	if gap := next.started.Sub(crashed); gap < minB {
		t.Errorf("restart after a stable run came %s after the crash, want at least MinBackoff %s", gap, minB)
	}
}

func TestStartFailureRetried(t *testing.T) {
	st := newStarter()
	var mu sync.Mutex
	fails := 3
	st.configure = func(*proc) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("fork: resource temporarily unavailable")
		}
		return nil
	}
	r := startSup(t, Config{Workers: 1, MinBackoff: time.Millisecond}, st)
	p := st.next(t)
	if p.index != 0 || p.addr != r.sup.Addr() {
		t.Errorf("worker after failed starts: index %d on %s, want 0 on %s", p.index, p.addr, r.sup.Addr())
	}
	mu.Lock()
	defer mu.Unlock()
	if fails != 0 {
		t.Errorf("%d failing starts left, want all retried", fails)
	}
}

func TestStopSendsSIGTERMAndWaits(t *testing.T) {
	st := newStarter()
	st.configure = func(p *proc) error { p.holdTerm = true; return nil }
	const n = 3
	r := startSup(t, Config{Workers: n, StopTimeout: time.Minute}, st)
	var procs []*proc
	for range n {
		procs = append(procs, st.next(t))
	}
	r.cancel()
	for _, p := range procs {
		select {
		case sig := <-p.gotSig:
			if sig != syscall.SIGTERM {
				t.Errorf("worker %d got %v first, want SIGTERM", p.index, sig)
			}
		case <-time.After(wait):
			t.Fatalf("worker %d got no signal on shutdown", p.index)
		}
	}
	select {
	case err := <-r.done:
		t.Fatalf("Run returned (%v) before its workers exited", err)
	default:
	}
	for _, p := range procs {
		p.exit(nil)
	}
	r.returned(t, "Run did not return after its workers exited")
	for _, p := range procs {
		if sigs := p.sigs(); len(sigs) != 1 || sigs[0] != syscall.SIGTERM {
			t.Errorf("worker %d got %v, want only SIGTERM", p.index, sigs)
		}
	}
	if r.sup.Restarts() != 0 {
		t.Errorf("Restarts = %d: workers stopped on shutdown must not be restarted", r.sup.Restarts())
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	const stopTimeout = 150 * time.Millisecond
	st := newStarter()
	st.configure = func(p *proc) error { p.ignoreTerm = p.index == 1; return nil }
	r := startSup(t, Config{Workers: 2, StopTimeout: stopTimeout}, st)
	byIndex := map[int]*proc{}
	for range 2 {
		p := st.next(t)
		byIndex[p.index] = p
	}
	r.cancel()
	r.returned(t, "Run did not return after killing the stuck worker")
	if sigs := byIndex[0].sigs(); len(sigs) != 1 || sigs[0] != syscall.SIGTERM {
		t.Errorf("obedient worker got %v, want only SIGTERM", sigs)
	}
	stuck := byIndex[1]
	sigs := stuck.sigs()
	if len(sigs) != 2 || sigs[0] != syscall.SIGTERM || sigs[1] != syscall.SIGKILL {
		t.Fatalf("stuck worker got %v, want SIGTERM then SIGKILL", sigs)
	}
	stuck.mu.Lock()
	gap := stuck.sigAt[1].Sub(stuck.sigAt[0])
	stuck.mu.Unlock()
	if gap < stopTimeout {
		t.Errorf("SIGKILL came %s after SIGTERM, before the %s StopTimeout", gap, stopTimeout)
	}
}

// TestStopDoesNotWaitForeverAfterKill: a worker that neither SIGTERM nor
// SIGKILL ends (stuck in the kernel) holds the shutdown for StopTimeout
// and killWait, then is left, logged, and Run returns: before, Run waited
// for its exit without end.
func TestStopDoesNotWaitForeverAfterKill(t *testing.T) {
	defer func(w time.Duration) { killWait = w }(killWait)
	killWait = 100 * time.Millisecond
	st := newStarter()
	st.configure = func(p *proc) error { p.ignoreTerm, p.ignoreKill = true, true; return nil }
	core, logs := observer.New(zap.InfoLevel)
	r := startSupLog(t, Config{Workers: 1, StopTimeout: 50 * time.Millisecond}, st, zap.New(core))
	p := st.next(t)
	r.cancel()
	r.returned(t, "Run did not return: it waits for a worker SIGKILL does not end")
	if sigs := p.sigs(); len(sigs) != 2 || sigs[1] != syscall.SIGKILL {
		t.Fatalf("worker got %v, want SIGTERM then SIGKILL", sigs)
	}
	if n := logs.FilterMessage("worker did not exit after SIGKILL, leaving it").FilterField(zap.Int("pid", p.pid)).Len(); n != 1 {
		t.Errorf("%d log lines say the worker was left, want 1", n)
	}
}

func TestShutdownDuringBackoff(t *testing.T) {
	st := newStarter()
	r := startSup(t, Config{Workers: 1, MinBackoff: time.Hour}, st)
	p := st.next(t)
	p.exit(errors.New("exit status 1"))
	testkit.Eventually(t, wait, "the crash is counted", func() bool { return r.sup.Restarts() == 1 })
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(wait):
		t.Fatal("Run did not return while waiting to restart a worker")
	}
	select {
	case p := <-st.started:
		t.Errorf("worker %d started after shutdown", p.index)
	default:
	}
}

func TestRunFailsWhenAddressTaken(t *testing.T) {
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	st := newStarter()
	err = New(Config{Addr: plain.Addr().String(), Workers: 2}, st.start, zap.NewNop()).Run(context.Background())
	if err == nil {
		t.Fatal("Run on an address held without SO_REUSEPORT succeeded")
	}
	if len(st.all()) != 0 {
		t.Errorf("%d workers started without a listener", len(st.all()))
	}
}

// TestListenReusePort binds two listeners on one port: both bind, a plain
// listener cannot, and the kernel spreads connections over both.
func TestListenReusePort(t *testing.T) {
	first, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addr().String()
	second, err := listen(addr)
	if err != nil {
		_ = first.Close()
		t.Fatalf("second SO_REUSEPORT listener on %s: %v", addr, err)
	}
	if second.Addr().String() != addr {
		t.Errorf("second listener on %s, want %s", second.Addr(), addr)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		_ = ln.Close()
		t.Error("a listener without SO_REUSEPORT bound the same port too")
	}

	var counts [2]int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, ln := range []*net.TCPListener{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
				mu.Lock()
				counts[i]++
				mu.Unlock()
			}
		}()
	}
	defer func() {
		_ = first.Close()
		_ = second.Close()
		wg.Wait()
	}()
	const conns = 64
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	testkit.Eventually(t, wait, "every connection is accepted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return counts[0]+counts[1] == conns
	})
	mu.Lock()
	defer mu.Unlock()
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("accepted %v: the kernel should spread %d connections over both listeners", counts, conns)
	}
}

func TestListenBadAddress(t *testing.T) {
	if ln, err := listen("256.0.0.1:99999"); err == nil {
		_ = ln.Close()
		t.Fatal("listen on an invalid address succeeded")
	}
}

// TestExecStart runs real processes: the worker sees its index in the
// environment and its listener on fd 3, and signals reach it.
func TestExecStart(t *testing.T) {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	orphans, err := orphanFile([]announced.Orphan{{Conn: "c", User: "u", Lost: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer orphans.Close()
	tests := []struct {
		name     string
		script   string
		in       Inherit
		signal   os.Signal // sent after the start, if not nil
		wantExit int       // exit code, or -1 for killed by signal
	}{
		{"index and fd 3", `test "$` + WorkerEnv + `" = 2 && test -S /proc/self/fd/` + strconv.Itoa(ListenerFD) +
			` && test -z "$` + AnnounceEnv + `" && test -z "$` + OrphansEnv + `" && exit 7`, Inherit{}, nil, 7},
		// Without the watchdog, the next descriptors are the announce
		// pipe's and the orphans'.
		{"announce pipe and orphans", `test "$` + AnnounceEnv + `" = 4 && test -p /proc/self/fd/4 && test "$` + OrphansEnv + `" = 5 && test -f /proc/self/fd/5 && exit 7`,
			Inherit{Announce: pw, Orphans: orphans}, nil, 7},
		{"SIGTERM stops it", `exec sleep 30`, Inherit{}, syscall.SIGTERM, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ExecStart("/bin/sh", []string{"-c", tt.script}, nil)(2, f, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.Pid() <= 0 {
				t.Errorf("Pid = %d", p.Pid())
			}
			if tt.signal != nil {
				if err := p.Signal(tt.signal); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- p.Wait() }()
			var werr error
			select {
			case werr = <-done:
			case <-time.After(wait):
				_ = p.Signal(syscall.SIGKILL)
				<-done
				t.Fatal("process did not exit")
			}
			var ee interface{ ExitCode() int }
			if !errors.As(werr, &ee) {
				t.Fatalf("Wait = %v, want an exit error", werr)
			}
			if ee.ExitCode() != tt.wantExit {
				t.Errorf("exit code %d (%v), want %d", ee.ExitCode(), werr, tt.wantExit)
			}
		})
	}
}

// TestRunFailureStopsStartedWorkers makes binding fail part-way through
// start-up (by lowering the open-file limit) and checks that Run, which
// returns the error, leaves no worker running and no goroutine behind that
// could start one later.
func TestRunFailureStopsStartedWorkers(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	st := newStarter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sup := New(Config{Addr: "127.0.0.1:0", Workers: 50, MinBackoff: 5 * time.Millisecond}, st.start, zap.NewNop())

	low := lim
	low.Cur = uint64(len(fds) + 3) // room for the first few listeners only
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(wait):
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Stop whatever is left; TestMain's leak check then sees it gone.
		cancel()
		for _, p := range st.all() {
			p.exit(errors.New("test ended"))
		}
	}()
	if runErr == nil {
		t.Skip("binding did not fail under the lowered limit")
	}
	t.Logf("Run = %v", runErr)
	// Run must have stopped every worker it started before it returned...
	for _, p := range st.all() {
		if len(p.sigs()) == 0 {
			t.Errorf("BUG: worker %d (pid %d) is still running after Run returned %v", p.index, p.pid, runErr)
		}
	}
	// ...and left no goroutine behind that starts or restarts more.
	if err := goleak.Find(); err != nil {
		t.Errorf("BUG: after Run returned, %d keep goroutines still run and %d workers were started and never stopped",
			strings.Count(err.Error(), "supervisor.(*Supervisor).keep("), len(st.all()))
	}
}

// TestWorkerCrashLoopIsCappedAndLoggedOnce: a worker that dies as soon as it
// starts is restarted ever more slowly, never faster than MaxBackoff once
// the back-off has grown; the crash loop is logged once, not per crash; and
// the other worker is never signalled or restarted.
func TestWorkerCrashLoopIsCappedAndLoggedOnce(t *testing.T) {
	// MaxBackoff is above what the doubling reaches by the loop's start,
	// as with the defaults (100ms to 30s: 1.6s at the 5th crash), so the
	// loop's line must say the wait it really takes, not MaxBackoff.
	const minB, maxB = 5 * time.Millisecond, 80 * time.Millisecond
	st := newStarter()
	var mu sync.Mutex
	st.configure = func(p *proc) error {
		mu.Lock()
		defer mu.Unlock()
		if p.index == 1 {
			p.exit(errors.New("exit status 2"))
		}
		return nil
	}
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	sup := New(Config{Addr: "127.0.0.1:0", Workers: 2, MinBackoff: minB, MaxBackoff: maxB,
		StableAfter: time.Hour, CrashLoopAfter: 4}, st.start, zap.New(core))
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()

	var healthy *proc
	var crashStarts []time.Time
	for len(crashStarts) < 12 || healthy == nil {
		p := st.next(t)
		if p.index == 0 {
			if healthy != nil {
				t.Fatalf("worker 0 was started twice")
			}
			healthy = p
			continue
		}
		crashStarts = append(crashStarts, p.started)
	}
	cancel()
	for _, p := range st.all() {
		p.exit(errors.New("test ended"))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// crashStarts[i] is the start after the i-th crash: the wait doubles
	// from MinBackoff, the loop does not restart faster, and from the 5th
	// restart on it is at its cap (it would be below only if the loop
	// restarted at once).
	for i := 1; i < len(crashStarts); i++ {
		want := min(minB<<(i-1), maxB)
		if gap := crashStarts[i].Sub(crashStarts[i-1]); gap < want {
			t.Errorf("restart %d came %s after the previous one, want at least %s", i, gap, want)
		}
	}
	if n := logs.FilterMessageSnippet("crash looping").Len(); n != 1 {
		t.Errorf("crash loop logged %d times over %d crashes, want once", n, len(crashStarts))
	}
	loop := logs.FilterMessageSnippet("crash looping").All()
	if len(loop) == 1 {
		fields := loop[0].ContextMap()
		if w, ok := fields["worker"]; !ok || w != int64(1) {
			t.Errorf("crash loop line names worker %v, want 1", w)
		}
		// The 4th crash waits 40ms: the line tells the operator that, and
		// that the wait grows to MaxBackoff, not that it is MaxBackoff.
		if b := fields["backoff"]; b != minB<<3 {
			t.Errorf("crash loop line: backoff %v, want the wait it takes, %s", b, minB<<3)
		}
		if strings.Contains(loop[0].Message, "no faster than every max_backoff") {
			t.Errorf("crash loop line %q claims MaxBackoff between restarts; the wait is %s and doubles", loop[0].Message, minB<<3)
		}
	}
	if healthy == nil {
		t.Fatal("worker 0 never started")
	}
	for _, sig := range healthy.sigs() {
		if sig != syscall.SIGTERM { // the SIGTERM of the shutdown is expected
			t.Errorf("healthy worker 0 got %v during worker 1's crash loop", sig)
		}
	}
}
