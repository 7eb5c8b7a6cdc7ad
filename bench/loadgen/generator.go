// Package loadgen drives switchboard with the scenario of issue 5 and
// measures it: U users in pairs (u0<->u1, u2<->u3, ...), each with D sockets
// spread over the gateway's workers; open-loop sends at a total rate R, each
// a sendMessage to the partner from a random device of a random user, with
// latency measured from the scheduled send time (no coordinated omission).
// Each send expects 2*D deliveries ("message" on every device of the
// partner, "message_sent" on every device of the sender) and one ack.
//
// The server side (RSS, CPU, goroutines) is read from /proc and from the
// gateway's Prometheus endpoint, for the processes named in Config.
package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/testjwt"
)

// Config is one load generator's setup.
type Config struct {
	URL       string // ws://host:port/socket
	Secret    string // HS256 secret to mint tokens with
	Users     int    // U, even
	FirstUser int    // users are u<FirstUser>...: a shard of a bigger idle test
	Devices   int    // D
	Workers   int    // gateway workers to spread each user's sockets over; 0 = take what comes
	DialConc  int    // dials in flight at once
	Sources   int    // 127.0.0.x source addresses; 0 = 8, or one per 10,000 sockets beyond
	Drain     time.Duration
	Processes Processes
	Metrics   string // the gateway's Prometheus URL, or ""
	RedisAddr string // the stack's Redis, host:port, to read its memory after each run; "" = not read
	// KeepPositions keeps each socket's connected frame, where its
	// position starts: the resume scenario (Resume) needs it.
	KeepPositions bool
	// Fanout has each load run read what the fan-out cost (Result.Fanout)
	// from RedisAddr and Metrics, both required.
	Fanout bool
	Log    func(format string, args ...any)
}

// Processes are the server processes to measure.
type Processes struct {
	Gateway, Handlers, NATS, Redis int // pids; the gateway's workers are its children
}

// The names of the processes' CPU figures (Result.CPUPer1k). "gateway" is
// the supervisor and its workers together, as runs.csv has always had it;
// the two parts are also given apart.
const (
	ProcGateway    = "gateway"
	ProcSupervisor = "gateway-supervisor"
	ProcWorkers    = "gateway-workers"
	ProcHandlers   = "handlers-svc"
	ProcNATS       = "nats-server"
	ProcRedis      = "redis-server"
)

// ServerProcs are the processes whose CPU makes up Result.CPUTotalPer1k,
// each counted once, in the order reports list them.
var ServerProcs = []string{ProcWorkers, ProcSupervisor, ProcHandlers, ProcNATS, ProcRedis}

func (p Processes) groups() []Group {
	return []Group{
		{Name: ProcGateway, Pid: p.Gateway, WithKids: true},
		{Name: ProcSupervisor, Pid: p.Gateway},
		{Name: ProcWorkers, Pid: p.Gateway, KidsOnly: true},
		{Name: ProcHandlers, Pid: p.Handlers},
		{Name: ProcNATS, Pid: p.NATS},
		{Name: ProcRedis, Pid: p.Redis},
	}
}

// Generator holds the sockets of the scenario and runs phases on them.
type Generator struct {
	cfg    Config
	dialer *dialer
	tokens []string
	socks  []*sock // user*D + dev

	cur       atomic.Pointer[runState]
	resumeRn  atomic.Pointer[resumeRun]    // the resume round under way, if any
	oneN      atomic.Pointer[oneToManyRun] // the 1→N phase (or its room's set-up) under way, if any
	closing   atomic.Bool
	connsLost atomic.Int64
	closesMu  sync.Mutex
	closes    map[string]int // close code and reason of sockets the server closed
	errCodes  map[string]int // error frames by code, this run

	sendErrors atomic.Int64
	overflow   atomic.Int64
	stale      atomic.Int64
	errFrames  atomic.Int64

	flushMu   sync.Mutex
	flushN    int       // flusher goroutines running
	flushIdle sync.Cond // broadcast when flushN drops to 0

	// The scheduling goroutine's own: the send being written.
	payload, frame []byte

	// readBufs holds the sockets' read buffers: a socket takes one only
	// while it reads, so an idle socket holds none.
	readBufs sync.Pool

	dials     Histogram    // time to open one socket, from dial to connected frame
	dialFails atomic.Int64 // dials that failed and were retried
}

