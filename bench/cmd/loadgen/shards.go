package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/switchboard/switchboard/bench/loadgen"
)

// An idle test of more sockets than one process may hold (RLIMIT_NOFILE)
// runs in several processes: this one starts -procs copies of itself with
// -shard, each opening the sockets of a range of users and reporting on
// stdout; once all are connected it measures the gateway, holds, then
// closes their stdin, which makes them report again and close their sockets.

type shardPlan struct {
	exe     string
	users   int
	devices int
	procs   int
	url     string
	secret  string
	conc    int
	sources int
	settle  time.Duration
	hold    time.Duration
	gwPid   int
	metrics string
	logf    func(string, ...any)
}

// autoProcs returns how many processes hold conns sockets when one may
// have at most limit descriptors, keeping 1,024 for everything else.
func autoProcs(conns int, limit uint64) int {
	per := int(limit) - 1024
	if per < 1 {
		per = 1
	}
	return max(1, (conns+per-1)/per)
}

type shardProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

func (p *shardProc) report() (loadgen.ShardReport, error) {
	var rep loadgen.ShardReport
	if !p.lines.Scan() {
		err := p.lines.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return rep, fmt.Errorf("shard pid %d: no report: %w", p.cmd.Process.Pid, err)
	}
	if err := json.Unmarshal(p.lines.Bytes(), &rep); err != nil {
		return rep, fmt.Errorf("shard pid %d: %w", p.cmd.Process.Pid, err)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("shard users %d..%d: %s", rep.FirstUser, rep.FirstUser+rep.Users-1, rep.Err)
	}
	return rep, nil
}

// idleSharded runs the idle test over plan.procs processes.
func idleSharded(ctx context.Context, plan shardPlan) (loadgen.Result, error) {
	res := loadgen.Result{Mode: "idle", Devices: plan.devices}
	ranges, err := loadgen.SplitUsers(plan.users, plan.procs)
	if err != nil {
		return res, err
	}
	probe := loadgen.StartIdleProbe(plan.gwPid, plan.metrics)
	var procs []*shardProc
	defer func() { // on every path: no shard outlives this process
		for _, p := range procs {
			_ = p.stdin.Close()
		}
		for _, p := range procs {
			waitOrKill(p.cmd, 30*time.Second)
		}
	}()
	for _, r := range ranges {
		cmd := exec.Command(plan.exe, "-shard", "-mode", "idle",
			"-first-user", strconv.Itoa(r.First), "-users", strconv.Itoa(r.Count),
			"-devices", strconv.Itoa(plan.devices), "-url", plan.url,
			"-dial-concurrency", strconv.Itoa(plan.conc), "-sources", strconv.Itoa(plan.sources), "-q")
		cmd.Env = append(os.Environ(), "GATEWAY_JWT_SECRET="+plan.secret) // not on the command line
		cmd.Stderr = os.Stderr
		dieWithParent(cmd)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return res, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return res, err
		}
		if err := cmd.Start(); err != nil {
			return res, err
		}
		lines := bufio.NewScanner(stdout)
		lines.Buffer(make([]byte, 0, 64<<10), 8<<20) // a report carries a histogram
		procs = append(procs, &shardProc{cmd: cmd, stdin: stdin, lines: lines})
	}
	plan.logf("%d processes opening %d sockets", len(procs), plan.users*plan.devices)

	reps, err := collect(ctx, procs)
	loadgen.MergeShards(&res, reps)
	if err != nil {
		return res, err
	}
	plan.logf("opened %d sockets in %.2f s; settling %s", res.Conns, res.ConnectSeconds, plan.settle)
	select {
	case <-time.After(plan.settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	probe.Finish(&res)
	if plan.hold > 0 {
		plan.logf("holding %d sockets for %s", res.Conns, plan.hold)
		select {
		case <-time.After(plan.hold):
		case <-ctx.Done():
		}
	}
	// Closing stdin asks each shard for its final report; it then closes
	// its sockets and exits.
	for _, p := range procs {
		_ = p.stdin.Close()
	}
	finals, ferr := collect(ctx, procs)
	res.ConnsLost = 0
	for _, f := range finals {
		res.ConnsLost += f.ConnsLost
	}
	return res, ferr
}

// collect reads one report from every shard, concurrently.
func collect(ctx context.Context, procs []*shardProc) ([]loadgen.ShardReport, error) {
	type got struct {
		rep loadgen.ShardReport
		err error
	}
	ch := make(chan got, len(procs))
	for _, p := range procs {
		go func() {
			rep, err := p.report()
			ch <- got{rep, err}
		}()
	}
	var reps []loadgen.ShardReport
	var errs []error
	for range procs {
		select {
		case g := <-ch:
			reps = append(reps, g.rep)
			if g.err != nil {
				errs = append(errs, g.err)
			}
		case <-ctx.Done():
			return reps, ctx.Err()
		}
	}
	return reps, errors.Join(errs...)
}

func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// runShard is the child side: open the sockets, report, hold until stdin
// closes (or a signal), report again, close.
func runShard(ctx context.Context, g *loadgen.Generator, stdout io.Writer) error {
	rep := g.ConnectShard(ctx)
	if err := writeJSONLine(stdout, rep); err != nil {
		return err
	}
	if rep.Err != "" {
		return errors.New(rep.Err)
	}
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	return writeJSONLine(stdout, g.FinalShard())
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
