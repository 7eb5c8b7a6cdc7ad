package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The 1→N scenario (make bench-fanout, issue 15): one dispatch reaches many
// sockets. Its dispatches go through handlers-svc's dispatch API (POST
// /v1/dispatch), each to a room of RoomMembers users or to everyone, with
// event OneToManyEvent and the scheduled send time in args.text
// ("r<run>s<seq>t<unix ns>", as the load scenario's); every socket that
// should have it counts its arrival, and its latency from the scheduled
// time.

// OneToManyEvent is the event the 1→N dispatches carry.
const OneToManyEvent = "fanout_1n"

// OneToManyRoom is the room the 1→N scenario fills.
const OneToManyRoom = "bench-1n"

// OneToManyOptions is one 1→N phase.
type OneToManyOptions struct {
	DispatchURL string // handlers-svc's POST /v1/dispatch
	APIKey      string // HANDLERS_API_KEY
	Broadcast   bool   // to everyone; else to the room
	Rate        float64
	Warmup      time.Duration
	Duration    time.Duration
	Senders     int // requests in flight at once
}

// oneToManyRun is one 1→N phase under way: what the sockets' readers
// count into.
type oneToManyRun struct {
	id       int
	warmSeqs int
	endSeqs  int
	arrived  []atomic.Int32 // per seq
	lat      Histogram
	total    atomic.Int64   // arrivals of this run
	joins    []atomic.Int32 // per member, the state of its joinRoom (the room's set-up)
}

func (r *oneToManyRun) frame(p parsed, now time.Time) {
	switch p.kind {
	case Ack, kindError:
		if p.valid && p.run == r.id && p.seq >= 0 && p.seq < len(r.joins) {
			state := joinDone
			if p.kind == kindError {
				state = joinRefused
			}
			r.joins[p.seq].CompareAndSwap(joinPending, state)
		}
	case kindFan:
		if !p.valid || p.run != r.id || p.seq < 0 || p.seq >= len(r.arrived) {
			return
		}
		r.arrived[p.seq].Add(1)
		r.total.Add(1)
		if p.seq >= r.warmSeqs {
			r.lat.Record(time.Duration(now.UnixNano() - p.at))
		}
	}
}

// JoinRoom has the first members users' first socket join OneToManyRoom,
// joinBatch at a time, each batch after the last one's answers, and joins
// again, after a pause, those that were refused (a worker sheds requests
// while its fan-out is behind: every join is told to every member already
// in, with room_joined). It gives up after timeout. Set-up, not measured.
func (g *Generator) JoinRoom(ctx context.Context, members int, timeout time.Duration) error {
	if members > g.cfg.Users {
		return fmt.Errorf("room of %d members: only %d users", members, g.cfg.Users)
	}
	run := &oneToManyRun{id: int(runIDs.Add(1)), joins: make([]atomic.Int32, members)}
	g.oneN.Store(run)
	defer g.oneN.Store(nil)
	deadline := time.Now().Add(timeout)
	var payload, frame []byte
	todo := make([]int, members)
	for u := range todo {
		todo[u] = u
	}
	for len(todo) > 0 {
		var refused []int
		for len(todo) > 0 {
			batch := todo[:min(joinBatch, len(todo))]
			todo = todo[len(batch):]
			for _, u := range batch {
				s := g.socks[u*g.cfg.Devices]
				if s == nil || s.dead.Load() {
					return fmt.Errorf("u%d has no socket", u)
				}
				run.joins[u].Store(joinPending)
				payload = fmt.Appendf(payload[:0], `{"event":"joinRoom","args":{"room":%q},"ref":"%d.%d"}`, OneToManyRoom, run.id, u)
				frame = appendClientFrame(frame[:0], opText, payload, uint32(u))
				if s.write(frame, false) == failed {
					return fmt.Errorf("u%d: joinRoom not written", u)
				}
			}
			for _, u := range batch {
				for run.joins[u].Load() == joinPending {
					if time.Now().After(deadline) || ctx.Err() != nil {
						return fmt.Errorf("joinRoom: no answer for u%d in %s", u, timeout)
					}
					time.Sleep(5 * time.Millisecond)
				}
				if run.joins[u].Load() == joinRefused {
					refused = append(refused, u)
				}
			}
		}
		if len(refused) > 0 {
			g.cfg.Log("joinRoom: %d refused, joining them again", len(refused))
			time.Sleep(200 * time.Millisecond)
		}
		todo = refused
	}
	g.errorCounts() // the refusals are the set-up's, not the first phase's
	return nil
}

// joinBatch is how many joinRoom requests JoinRoom has in flight.
const joinBatch = 20

// The states of one member's join (oneToManyRun.joins).
const (
	joinPending int32 = iota + 1
	joinDone
	joinRefused
)