// New returns a Generator for cfg; Connect opens its sockets.
func New(cfg Config) (*Generator, error) {
	if cfg.Users < 2 || cfg.Users%2 != 0 {
		return nil, fmt.Errorf("users must be even and at least 2, got %d", cfg.Users)
	}
	if cfg.Devices < 1 || cfg.Devices > MaxDevices {
		return nil, fmt.Errorf("devices must be 1..%d, got %d", MaxDevices, cfg.Devices)
	}
	if cfg.DialConc < 1 {
		cfg.DialConc = 64
	}
	if cfg.Sources < 1 {
		cfg.Sources = max(8, (cfg.Users*cfg.Devices)/10000+1)
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	if cfg.Fanout && (cfg.RedisAddr == "" || cfg.Metrics == "") {
		return nil, fmt.Errorf("the fan-out figures need the Redis address and the metrics URL")
	}
	d, err := newDialer(cfg.URL, cfg.Sources)
	if err != nil {
		return nil, err
	}
	d.keepHello = cfg.KeepPositions
	g := &Generator{cfg: cfg, dialer: d, closes: map[string]int{}, errCodes: map[string]int{}}
	g.flushIdle.L = &g.flushMu
	g.readBufs.New = func() any { b := make([]byte, readBufSize); return &b }
	for u := range cfg.Users {
		tok, err := testjwt.Mint(cfg.Secret, fmt.Sprintf("u%d", cfg.FirstUser+u), 24*time.Hour)
		if err != nil {
			return nil, err
		}
		g.tokens = append(g.tokens, tok)
	}
	g.socks = make([]*sock, cfg.Users*cfg.Devices)
	return g, nil
}

func (g *Generator) closeCounts() map[string]int {
	g.closesMu.Lock()
	defer g.closesMu.Unlock()
	if len(g.closes) == 0 {
		return nil
	}
	out := make(map[string]int, len(g.closes))
	for k, v := range g.closes {
		out[k] = v
	}
	return out
}

func (g *Generator) noteError(code string) {
	g.closesMu.Lock()
	g.errCodes[code]++
	g.closesMu.Unlock()
}

func (g *Generator) errorCounts() map[string]int {
	g.closesMu.Lock()
	defer g.closesMu.Unlock()
	if len(g.errCodes) == 0 {
		return nil
	}
	out := make(map[string]int, len(g.errCodes))
	for k, v := range g.errCodes {
		out[k] = v
	}
	clear(g.errCodes) // per run
	return out
}

func (g *Generator) noteClose(code int, text string) {
	g.closesMu.Lock()
	g.closes[fmt.Sprintf("%d %s", code, text)]++
	g.closesMu.Unlock()
}

// Connect opens every socket that is not open, DialConc at a time, and
// returns how long that took. With Workers set, device d of user u is
// redialled (up to 32 times) until it lands on worker (u+d) mod Workers.
func (g *Generator) Connect(ctx context.Context) (time.Duration, int, error) {
	start := time.Now()
	var (
		next    atomic.Int64
		opened  atomic.Int64
		redials atomic.Int64
		errMu   sync.Mutex
		first   error
		wg      sync.WaitGroup
	)
	for range g.cfg.DialConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(g.socks) || ctx.Err() != nil {
					return
				}
				if s := g.socks[i]; s != nil {
					if !s.dead.Load() {
						continue
					}
					<-s.done // its reader is ending
				}
				user, dev := i/g.cfg.Devices, i%g.cfg.Devices
				t0 := time.Now()
				s, n, err := g.open(ctx, user, dev)
				g.dials.Record(time.Since(t0))
				redials.Add(int64(n))
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
				g.socks[i] = s
				opened.Add(1)
			}
		}()
	}
	wg.Wait()
	return time.Since(start), int(opened.Load()), first
}

