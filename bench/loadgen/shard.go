package loadgen

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

// An idle test bigger than one process's file limit is split over several
// load generator processes ("shards"), each holding the sockets of a range
// of users; cmd/loadgen starts them, collects a ShardReport from each, and
// measures the gateway once all of them are connected.

// UserRange is the users [First, First+Count) of one shard.
type UserRange struct{ First, Count int }

// SplitUsers divides users (even) into k ranges as equal as pairs allow:
// each range holds whole pairs, so every shard is itself a valid scenario,
// and no range is empty.
func SplitUsers(users, k int) ([]UserRange, error) {
	if users < 2 || users%2 != 0 {
		return nil, fmt.Errorf("users must be even and at least 2, got %d", users)
	}
	pairs := users / 2
	if k < 1 || k > pairs {
		return nil, fmt.Errorf("cannot split %d users (%d pairs) over %d processes", users, pairs, k)
	}
	out := make([]UserRange, 0, k)
	first := 0
	for i := range k {
		n := pairs / k
		if i < pairs%k {
			n++
		}
		out = append(out, UserRange{First: first, Count: 2 * n})
		first += 2 * n
	}
	return out, nil
}

// ShardReport is what one shard tells the process that started it, as one
// JSON line: once connected, and again (Final) just before it closes its
// sockets.
type ShardReport struct {
	FirstUser   int          `json:"first_user"`
	Users       int          `json:"users"`
	Conns       int          `json:"conns"`    // sockets open
	Start       int64        `json:"start_ns"` // connecting began, Unix ns
	End         int64        `json:"end_ns"`   // every socket connected, Unix ns
	Dials       HistSnapshot `json:"dials"`    // per socket: dial to connected frame
	DialRetries int64        `json:"dial_retries"`
	ConnsLost   int64        `json:"conns_lost"` // sockets the server closed
	RSS         int64        `json:"rss_bytes"`  // the shard's own RSS
	Final       bool         `json:"final,omitempty"`
	Err         string       `json:"error,omitempty"`
}

// ConnectShard opens the generator's sockets and reports on them.
func (g *Generator) ConnectShard(ctx context.Context) ShardReport {
	rep := ShardReport{FirstUser: g.cfg.FirstUser, Users: g.cfg.Users, Start: time.Now().UnixNano()}
	_, _, err := g.Connect(ctx)
	rep.End = time.Now().UnixNano()
	if err != nil {
		rep.Err = err.Error()
	}
	g.fillShard(&rep)
	return rep
}

// FinalShard reports the sockets still open, and those lost, since ConnectShard.
func (g *Generator) FinalShard() ShardReport {
	rep := ShardReport{FirstUser: g.cfg.FirstUser, Users: g.cfg.Users, Final: true}
	g.fillShard(&rep)
	return rep
}

func (g *Generator) fillShard(rep *ShardReport) {
	rep.Conns = g.Open()
	rep.Dials = g.dials.Snapshot()
	rep.DialRetries = g.dialFails.Load()
	rep.ConnsLost = g.connsLost.Load()
	if st, err := ReadProc(pidSelf); err == nil {
		rep.RSS = st.RSS
	}
}

// MergeShards fills the client side of an idle Result from the shards'
// connect reports: sockets and retries summed, one dial-latency histogram,
// and the connect time from the first shard's start to the last one's end
// (the shards dial at the same time).
func MergeShards(res *Result, reps []ShardReport) {
	var dials Histogram
	var start, end int64
	for i, r := range reps {
		res.Users += r.Users
		res.Conns += r.Conns
		res.DialRetries += r.DialRetries
		res.ConnsLost += r.ConnsLost
		res.LoadgenRSS += r.RSS
		dials.Merge(r.Dials)
		if i == 0 || r.Start < start {
			start = r.Start
		}
		end = max(end, r.End)
	}
	res.Shards = len(reps)
	res.DialLatency = summarize(&dials)
	if end > start {
		res.ConnectSeconds = time.Duration(end - start).Seconds()
		res.ConnectsPerSec = float64(res.Conns) / res.ConnectSeconds
	}
}

// IdleProbe measures what a set of idle sockets costs the gateway: RSS of
// the supervisor and every worker, goroutines and sockets from /metrics,
// before the sockets open and once they are held.
type IdleProbe struct {
	gw      Group
	metrics string
	before  ProcStat
	gor0    int
}

// StartIdleProbe takes the "before" sample; gatewayPid 0 or metrics ""
// leave those figures out.
func StartIdleProbe(gatewayPid int, metrics string) *IdleProbe {
	p := &IdleProbe{gw: Group{Name: "gateway", Pid: gatewayPid, WithKids: true}, metrics: metrics}
	p.before = p.gw.Sample()
	p.gor0, _ = scrapeMetrics(metrics)
	return p
}

// Finish takes the "after" sample and fills the server side of res, whose
// Conns must be the sockets held.
func (p *IdleProbe) Finish(res *Result) {
	after := p.gw.Sample()
	res.GatewayRSS = after.RSS
	res.GatewayRSSBase = p.before.RSS
	if res.Conns > 0 && p.gw.Pid > 0 {
		res.RSSPerConn = float64(after.RSS-p.before.RSS) / float64(res.Conns)
		res.RSSTotalPerConn = float64(after.RSS) / float64(res.Conns)
	}
	for _, pid := range p.gw.Pids() {
		st, err := ReadProc(pid)
		if err != nil {
			continue
		}
		res.GatewayProcs = append(res.GatewayProcs, ProcInfo{Pid: pid, RSS: st.RSS, FDs: CountFDs(pid)})
	}
	if gor1, open := scrapeMetrics(p.metrics); gor1 >= 0 && res.Conns > 0 {
		res.Goroutines = gor1
		res.GoroutinesPerConn = float64(gor1-max(p.gor0, 0)) / float64(res.Conns)
		res.ServerConns = open
	} else {
		res.Goroutines, res.GoroutinesPerConn, res.ServerConns = -1, -1, -1
	}
}

// ProcInfo is one gateway process while the idle sockets are held.
type ProcInfo struct {
	Pid int   `json:"pid"`
	RSS int64 `json:"rss_bytes"`
	FDs int   `json:"fds"` // open file descriptors, -1 if unreadable
}

// CountFDs returns how many file descriptors pid has open, or -1.
func CountFDs(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