// OneToMany runs one 1→N phase: dispatches at opt.Rate a second through
// the dispatch API, to the room (members users with all their sockets) or
// to everyone, warm-up first; then waits up to Config.Drain for the last
// arrivals.
func (g *Generator) OneToMany(ctx context.Context, members int, opt OneToManyOptions) Result {
	want := members * g.cfg.Devices
	target := fmt.Sprintf(`"rooms":[%q]`, OneToManyRoom)
	if opt.Broadcast {
		want = g.Open()
		target = `"broadcast":true`
	}
	run := &oneToManyRun{id: int(runIDs.Add(1))}
	run.warmSeqs = int(opt.Rate * opt.Warmup.Seconds())
	run.endSeqs = run.warmSeqs + int(opt.Rate*opt.Duration.Seconds())
	run.arrived = make([]atomic.Int32, run.endSeqs)
	g.oneN.Store(run)
	lost0, err0 := g.connsLost.Load(), g.errFrames.Load()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: opt.Senders}}
	defer client.CloseIdleConnections()
	jobs := make(chan []byte, run.endSeqs)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range max(opt.Senders, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range jobs {
				if err := postDispatch(client, opt.DispatchURL, opt.APIKey, body); err != nil {
					if failed.Add(1) == 1 {
						g.cfg.Log("dispatch API: %v", err)
					}
				}
			}
		}()
	}

	groups := g.cfg.Processes.groups()
	var before, after []ProcStat
	var winStart time.Time
	var del0 int64
	var self0 time.Duration
	var host0 HostCPU
	start := time.Now()
	at := func(seq int) time.Time {
		return start.Add(time.Duration(float64(seq) * float64(time.Second) / opt.Rate))
	}
	sent := 0
	for sent < run.endSeqs && ctx.Err() == nil {
		due := min(int(time.Since(start).Seconds()*opt.Rate)+1, run.endSeqs)
		for ; sent < due; sent++ {
			if sent == run.warmSeqs {
				winStart, del0, self0 = time.Now(), run.total.Load(), selfCPU()
				before, host0 = sampleAll(groups), hostSample()
			}
			jobs <- fmt.Appendf(nil, `{"event":%q,"args":{"text":"r%ds%dt%d"},%s}`,
				OneToManyEvent, run.id, sent, at(sent).UnixNano(), target)
		}
		if sent < run.endSeqs {
			time.Sleep(min(time.Until(at(sent)), 5*time.Millisecond))
		}
	}
	winEnd, del1, self1 := time.Now(), run.total.Load(), selfCPU()
	after, host1 := sampleAll(groups), hostSample()
	close(jobs)
	wg.Wait()
	if winStart.IsZero() {
		winStart = start
	}
	drainEnd := time.Now().Add(g.cfg.Drain)
	for time.Now().Before(drainEnd) && run.total.Load() < int64(run.endSeqs*want) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	g.oneN.Store(nil)

	win := winEnd.Sub(winStart).Seconds()
	var missing, dups int64
	for i := run.warmSeqs; i < run.endSeqs; i++ {
		n := int64(run.arrived[i].Load())
		missing += max(int64(want)-n, 0)
		dups += max(n-int64(want), 0)
	}
	res := Result{
		Mode: "fan1n", Users: g.cfg.Users, Devices: g.cfg.Devices, Rate: opt.Rate,
		Warmup: opt.Warmup.Seconds(), Duration: win, Conns: g.Open(),
		Target: "room", Recipients: want,
		SendsPerSec:      float64(run.endSeqs-run.warmSeqs) / win,
		DeliveriesPerSec: float64(del1-del0) / win,
		Latency:          summarize(&run.lat),
		ConnsLost:        g.connsLost.Load() - lost0,
		SendErrors:       failed.Load(),
		ErrorFrames:      g.errFrames.Load() - err0,
		CPUPer1k:         map[string]float64{},
		LoadgenCPUPer1k:  perK(self1-self0, del1-del0),
		Host:             host1.Shares(host0),
	}
	if opt.Broadcast {
		res.Target = "broadcast"
	}
	res.Sends = int64(run.endSeqs - run.warmSeqs)
	res.Deliveries = res.Sends*int64(want) - missing + dups
	res.Missing, res.Duplicates = missing, dups
	fillCPU(&res, groups, before, after, del1-del0)
	res.ErrorCodes = g.errorCounts()
	res.Pass = res.Latency.P99 <= 50 && missing == 0 && dups == 0 && res.SendErrors == 0 &&
		res.ErrorFrames == 0 && res.ConnsLost == 0 && res.SendsPerSec >= 0.97*opt.Rate
	return res
}

// postDispatch POSTs body to the dispatch API and wants 200.
func postDispatch(c *http.Client, url, key string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