func (g *Generator) open(ctx context.Context, user, dev int) (*sock, int, error) {
	want := -1
	if g.cfg.Workers > 1 {
		want = (user + dev) % g.cfg.Workers
	}
	var err error
	for try := range 32 {
		s, worker, derr := g.dialer.dial(ctx, g.tokens[user], "")
		if derr != nil {
			err = derr
			g.dialFails.Add(1)
			time.Sleep(50 * time.Millisecond) // a worker restarting answers 503
			continue
		}
		if want >= 0 && worker != want && try < 31 {
			_ = s.nc.Close()
			continue
		}
		s.g, s.user, s.dev, s.worker = g, user, dev, worker
		go s.readLoop()
		return s, try, nil
	}
	return nil, 32, fmt.Errorf("u%d device %d: %w", user, dev, err)
}

// Close closes every socket and waits for their readers and flushers.
func (g *Generator) Close() {
	g.closing.Store(true)
	for _, s := range g.socks {
		if s != nil {
			_ = s.nc.Close()
		}
	}
	for _, s := range g.socks {
		if s != nil {
			<-s.done
		}
	}
	g.waitFlushes()
}

func (g *Generator) flushStarted() {
	g.flushMu.Lock()
	g.flushN++
	g.flushMu.Unlock()
}

func (g *Generator) flushEnded() {
	g.flushMu.Lock()
	g.flushN--
	if g.flushN == 0 {
		g.flushIdle.Broadcast()
	}
	g.flushMu.Unlock()
}

// waitFlushes waits until no socket has frames waiting to be written.
func (g *Generator) waitFlushes() {
	g.flushMu.Lock()
	for g.flushN > 0 {
		g.flushIdle.Wait()
	}
	g.flushMu.Unlock()
}

// Open returns how many sockets are open.
func (g *Generator) Open() int {
	n := 0
	for _, s := range g.socks {
		if s != nil && !s.dead.Load() {
			n++
		}
	}
	return n
}

// received handles one message from s, read at now.
func (g *Generator) received(s *sock, data []byte, now time.Time) {
	p := parseFrame(data)
	if on := g.oneN.Load(); on != nil {
		if p.kind == kindError {
			g.errFrames.Add(1)
			g.noteError(string(p.code))
		}
		on.frame(p, now)
		return
	}
	rs := g.cur.Load()
	switch p.kind {
	case kindOther:
		if rr := g.resumeRn.Load(); rr != nil {
			rr.frame(s, p, now)
		}
		return
	case kindError:
		g.errFrames.Add(1)
		g.noteError(string(p.code))
		if rs != nil && p.valid && p.run == rs.id {
			rs.tracker.Failed(p.seq)
		} else if rr := g.resumeRn.Load(); rr != nil && p.valid && p.run == rr.id {
			rr.answer(p.seq, false)
		}
		return
	}
	if rs == nil {
		if rr := g.resumeRn.Load(); rr != nil {
			rr.frame(s, p, now)
			return
		}
		g.stale.Add(1)
		return
	}
	if !p.valid { // kindBad, or a delivery or ack whose send cannot be read
		rs.tracker.Unreadable()
		return
	}
	if p.run != rs.id {
		g.stale.Add(1)
		return
	}
	if !rs.tracker.Arrived(p.seq, p.kind, s.user, s.dev) {
		return
	}
	if p.kind == Ack {
		if rs.measured(p.seq) {
			rs.acks.Record(now.Sub(rs.schedAt(p.seq)))
		}
		return
	}
	rs.delivered.Add(1)
	if rs.measured(p.seq) {
		rs.lat.Record(time.Duration(now.UnixNano() - p.at))
	}
}

// runState is one load run.
type runState struct {
	id        int
	rate      float64
	start     time.Time
	warmSeqs  int // sends before the measured window
	endSeqs   int // sends scheduled in all
	tracker   *Tracker
	lat       Histogram // deliveries, from the scheduled send time
	acks      Histogram
	delivered atomic.Int64
}

func (rs *runState) measured(seq int) bool { return seq >= rs.warmSeqs && seq < rs.endSeqs }

func (rs *runState) schedAt(seq int) time.Time {
	return rs.start.Add(time.Duration(float64(seq) * float64(time.Second) / rs.rate))
}

var runIDs atomic.Int64

