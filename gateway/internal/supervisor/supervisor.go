package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/gateway/internal/announced"
	"github.com/switchboard/switchboard/internal/backoff"
)

// Process is a running worker.
type Process interface {
	Pid() int
	Signal(sig os.Signal) error
	// Wait blocks until the process has exited; it is called once.
	Wait() error
}

// StartFunc starts worker index with its listener and the files of
// Inherit, which the process must inherit; the caller closes its own
// copies of ln and of those files after StartFunc returns.
type StartFunc func(index int, ln *os.File, in Inherit) (Process, error)

// Inherit is what a worker inherits besides its listener; a nil File is
// not handed over.
type Inherit struct {
	// Heartbeat is the watchdog's pipe (HeartbeatFD), when it is on.
	Heartbeat Heartbeat
	// Announce is the write end of the pipe the worker records its
	// announced sockets on (AnnounceEnv), when Config.Announced is set.
	Announce *os.File
	// Orphans is the hand-off of the announced sockets of the worker's
	// predecessor, which died (OrphansEnv), when there are any.
	Orphans *os.File
}

// Config tunes a Supervisor; zero fields take the defaults noted.
type Config struct {
	Addr    string // address every worker serves
	Workers int    // number of workers
	// StopTimeout is how long a worker may take to stop after SIGTERM
	// before it is killed. With the watchdog on, one that stops beating
	// while it stops is killed sooner, at HangTimeout.
	StopTimeout time.Duration
	// Hurry, when closed while the workers stop, kills them (SIGKILL)
	// instead of waiting out StopTimeout: a person's second Ctrl-C.
	Hurry <-chan struct{}
	// MinBackoff and MaxBackoff bound the restart delay (100ms, 30s); it
	// doubles with each crash and resets once a worker has run StableAfter
	// (30s).
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// CrashLoopAfter is how many crashes in a row, each within StableAfter
	// of its start, make a crash loop (5). A crash-looping worker is not
	// given up: it keeps being restarted, the wait doubling up to
	// MaxBackoff (1.6s at the 5th crash with the defaults, 30s from the
	// 10th), and the loop is logged once, at error level, until the
	// worker runs stably again.
	CrashLoopAfter int
	// HangTimeout turns the watchdog on when positive: a worker that has
	// not written a heartbeat for that long (since its start, at first)
	// is hung, and is killed with SIGKILL and restarted as if it had
	// crashed. Workers beat every tenth of HangTimeout, or every second
	// when that is shorter.
	HangTimeout time.Duration
	// Announced, when positive, has each worker record the sockets whose
	// connect the lifecycle hooks were told (package announced), and is
	// the most the supervisor keeps per worker. When a worker exits other
	// than by a drain (killed, crashed, or with a non-zero status), those
	// not yet disconnected are handed to the worker started in its place,
	// which announces their disconnects. Set it when the hooks are on.
	Announced int
}

// Supervisor keeps Config.Workers worker processes running.
type Supervisor struct {
	cfg   Config
	start StartFunc
	log   *zap.Logger

	mu       sync.Mutex
	addr     string // resolved, with the real port
	restarts int
	hangs    int
	orphans  int
	watched  map[int]*watched // by worker index, while the watchdog watches it
}

// New returns a Supervisor.
func New(cfg Config, start StartFunc, log *zap.Logger) *Supervisor {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 30 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 15 * time.Second
	}
	if cfg.CrashLoopAfter <= 0 {
		cfg.CrashLoopAfter = 5
	}
	return &Supervisor{cfg: cfg, start: start, log: log, watched: map[int]*watched{}}
}

// Addr returns the address the workers serve, with the real port, once Run
// has bound it.
func (s *Supervisor) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Restarts returns how many times a worker has been restarted.
func (s *Supervisor) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Hangs returns how many workers the watchdog has killed as hung.
func (s *Supervisor) Hangs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hangs
}

// Orphans returns how many sockets of dead workers, announced and not
// disconnected, the supervisor has handed to their replacements.
func (s *Supervisor) Orphans() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.orphans
}

