// Command loadgen drives a running switchboard with the scenario of the
// performance issue and reports what it measured: a table for people, then
// one JSON line per phase.
//
//	loadgen -mode idle -users 5000 -devices 2              # hold 10,000 sockets, measure RSS and connect time
//	loadgen -mode load -users 1000 -devices 2 -rates 1000,4000,8000 -search
//	loadgen -mode idle -users 50000 -procs 6             # 100,000 sockets held by 6 processes
//	loadgen table results.jsonl                            # JSON lines -> Markdown tables
//	loadgen -mode calibrate                                # how fast this host is, before a run
//
// It raises its own RLIMIT_NOFILE as far as the hard limit allows; an idle
// test that needs more descriptors than that runs in several processes
// (-procs), started by this one, which sums what they report.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/bench/loadgen"
)

// devSecret is the gateway's JWT secret in dev mode (GATEWAY_DEV=1 without
// GATEWAY_JWT_SECRET), the one `make run` and bench/run.sh start it with.
// A copy of the gateway's constant: this module imports nothing of the
// gateway's.
const devSecret = "switchboard-dev-secret-do-not-use-in-production"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "table" {
		return table(args[1:], stdout)
	}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var (
		url      = fs.String("url", "ws://127.0.0.1:7999/socket", "gateway WebSocket URL (127.0.0.1 only)")
		secret   = fs.String("secret", envOr("GATEWAY_JWT_SECRET", devSecret), "JWT secret")
		mode     = fs.String("mode", "load", "idle (open U*D sockets and hold them), load, resume (devices drop, miss events, resume), fan1n, or calibrate (time a CPU workload and loopback TCP on this host, no gateway)")
		users    = fs.Int("users", 1000, "U: users, in pairs")
		devices  = fs.Int("devices", 2, "D: sockets per user")
		rates    = fs.String("rates", "1000", "R: total sends/s, comma-separated for several runs on the same sockets")
		dur      = fs.Duration("duration", 20*time.Second, "measured time of each load run")
		warmup   = fs.Duration("warmup", 5*time.Second, "unmeasured sending before each load run")
		drain    = fs.Duration("drain", 5*time.Second, "how long to wait for the last frames of a run")
		hold     = fs.Duration("hold", 0, "idle: how long to hold the sockets after measuring")
		settle   = fs.Duration("settle", 3*time.Second, "idle: wait after connecting before measuring RSS")
		workers  = fs.Int("workers", 2, "spread each user's sockets over this many workers (load mode; 0 = no)")
		conc     = fs.Int("dial-concurrency", 64, "dials in flight at once")
		sources  = fs.Int("sources", 0, "127.0.0.x source addresses, so ports in TIME_WAIT from earlier runs do not run out (0 = 8, or one per 10,000 sockets beyond)")
		search   = fs.Bool("search", false, "after the rates, search for the highest R with p99 < 50 ms and nothing missing")
		smax     = fs.Float64("search-max", 40000, "highest R the search tries")
		sdur     = fs.Duration("search-duration", 10*time.Second, "measured time of each search run")
		swarm    = fs.Duration("search-warmup", 3*time.Second, "warm-up of each search run")
		gwPid    = fs.Int("gateway-pid", 0, "pid of the gateway supervisor (its workers are its children)")
		hsPid    = fs.Int("handlers-pid", 0, "pid of handlers-svc")
		natsPid  = fs.Int("nats-pid", 0, "pid of nats-server")
		redisPid = fs.Int("redis-pid", 0, "pid of redis-server")
		redisAdr = fs.String("redis-addr", "", "the stack's Redis (127.0.0.1:port): report its used memory and keys after each run")
		metrics  = fs.String("metrics", os.Getenv("GATEWAY_METRICS_URL"), "the gateway's Prometheus /metrics URL, for goroutines per socket")
		jsonOut  = fs.String("json", "", "also append each phase's JSON line to this file")
		quiet    = fs.Bool("q", false, "no progress lines on stderr")
		nprocs   = fs.Int("procs", 0, "idle: hold the sockets in this many processes, for a file limit below U*D (0 = as many as the hard limit needs)")
		shard    = fs.Bool("shard", false, "internal: be one of -procs processes (report on stdout, hold until stdin closes)")
		first    = fs.Int("first-user", 0, "internal, with -shard: the first user's number")
		cpuprof  = fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file")
		maxprocs = fs.Int("gomaxprocs", 0, "the load generator's own GOMAXPROCS (0 = 1 in load mode unless $GOMAXPROCS is set, else Go's default)")
		missed   = fs.Int("missed", 100, "resume: events each away user misses (at most the gateway's GATEWAY_MAX_REPLAY)")
		rounds   = fs.Int("rounds", 1, "resume: rounds, each sending half the users' devices away")
		rrate    = fs.Float64("resume-rate", 100, "resume: reconnects started per second")
		rconc    = fs.Int("resume-senders", 64, "resume: partners sending the missed events at once")
		rwait    = fs.Duration("resume-timeout", 10*time.Second, "resume: how long a round waits for its replays after its last reconnect")
		stack    = fs.String("stack", "", "name the stack measured in every JSON line (candidate, baseline, ...), for A/B reports")
		ref      = fs.String("ref", "", "the commit the measured stack was built from, for A/B reports")
		members  = fs.Int("room-members", 1000, "fan1n: the room's members, the first users")
		roomRts  = fs.String("room-rates", "100,150", "fan1n: dispatches/s to the room, comma-separated for several phases (\"\" = none)")
		bcastRts = fs.String("broadcast-rates", "10,15", "fan1n: broadcasts/s, comma-separated for several phases (\"\" = none)")
		dispURL  = fs.String("dispatch-url", "", "fan1n: handlers-svc's dispatch API, http://127.0.0.1:port/v1/dispatch")
		apiKey   = fs.String("api-key", os.Getenv("HANDLERS_API_KEY"), "fan1n: HANDLERS_API_KEY")
		fanout   = fs.Bool("fanout", false, "load: also read what each run cost the fan-out (Redis bytes and publishes, dispatches the workers read with no local recipient); needs -redis-addr and -metrics")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *maxprocs == 0 && (*mode == "load" || *mode == "resume" || *mode == "fan1n") && os.Getenv("GOMAXPROCS") == "" {
		// One thread is plenty (a third of a core at R=12,000), and with a
		// second P every goroutine woken by the poller woke another thread
		// to look for work too: a futex wake and a context switch per event.
		*maxprocs = 1
	}
	if *maxprocs > 0 {
		runtime.GOMAXPROCS(*maxprocs)
	}
	if *cpuprof != "" {
		stop, err := startCPUProfile(*cpuprof)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *mode == "calibrate" {
		// Before anything else: no sockets to the gateway, no file limit.
		c, err := loadgen.Calibrate(ctx, loadgen.CalibrateOptions{})
		if err != nil {
			return fmt.Errorf("calibrate: %w", err)
		}
		return appendLine(stdout, *jsonOut, c.JSON())
	}
	if !strings.HasPrefix(*url, "ws://127.0.0.1:") && !strings.HasPrefix(*url, "ws://localhost:") {
		return errors.New("-url must be on 127.0.0.1: load goes to this machine only")
	}
	var rs []float64
	for _, s := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("-rates: bad rate %q", s)
		}
		rs = append(rs, r)
	}
	logf := func(format string, a ...any) {
		if !*quiet {
			fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
		}
	}
	want := uint64(*users**devices + 1024)
	gotFiles, ferr := raiseNoFile(want)
	if *mode == "idle" && !*shard && *nprocs == 0 {
		if gotFiles < want {
			*nprocs = autoProcs(*users**devices, hardNoFile())
		} else {
			*nprocs = 1
		}
	}
	if *nprocs > 1 && !*shard {
		if *mode != "idle" {
			return errors.New("-procs: only the idle mode runs in several processes")
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		srcs := *sources
		if srcs < 1 { // what one process would pick for all the sockets
			srcs = max(8, *users**devices/10000+1)
		}
		res, err := idleSharded(ctx, shardPlan{
			exe: exe, users: *users, devices: *devices, procs: *nprocs, url: *url, secret: *secret,
			conc: *conc, sources: srcs, settle: *settle, hold: *hold, gwPid: *gwPid, metrics: *metrics,
			logf: logf,
		})
		if err != nil {
			if res.Conns > 0 {
				res.WriteTable(os.Stderr)
			}
			return fmt.Errorf("idle in %d processes: %w", *nprocs, err)
		}
		res.Stack, res.Ref = *stack, *ref
		return emitLine(stdout, *jsonOut, res)
	}
	if gotFiles < want {
		logf("RLIMIT_NOFILE is %d, %d wanted (%v): sockets beyond it will fail", gotFiles, want, ferr)
	}
	cfg := loadgen.Config{
		URL: *url, Secret: *secret, Users: *users, FirstUser: *first, Devices: *devices,
		DialConc: *conc, Sources: *sources, Drain: *drain, Metrics: *metrics, RedisAddr: *redisAdr,
		Processes: loadgen.Processes{Gateway: *gwPid, Handlers: *hsPid, NATS: *natsPid, Redis: *redisPid},
		Log:       logf,
	}
	switch *mode {
	case "load":
		cfg.Workers = *workers
		cfg.Fanout = *fanout
	case "resume":
		cfg.Workers = *workers
		cfg.KeepPositions = true
	}
	g, err := loadgen.New(cfg)
	if err != nil {
		return err
	}
	defer g.Close()

	emit := func(r loadgen.Result) error {
		r.Stack, r.Ref = *stack, *ref
		return emitLine(stdout, *jsonOut, r)
	}
	if *shard {
		return runShard(ctx, g, stdout)
	}

	switch *mode {
	case "idle":
		logf("opening %d sockets", *users**devices)
		res, err := g.Idle(ctx, *settle)
		if err != nil {
			return fmt.Errorf("idle after %d sockets: %w", res.Conns, err)
		}
		if err := emit(res); err != nil {
			return err
		}
		if *hold > 0 {
			logf("holding %d sockets for %s", res.Conns, *hold)
			select {
			case <-time.After(*hold):
			case <-ctx.Done():
			}
		}
		return nil
	case "resume":
		logf("resume: %d users x %d devices, %d missed each, %d rounds, %g reconnects/s", *users, *devices, *missed, *rounds, *rrate)
		res, err := g.Resume(ctx, loadgen.ResumeOptions{Missed: *missed, Rounds: *rounds, Rate: *rrate, SendConc: *rconc, Timeout: *rwait})
		if err != nil {
			return err
		}
		return emit(res)
	case "fan1n":
		return oneToMany(ctx, g, oneToManyPlan{
			members: *members, roomRates: *roomRts, bcastRates: *bcastRts, url: *dispURL, key: *apiKey,
			warmup: *warmup, dur: *dur, logf: logf, emit: emit,
		})
	case "load":
	default:
		return fmt.Errorf("-mode must be idle, load, resume, fan1n or calibrate, got %q", *mode)
	}

	connect := func() error {
		took, n, err := g.Connect(ctx)
		if n > 0 {
			logf("opened %d sockets in %s", n, took.Round(time.Millisecond))
		}
		return err
	}
	if err := connect(); err != nil {
		return err
	}
	run := func(r float64, warm, d time.Duration) (loadgen.Result, error) {
		if err := connect(); err != nil { // reopen sockets a previous run lost
			return loadgen.Result{}, err
		}
		logf("R=%.0f: %s warm-up, %s measured", r, warm, d)
		res := g.Load(ctx, r, warm, d)
		if err := emit(res); err != nil {
			return res, err
		}
		time.Sleep(time.Second) // let the last run's stragglers settle
		return res, ctx.Err()
	}
	best, worst := 0.0, 0.0 // highest passing, lowest failing
	for _, r := range rs {
		res, err := run(r, *warmup, *dur)
		if err != nil {
			return err
		}
		best, worst = track(res, best, worst)
	}
	if !*search {
		return nil
	}
	// Grow by half until a run fails, then bisect to within 5%.
	for steps := 0; steps < 12 && ctx.Err() == nil; steps++ {
		var r float64
		if worst == 0 {
			if best >= *smax {
				break
			}
			r = 1000
			if best > 0 {
				r = min(best*1.5, *smax)
			}
		} else {
			if worst-best <= 0.05*worst {
				break
			}
			r = (best + worst) / 2
		}
		r = float64(int(r/100+0.5) * 100)
		if r <= best || (worst > 0 && r >= worst) {
			break
		}
		res, err := run(r, *swarm, *sdur)
		if err != nil {
			return err
		}
		best, worst = track(res, best, worst)
	}
	fmt.Fprintf(stdout, "saturation: highest R with p99 < 50 ms and nothing missing: %.0f sends/s (lowest failing: %.0f)\n", best, worst)
	sat := map[string]any{"mode": "saturation", "users": *users, "devices": *devices,
		"rate": best, "deliveries_per_s": best * 2 * float64(*devices), "lowest_failing_rate": worst}
	if *stack != "" {
		sat["stack"], sat["ref"] = *stack, *ref
	}
	line, _ := json.Marshal(sat)
	fmt.Fprintln(stdout, string(line))
	if *jsonOut != "" {
		f, err := os.OpenFile(*jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = fmt.Fprintln(f, string(line))
		return err
	}
	return nil
}

// emitLine writes r as a table and a JSON line, and appends the line to
// jsonOut when set.
func emitLine(stdout io.Writer, jsonOut string, r loadgen.Result) error {
	r.WriteTable(stdout)
	return appendLine(stdout, jsonOut, r.JSON())
}

// appendLine writes a JSON line to stdout, and appends it to jsonOut when
// set.
func appendLine(stdout io.Writer, jsonOut, line string) error {
	fmt.Fprintln(stdout, line)
	if jsonOut == "" {
		return nil
	}
	f, err := os.OpenFile(jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, line)
	return err
}

func track(res loadgen.Result, best, worst float64) (float64, float64) {
	if res.Pass {
		return max(best, res.Rate), worst
	}
	if worst == 0 || res.Rate < worst {
		worst = res.Rate
	}
	return best, worst
}

// table turns JSON lines (files, or stdin) into Markdown: the tables of
// each mode, or, when the lines name more than one stack (an A/B run), the
// stacks side by side.
func table(files []string, stdout io.Writer) error {
	var results []loadgen.Result
	var sats []loadgen.Saturation
	read := func(r io.Reader) error {
		res, sat, err := readLines(r)
		results = append(results, res...)
		sats = append(sats, sat...)
		return err
	}
	if len(files) == 0 {
		if err := read(os.Stdin); err != nil {
			return err
		}
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		err = read(fh)
		fh.Close()
		if err != nil {
			return err
		}
	}
	fan := slices.ContainsFunc(results, func(r loadgen.Result) bool { return r.Fanout != nil })
	oneN := slices.ContainsFunc(results, func(r loadgen.Result) bool { return r.Mode == "fan1n" })
	if fan || oneN {
		if fan {
			loadgen.FanoutMarkdown(stdout, results, sats)
		}
		if oneN {
			fmt.Fprintln(stdout, "\n1→N: one dispatch to a room, or a broadcast, through the dispatch API:")
			fmt.Fprintln(stdout)
			loadgen.OneToManyMarkdown(stdout, results)
		}
		return nil
	}
	if len(loadgen.Stacks(results, sats)) > 1 {
		var idle []loadgen.Result
		for _, r := range results {
			if r.Mode == "idle" {
				idle = append(idle, r)
			}
		}
		loadgen.Compare(stdout, results, sats)
		if len(idle) > 0 {
			fmt.Fprintln(stdout, "\nIdle tests, one per stack:")
			fmt.Fprintln(stdout)
			loadgen.Markdown(stdout, idle)
		}
		return nil
	}
	loadgen.Markdown(stdout, results)
	for _, m := range sats {
		fmt.Fprintf(stdout, "\n**Saturation** (U=%d, D=%d): highest R with p99 < 50 ms and nothing missing = **%.0f sends/s** (%.0f deliveries/s); lowest failing R tried: %.0f.\n",
			m.Users, m.Devices, m.Rate, m.Deliveries, m.LowestFailing)
	}
	return nil
}

// readLines reads loadgen's JSON lines: results, and saturation verdicts.
// Lines that are not JSON objects are skipped, and so is a calibration,
// which describes the host, not a phase (the report's header has it).
func readLines(r io.Reader) ([]loadgen.Result, []loadgen.Saturation, error) {
	var results []loadgen.Result
	var sats []loadgen.Saturation
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var probe struct{ Mode string }
		if err := json.Unmarshal(line, &probe); err != nil {
			return results, sats, err
		}
		if probe.Mode == "calibrate" {
			continue
		}
		if probe.Mode == "saturation" {
			var sat loadgen.Saturation
			if err := json.Unmarshal(line, &sat); err != nil {
				return results, sats, err
			}
			sats = append(sats, sat)
			continue
		}
		var res loadgen.Result
		if err := json.Unmarshal(line, &res); err != nil {
			return results, sats, err
		}
		results = append(results, res)
	}
	return results, sats, s.Err()
}

// startCPUProfile profiles this process into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// hardNoFile returns the hard RLIMIT_NOFILE.
func hardNoFile() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return rl.Max
}

// raiseNoFile raises the soft RLIMIT_NOFILE toward want, capped at the hard
// limit, and returns the soft limit in force.
func raiseNoFile(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur >= want {
		return rl.Cur, nil
	}
	if want > rl.Max {
		// Root may raise the hard limit too, where the sandbox allows it.
		try := rl
		try.Max, try.Cur = want, want
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
			return want, nil
		}
	}
	rl.Cur = min(want, rl.Max)
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur, err
}