// Load runs the scenario at rate sends/s: warmup, then the measured window
// of length dur, then up to Config.Drain for the last frames to arrive.
func (g *Generator) Load(ctx context.Context, rate float64, warmup, dur time.Duration) Result {
	rs := &runState{id: int(runIDs.Add(1)), rate: rate}
	rs.warmSeqs = int(rate * warmup.Seconds())
	rs.endSeqs = rs.warmSeqs + int(rate*dur.Seconds())
	rs.tracker = NewTracker(rs.endSeqs, g.cfg.Devices)
	g.cur.Store(rs)
	lost0, sendErr0, over0, err0 := g.connsLost.Load(), g.sendErrors.Load(), g.overflow.Load(), g.errFrames.Load()

	groups := g.cfg.Processes.groups()
	var before, after []ProcStat
	var winStart, winEnd time.Time
	var del0, del1 int64
	var self0, self1 time.Duration
	var host0 HostCPU
	// The fan-out counters are read off the schedule's goroutine: a scrape
	// of every worker must not hold up the sends.
	fan0 := make(chan fanoutReading, 1)

	rs.start = time.Now()
	sent := 0
	rng := rand.New(rand.NewPCG(uint64(rs.id), uint64(rs.start.UnixNano())))
	for sent < rs.endSeqs && ctx.Err() == nil {
		due := min(int(time.Since(rs.start).Seconds()*rate)+1, rs.endSeqs)
		for ; sent < due; sent++ {
			if sent == rs.warmSeqs {
				winStart, del0, self0 = time.Now(), rs.delivered.Load(), selfCPU()
				before, host0 = sampleAll(groups), hostSample()
				if g.cfg.Fanout {
					go func() { fan0 <- g.readFanout() }()
				}
			}
			g.schedule(rs, rng, sent)
		}
		if sent < rs.endSeqs {
			time.Sleep(min(time.Until(rs.schedAt(sent)), 5*time.Millisecond))
		}
	}
	winEnd, del1, self1 = time.Now(), rs.delivered.Load(), selfCPU()
	after, host1 := sampleAll(groups), hostSample()
	var fanStats *FanoutStats
	if g.cfg.Fanout && !winStart.IsZero() {
		fanStats = fanoutStats(<-fan0, g.readFanout(), g.cfg.Log)
	}
	if winStart.IsZero() { // no warm-up
		winStart = rs.start
	}

	// Drain: wait for the last frames.
	drainEnd := time.Now().Add(g.cfg.Drain)
	for time.Now().Before(drainEnd) && !rs.tracker.Complete() && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	g.cur.Store(nil)
	g.waitFlushes() // every send of the run written or failed

	win := winEnd.Sub(winStart).Seconds()
	tally := rs.tracker.Tally()
	res := Result{
		Mode: "load", Users: g.cfg.Users, Devices: g.cfg.Devices, Rate: rate,
		Warmup: warmup.Seconds(), Duration: win, Conns: g.Open(),
		SendsPerSec:      float64(rs.endSeqs-rs.warmSeqs) / win,
		DeliveriesPerSec: float64(del1-del0) / win,
		Latency:          summarize(&rs.lat),
		AckLatency:       summarize(&rs.acks),
		Tally:            tally,
		ConnsLost:        g.connsLost.Load() - lost0,
		SendErrors:       g.sendErrors.Load() - sendErr0,
		ClientOverflow:   g.overflow.Load() - over0,
		ErrorFrames:      g.errFrames.Load() - err0,
		CPUPer1k:         map[string]float64{},
		LoadgenCPUPer1k:  perK(self1-self0, del1-del0),
		Host:             host1.Shares(host0),
	}
	fillCPU(&res, groups, before, after, del1-del0)
	res.Closes = g.closeCounts()
	res.ErrorCodes = g.errorCounts()
	res.Fanout = fanStats
	g.readRedis(&res)
	res.Pass = res.Latency.P99 < 50 && tally.Missing == 0 && tally.MissingAcks == 0 && tally.Duplicates == 0 &&
		tally.Misrouted == 0 && res.ErrorFrames == 0 && res.SendErrors == 0 && res.ClientOverflow == 0 &&
		res.ConnsLost == 0 && res.SendsPerSec >= 0.97*rate
	return res
}