// Hung returns the workers, by index, that have been silent for
// HangTimeout and have not exited yet: from the moment the watchdog's
// condition holds, whether or not its check has run, until the killed
// process is gone. It stays non-empty for a worker that SIGKILL cannot
// end (stuck in the kernel), which only a restart of the host or gateway
// cures.
func (s *Supervisor) Hung() []Hung {
	if s.cfg.HangTimeout <= 0 {
		return nil
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Hung
	for i := range s.cfg.Workers {
		if w, ok := s.watched[i]; ok {
			if silent := now.Sub(w.last); silent >= s.cfg.HangTimeout {
				out = append(out, Hung{Worker: i, Pid: w.pid, Silent: silent})
			}
		}
	}
	return out
}

// Run starts the workers and keeps them running until ctx is done, then
// stops them and returns after all have exited.
func (s *Supervisor) Run(ctx context.Context) error {
	first, err := listen(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.addr = first.Addr().String()
	s.mu.Unlock()
	s.log.Info("gateway listening", zap.String("addr", s.addr), zap.Int("workers", s.cfg.Workers))

	// Bind every listener before starting any worker, so a failure leaves
	// nothing running.
	lns := []*net.TCPListener{first}
	for len(lns) < s.cfg.Workers {
		ln, err := listen(s.addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return err
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.keep(ctx, i, ln)
		}()
	}
	wg.Wait()
	s.log.Info("gateway stopped")
	return nil
}

// keep runs worker index until ctx is done, restarting it when it dies.
func (s *Supervisor) keep(ctx context.Context, index int, ln *net.TCPListener) {
	log := s.log.With(zap.Int("worker", index))
	bo := backoff.Backoff{Min: s.cfg.MinBackoff, Max: s.cfg.MaxBackoff}
	crashes := 0
	// The announced sockets of the worker that died last, not yet
	// disconnected, for the next to announce.
	var orphans []announced.Orphan
	for {
		if ln == nil {
			var err error
			if ln, err = listen(s.Addr()); err != nil {
				log.Error("cannot bind worker listener", zap.Error(err))
				if !bo.Wait(ctx) {
					return
				}
				continue
			}
		}
		p, st, err := s.startWith(log, index, ln, orphans)
		ln = nil // the worker owns the socket now; a restart binds a new one
		if err != nil {
			log.Error("cannot start worker", zap.Error(err))
			if !bo.Wait(ctx) {
				return
			}
			continue // with the orphans still to hand over
		}
		started := time.Now()
		log.Info("worker started", zap.Int("pid", p.Pid()), zap.Int("orphans", len(orphans)))
		orphans = nil // its set holds them now, for as long as the worker lives
		stopped, err := s.supervise(ctx, log, index, p, st.beats)
		orphans = s.orphaned(log, p, st, stopped, err)
		if stopped || ctx.Err() != nil {
			if len(orphans) > 0 {
				// No worker comes after it to tell the hooks.
				log.Warn("gateway stopping: the disconnects of a dead worker's sockets are not announced",
					zap.Int("pid", p.Pid()), zap.Int("orphans", len(orphans)))
			}
			return
		}
		if time.Since(started) >= s.cfg.StableAfter {
			bo.Reset()
			crashes = 0
		}
		crashes++
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
		log.Error("worker exited, restarting", zap.Int("pid", p.Pid()), zap.Error(errOrExit(err)),
			zap.Duration("ran", time.Since(started)), zap.Duration("backoff", bo.Next()), zap.Int("crashes_in_a_row", crashes))
		if crashes == s.cfg.CrashLoopAfter {
			log.Error("worker is crash looping: restarting it after backoff, doubling up to max_backoff, until it runs stably",
				zap.Int("crashes_in_a_row", crashes), zap.Duration("backoff", bo.Next()), zap.Duration("max_backoff", s.cfg.MaxBackoff),
				zap.Duration("stable_after", s.cfg.StableAfter))
		}
		if !bo.Wait(ctx) {
			return
		}
	}
}

// killWait is how long a shutdown waits for a worker it killed with
// SIGKILL to exit.
var killWait = 5 * time.Second

// supervise waits for worker index, process p, to exit and returns how it
// exited; or, once ctx is done, stops it (SIGTERM, then SIGKILL after
// StopTimeout) and returns stopped. With beats (the read end of its
// heartbeat pipe), the watchdog watches it meanwhile, while it stops too:
// silent for HangTimeout, it is killed with SIGKILL, once, and its exit
// returned as any other. A worker beats on while it drains, so one that
// hangs then is killed at HangTimeout, and does not hold the shutdown for
// the rest of StopTimeout.
func (s *Supervisor) supervise(ctx context.Context, log *zap.Logger, index int, p Process, beats *os.File) (stopped bool, exit error) {
	exited := make(chan error, 1)
	go func() { exited <- p.Wait() }()

	var check <-chan time.Time
	var w *watched
	if beats != nil {
		w = &watched{pid: p.Pid(), last: time.Now()}
		s.mu.Lock()
		s.watched[index] = w
		s.mu.Unlock()
		read := make(chan struct{})
		go func() {
			defer close(read)
			readBeats(beats, func() {
				s.mu.Lock()
				w.last = time.Now()
				s.mu.Unlock()
			})
		}()
		t := time.NewTicker(beatEvery(s.cfg.HangTimeout))
		check = t.C
		defer func() {
			t.Stop()
			s.mu.Lock()
			delete(s.watched, index)
			s.mu.Unlock()
			_ = beats.Close() // ends the read, should a grandchild hold the write end
			<-read
		}()
	}
	killed := false
	done := ctx.Done()
	var stopTimeout <-chan time.Time // set once ctx is done and SIGTERM sent
	var hurry <-chan struct{}        // likewise, Config.Hurry
	kill := func(why string) (bool, error) {
		log.Error(why, zap.Int("pid", p.Pid()))
		_ = p.Signal(syscall.SIGKILL)
		t := time.NewTimer(killWait)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			// Stuck in the kernel (uninterruptible sleep): waiting on
			// would hold the gateway's shutdown for as long, so it is
			// left to exit by itself, or to the host.
			log.Error("worker did not exit after SIGKILL, leaving it", zap.Int("pid", p.Pid()), zap.Duration("waited", killWait))
		}
		return true, nil
	}
	for {
		select {
		case err := <-exited:
			if stopTimeout != nil {
				log.Info("worker stopped", zap.Int("pid", p.Pid()), zap.Error(err))
				return true, nil
			}
			return false, err
		case <-done:
			done = nil
			_ = p.Signal(syscall.SIGTERM)
			t := time.NewTimer(s.cfg.StopTimeout)
			defer t.Stop()
			stopTimeout, hurry = t.C, s.cfg.Hurry
		case <-stopTimeout:
			return kill("worker did not stop in time, killing it")
		case <-hurry:
			return kill("told to stop at once while the worker stopped, killing it")
		case <-check:
			s.mu.Lock()
			silent := time.Since(w.last)
			hung := !killed && silent >= s.cfg.HangTimeout
			if hung {
				s.hangs++
			}
			s.mu.Unlock()
			if !hung {
				continue
			}
			killed = true
			log.Error("worker hung: no heartbeat for hang_timeout, killing it",
				zap.Int("pid", p.Pid()), zap.Duration("silent", silent), zap.Duration("hang_timeout", s.cfg.HangTimeout),
				zap.Bool("stopping", stopTimeout != nil))
			_ = p.Signal(syscall.SIGKILL)
		}
	}
}

// started is what startWith hands supervise and orphaned of a started
// worker besides its process.
type started struct {
	// beats is the read end of its heartbeat pipe; nil with the watchdog
	// off.
	beats *os.File
	// announced holds its sockets announced and not disconnected, read
	// from its announce pipe, ann, until read is closed; nil when not
	// tracked.
	announced *announced.Set
	ann       *os.File
	read      chan struct{}
}

// startWith hands ln to a new worker and closes the supervisor's copy, so
// the socket's life is the worker's: when it dies, its queue is dropped and
// the other workers' sockets take the new connections. With the watchdog
// on, it also hands the worker the write end of a new heartbeat pipe and
// returns the read end. With Config.Announced set, it hands the worker
// the write end of a new announce pipe, which a goroutine reads into a
// set that starts with orphans, and orphans themselves in a file.
func (s *Supervisor) startWith(log *zap.Logger, index int, ln *net.TCPListener, orphans []announced.Orphan) (Process, started, error) {
	defer ln.Close()
	var st started
	var in Inherit
	f, err := ln.File()
	if err != nil {
		return nil, st, fmt.Errorf("listener file: %w", err)
	}
	defer f.Close()
	// Only the worker keeps the write ends, so that the reads end when it
	// exits.
	var closeOnFail []*os.File
	fail := func(err error) (Process, started, error) {
		for _, f := range closeOnFail {
			_ = f.Close()
		}
		return nil, started{}, err
	}
	if s.cfg.HangTimeout > 0 {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("heartbeat pipe: %w", err))
		}
		defer w.Close()
		closeOnFail = append(closeOnFail, r)
		st.beats = r
		in.Heartbeat = Heartbeat{File: w, Every: beatEvery(s.cfg.HangTimeout)}
	}
	if s.cfg.Announced > 0 {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("announce pipe: %w", err))
		}
		defer w.Close()
		closeOnFail = append(closeOnFail, r)
		growPipe(w)
		st.ann, in.Announce = r, w
		if len(orphans) > 0 {
			of, err := orphanFile(orphans)
			if err != nil {
				// The worker starts all the same: those disconnects are
				// lost, as they were before the supervisor kept them.
				log.Error("cannot hand a dead worker's sockets to its replacement", zap.Int("orphans", len(orphans)), zap.Error(err))
			} else {
				defer of.Close()
				in.Orphans = of
			}
		}
	}
	p, err := s.start(index, f, in)
	if err != nil {
		return fail(err)
	}
	if st.ann != nil {
		st.announced = announced.NewSet(s.cfg.Announced)
		if in.Orphans != nil {
			// Before the first read: the replacement's record of each
			// disconnect it announces removes one.
			st.announced.Add(orphans)
		}
		st.read = make(chan struct{})
		go func() {
			defer close(st.read)
			announced.Read(st.ann, st.announced)
		}()
	}
	return p, st, nil
}

// orphanFile writes orphans to a new temporary file, removed at once
// (the worker inherits it open), and returns it at its start.
func orphanFile(orphans []announced.Orphan) (*os.File, error) {
	f, err := os.CreateTemp("", "switchboard-orphans-")
	if err != nil {
		return nil, fmt.Errorf("orphans file: %w", err)
	}
	_ = os.Remove(f.Name()) // nothing is left behind, whoever dies
	if err := announced.WriteOrphans(f, orphans); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("orphans file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("orphans file: %w", err)
	}
	return f, nil
}

// announceReadWait bounds how long the supervisor reads what a worker
// that has exited left in its announce pipe: the pipe ends at once
// unless a process the worker started holds its write end.
var announceReadWait = 2 * time.Second

// orphaned returns the sockets of worker p, which has exited, whose
// connect was announced and whose disconnect was not: none when they are
// not tracked, when the supervisor stopped it (stopped), or when it
// exited with status 0 (exit nil), a drain that announced what it could.
// Otherwise, killed or crashed, they are the orphans its replacement
// announces.
func (s *Supervisor) orphaned(log *zap.Logger, p Process, st started, stopped bool, exit error) []announced.Orphan {
	if st.announced == nil {
		return nil
	}
	noticed := time.Now()
	t := time.NewTimer(announceReadWait)
	ended := true
	select {
	case <-st.read:
	case <-t.C:
		ended = false
	}
	t.Stop()
	_ = st.ann.Close() // ends the read, should a grandchild hold the write end
	<-st.read
	if !ended {
		// Records may be left unread in the pipe, disconnects among them
		// already published: handing the set on could announce those
		// twice, so it is dropped.
		st.announced.Take(noticed)
		if !stopped && exit != nil {
			log.Error("the announce pipe of a dead worker did not end: the disconnects of its sockets are not announced",
				zap.Int("pid", p.Pid()), zap.Duration("waited", announceReadWait))
		}
		return nil
	}
	if d := st.announced.Dropped(); d > 0 {
		log.Warn("the worker had more sockets announced than the supervisor keeps: their disconnects are not handed on",
			zap.Int("pid", p.Pid()), zap.Int("dropped", d), zap.Int("max", s.cfg.Announced))
	}
	orphans := st.announced.Take(noticed)
	if stopped || exit == nil || len(orphans) == 0 {
		return nil
	}
	s.mu.Lock()
	s.orphans += len(orphans)
	s.mu.Unlock()
	log.Warn("worker died with sockets announced: their disconnects go to its replacement",
		zap.Int("pid", p.Pid()), zap.Int("orphans", len(orphans)))
	return orphans
}

func errOrExit(err error) error {
	if err == nil {
		return errors.New("exited with status 0")
	}
	return err
}

// listen binds addr with SO_REUSEPORT so every worker has its own accept
// queue on the same port. Linux spreads new connections among them; other
// kernels (macOS, the BSDs) let the sockets share the port without
// spreading connections evenly, so one worker may take most of them:
// enough to develop on, not to measure.
func listen(addr string) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_ADDR %s: %w", addr, err)
	}
	return ln.(*net.TCPListener), nil
}