// schedule writes send seq from a random device of a random user.
func (g *Generator) schedule(rs *runState, rng *rand.Rand, seq int) {
	user := rng.IntN(g.cfg.Users)
	dev := rng.IntN(g.cfg.Devices)
	s := g.socks[user*g.cfg.Devices+dev]
	if s == nil || s.dead.Load() {
		g.sendErrors.Add(1)
		return
	}
	rs.tracker.Sent(seq, user, dev)
	g.payload = appendSend(g.payload[:0], rs.id, seq, Partner(user), rs.schedAt(seq).UnixNano())
	g.frame = appendClientFrame(g.frame[:0], opText, g.payload, rand.Uint32())
	switch s.writeSend(g.frame, true, sentRef{rs.tracker, seq}) {
	case overflowed:
		rs.tracker.Unsent(seq)
		g.overflow.Add(1)
	case failed:
		rs.tracker.Unsent(seq)
		g.sendErrors.Add(1)
	}
}

// fillCPU sets res's CPU figures per 1,000 deliveries from two samples of
// groups, and the gateway's RSS from the second.
func fillCPU(res *Result, groups []Group, before, after []ProcStat, deliveries int64) {
	for i, gr := range groups {
		if gr.Pid <= 0 {
			continue
		}
		res.CPUPer1k[gr.Name] = perK(after[i].CPU-before[i].CPU, deliveries)
		if gr.Name == ProcGateway {
			res.GatewayRSS = after[i].RSS
		}
	}
	res.CPUTotalPer1k = TotalCPU(res.CPUPer1k)
}

// TotalCPU sums the CPU figures of ServerProcs in cpu, each process once.
func TotalCPU(cpu map[string]float64) float64 {
	var sum float64
	for _, p := range ServerProcs {
		sum += cpu[p]
	}
	return sum
}

func perK(cpu time.Duration, deliveries int64) float64 {
	if deliveries <= 0 {
		return 0
	}
	return cpu.Seconds() / float64(deliveries) * 1000
}

func sampleAll(groups []Group) []ProcStat {
	out := make([]ProcStat, len(groups))
	for i, g := range groups {
		out[i] = g.Sample()
	}
	return out
}

// Idle opens every socket, waits settle for the gateway to reach a steady
// state, and measures what the open sockets cost it.
func (g *Generator) Idle(ctx context.Context, settle time.Duration) (Result, error) {
	probe := StartIdleProbe(g.cfg.Processes.Gateway, g.cfg.Metrics)
	took, opened, err := g.Connect(ctx)
	res := Result{
		Mode: "idle", Users: g.cfg.Users, Devices: g.cfg.Devices,
		ConnectSeconds: took.Seconds(), Conns: opened,
	}
	if took > 0 {
		res.ConnectsPerSec = float64(opened) / took.Seconds()
	}
	res.DialLatency = summarize(&g.dials)
	res.DialRetries = g.dialFails.Load()
	if err != nil {
		return res, err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
	}
	res.Conns = g.Open()
	probe.Finish(&res)
	res.ConnsLost = g.connsLost.Load()
	return res, nil
}

// fanoutReading is a FanoutSample or why there is none.
type fanoutReading struct {
	s   FanoutSample
	err error
}

func (g *Generator) readFanout() fanoutReading {
	s, err := SampleFanout(g.cfg.RedisAddr, g.cfg.Metrics)
	return fanoutReading{s, err}
}

// fanoutStats is what happened between two readings, or nil (logged) when
// either failed.
func fanoutStats(a, b fanoutReading, logf func(string, ...any)) *FanoutStats {
	for _, r := range []fanoutReading{a, b} {
		if r.err != nil {
			logf("fan-out figures: %v", r.err)
			return nil
		}
	}
	st := FanoutDiff(a.s, b.s)
	return &st
}

// readRedis fills res's Redis memory figures, when Config.RedisAddr names
// a Redis; a failure is logged and leaves them out.
func (g *Generator) readRedis(res *Result) {
	if g.cfg.RedisAddr == "" {
		return
	}
	st, err := ReadRedis(g.cfg.RedisAddr)
	if err != nil {
		g.cfg.Log("%v", err)
		return
	}
	res.RedisUsedMemory, res.RedisKeys = st.UsedMemory, st.Keys
}

// selfCPU returns the CPU time of this process.
func selfCPU() time.Duration {
	st, err := ReadProc(pidSelf)
	if err != nil {
		return 0
	}
	return st.CPU
}

var pidSelf = os.Getpid()

// GOMAXPROCS reports the load generator's own parallelism, for the report.
func GOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
