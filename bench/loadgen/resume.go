package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/proto"
)

// The resume scenario (issue 11, docs/protocol.md section 6): how long a
// device that was away takes to get what it missed, and whether it gets
// exactly that.
//
// Each round sends every device of half the users away (the even users in
// even rounds, the odd ones in odd rounds): the load generator closes their
// sockets without a close frame, as a dropped network would. Each away
// user's partner then sends it Missed messages, one at a time, each after
// the previous one's ack, so its stream holds them in the order they were
// sent. Then every away device reconnects with ?resume=<the position of the
// last event it handled>, Rate reconnects per second, and the time from its
// dial to the arrival of its last missed event is recorded. Every resume
// must say recovered:true, missed = the messages acked, and its own
// position, and be followed by exactly those messages, in order, at
// consecutive offsets; anything else is counted.

// ResumeOptions is the shape of a resume run.
type ResumeOptions struct {
	Missed   int           // messages sent to each away user while away; at most the gateway's GATEWAY_MAX_REPLAY
	Rounds   int           // rounds, each sending half the users away
	Rate     float64       // reconnects started per second
	SendConc int           // partners sending at once (0 = 64)
	Timeout  time.Duration // how long after its last reconnect a round waits for replays (0 = 10 s)
}

// ResumeGoal is issue 11's bound on the resume p99 with up to 100 missed
// events.
const ResumeGoal = 25 * time.Millisecond

// socketRate is the gateway's default allowance of frames per socket and
// second (GATEWAY_RATE_LIMIT): a partner's sockets are given time to earn
// back what they spent before they send again.
const socketRate = 50

// sendTimeout bounds the wait for one send's answer.
const sendTimeout = 10 * time.Second

// drainWait bounds the wait, at the end of a round, for the senders'
// message_sent frames, so the positions they leave are the last.
const drainWait = 5 * time.Second

// resumeCounts is what the rounds of a resume run count, together.
type resumeCounts struct {
	lat, connLat Histogram

	resumes, recovered, notRecovered, missedMismatch, posMismatch atomic.Int64
	replayed, missing, duplicates, outOfOrder, posGaps            atomic.Int64
	unexpected, incomplete, dialErrors, sends, sendErrors         atomic.Int64
}

// answerMsg is the answer to a send: an ack (ok) or an error frame.
type answerMsg struct {
	seq int
	ok  bool
}

// resumeRun is one round: its sends are run id, seq = away index * Missed
// + k for the k-th message to the away user of that index.
type resumeRun struct {
	id      int
	missed  int
	c       *resumeCounts
	want    [][]int          // per away user: the seqs its partner had acked, in order
	answers []chan answerMsg // per away user: answers to its partner's sends

	pending  atomic.Int64  // resumes not finished
	done     chan struct{} // closed when pending reaches 0
	liveSent atomic.Int64  // message_sent frames the senders got
}

// resumeSock is the state of one resumed socket, its reader's own.
type resumeSock struct {
	rr    *resumeRun
	want  []int     // the seqs it must get, in order
	t0    time.Time // its dial began
	epoch string    // of the last position handled
	off   uint64
	got   int
	seen  []bool
	done  atomic.Bool // finished: every missed event came, or it was given up
}

// answer passes the answer to send seq to its sender, never blocking.
func (rr *resumeRun) answer(seq int, ok bool) {
	if rr.missed <= 0 || seq < 0 {
		return
	}
	if ai := seq / rr.missed; ai < len(rr.answers) {
		select {
		case rr.answers[ai] <- answerMsg{seq, ok}:
		default:
		}
	}
}

// frame handles a frame of the scenario on s (s's reader calls it).
func (rr *resumeRun) frame(s *sock, p parsed, now time.Time) {
	if len(p.pos) > 0 {
		s.lastPos = append(s.lastPos[:0], p.pos...)
	}
	if rs := s.resume; rs != nil && rs.rr == rr {
		rs.frame(p, now)
		return
	}
	if !p.valid || p.run != rr.id {
		return // a straggler of an earlier round: its position is kept above
	}
	switch p.kind {
	case Ack:
		rr.answer(p.seq, true)
	case MessageSent:
		rr.liveSent.Add(1)
	default: // a message of this round to a socket that is not resuming
		rr.c.unexpected.Add(1)
	}
}

// release counts one resume finished.
func (rr *resumeRun) release() {
	if rr.pending.Add(-1) == 0 {
		close(rr.done)
	}
}

// frame checks one frame on a resumed socket against what it missed.
func (rs *resumeSock) frame(p parsed, now time.Time) {
	c := rs.rr.c
	if p.kind != Message || !p.valid || p.run != rs.rr.id {
		c.unexpected.Add(1)
		return
	}
	k, found := slices.BinarySearch(rs.want, p.seq)
	if !found {
		c.unexpected.Add(1)
		return
	}
	if rs.seen[k] {
		c.duplicates.Add(1)
		return
	}
	rs.seen[k] = true
	if k != rs.got {
		c.outOfOrder.Add(1)
	}
	rs.got++
	c.replayed.Add(1)
	pos, ok := proto.ParsePos(string(p.pos))
	if !ok || pos.Epoch != rs.epoch || pos.Off != rs.off+1 {
		c.posGaps.Add(1)
	}
	if ok {
		rs.epoch, rs.off = pos.Epoch, pos.Off
	}
	if rs.got == len(rs.want) {
		c.lat.Record(now.Sub(rs.t0))
		rs.finish(false)
	}
}

// finish ends rs once: what did not arrive is missing; gaveUp marks it
// incomplete. The caller is rs's reader, or runs after it exited.
func (rs *resumeSock) finish(gaveUp bool) {
	if !rs.done.CompareAndSwap(false, true) {
		return
	}
	rs.rr.c.missing.Add(int64(len(rs.want) - rs.got))
	if gaveUp {
		rs.rr.c.incomplete.Add(1)
	}
	rs.rr.release()
}

// hello decodes a connected frame's args; zero when it is none.
func hello(frame []byte) proto.Connected {
	var f struct {
		Event string          `json:"event"`
		Args  proto.Connected `json:"args"`
	}
	if json.Unmarshal(frame, &f) != nil || f.Event != "connected" {
		return proto.Connected{}
	}
	return f.Args
}

// position returns the position of the last event s handled: the last
// one's, or where its connected frame started it. The caller owns s's
// reader state (it has exited, or not started).
func (s *sock) position() string {
	if len(s.lastPos) > 0 {
		return string(s.lastPos)
	}
	return hello(s.hello).Pos
}

// Resume runs the resume scenario (see above) on the generator's sockets,
// which it opens; Config.KeepPositions must be set. Against a stack
// without recovery (no position in the connected frames) it measures
// nothing and says so (ResumeStats.Unsupported).
func (g *Generator) Resume(ctx context.Context, opt ResumeOptions) (Result, error) {
	if opt.Missed < 0 || opt.Rounds < 1 || opt.Rate <= 0 {
		return Result{}, fmt.Errorf("resume: missed %d, rounds %d, rate %g: want missed >= 0, rounds >= 1, rate > 0", opt.Missed, opt.Rounds, opt.Rate)
	}
	if !g.dialer.keepHello {
		return Result{}, errors.New("resume: the generator does not keep positions (Config.KeepPositions)")
	}
	if opt.SendConc < 1 {
		opt.SendConc = 64
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	st := &ResumeStats{MissedEach: opt.Missed, Rounds: opt.Rounds}
	res := Result{Mode: "resume", Users: g.cfg.Users, Devices: g.cfg.Devices, Rate: opt.Rate, Resume: st, CPUPer1k: map[string]float64{}}
	if _, _, err := g.Connect(ctx); err != nil {
		return res, err
	}
	for _, s := range g.socks {
		if s.position() == "" {
			st.Unsupported = true
			res.Conns = g.Open()
			return res, nil
		}
	}
	lost0, err0 := g.connsLost.Load(), g.errFrames.Load()
	groups := g.cfg.Processes.groups()
	acc := &roundAcc{cpu: make([]ProcStat, len(groups)), groups: groups}
	defer g.resumeRn.Store(nil)
	for round := range opt.Rounds {
		if round > 0 {
			if _, _, err := g.Connect(ctx); err != nil { // sockets a round gave up on
				return res, err
			}
		}
		if err := g.resumeRound(ctx, opt, round, acc); err != nil {
			return res, err
		}
	}
	c := &acc.c
	res.Duration = acc.dur.Seconds()
	res.Conns = g.Open()
	res.Latency = summarize(&c.lat)
	res.DialLatency = summarize(&c.connLat)
	res.Sends = c.sends.Load()
	res.Missing = c.missing.Load()
	res.Duplicates = c.duplicates.Load()
	res.SendErrors = c.sendErrors.Load()
	res.ErrorFrames = g.errFrames.Load() - err0
	res.ConnsLost = g.connsLost.Load() - lost0
	res.Closes = g.closeCounts()
	res.ErrorCodes = g.errorCounts()
	st.Resumes = c.resumes.Load()
	st.Recovered = c.recovered.Load()
	st.NotRecovered = c.notRecovered.Load()
	st.MissedMismatch = c.missedMismatch.Load()
	st.PosMismatch = c.posMismatch.Load()
	st.Replayed = c.replayed.Load()
	st.OutOfOrder = c.outOfOrder.Load()
	st.PosGaps = c.posGaps.Load()
	st.Unexpected = c.unexpected.Load()
	st.Incomplete = c.incomplete.Load()
	st.DialErrors = c.dialErrors.Load()
	if acc.dur > 0 {
		st.ReplayedPerSec = float64(st.Replayed) / acc.dur.Seconds()
	}
	fillCPU(&res, groups, make([]ProcStat, len(groups)), acc.cpu, st.Replayed)
	res.LoadgenCPUPer1k = perK(acc.self, st.Replayed)
	g.readRedis(&res)
	st.GoalMet = res.Latency.Count > 0 && res.Latency.P99 <= float64(ResumeGoal.Milliseconds())
	res.Pass = st.Resumes > 0 && st.correct() && res.Missing == 0 && res.Duplicates == 0 &&
		res.SendErrors == 0 && res.ErrorFrames == 0 && res.ConnsLost == 0
	return res, nil
}

// roundAcc is what the rounds of one Resume add up.
type roundAcc struct {
	c       resumeCounts
	groups  []Group
	cpu     []ProcStat    // CPU of each group while resumes were under way
	self    time.Duration // the load generator's own
	dur     time.Duration // time from the first reconnect to the last replay, summed over rounds
	sendEnd [2]time.Time  // when the users of each parity last sent
}

// resumeRound runs one round (see the top of this file).
func (g *Generator) resumeRound(ctx context.Context, opt ResumeOptions, round int, acc *roundAcc) error {
	devs, m := g.cfg.Devices, opt.Missed
	parity := round % 2
	var away []int
	for u := parity; u < g.cfg.Users; u += 2 {
		away = append(away, u)
	}
	rr := &resumeRun{id: int(runIDs.Add(1)), missed: m, c: &acc.c, want: make([][]int, len(away)),
		answers: make([]chan answerMsg, len(away)), done: make(chan struct{})}
	for i := range rr.answers {
		rr.answers[i] = make(chan answerMsg, 1)
	}
	g.resumeRn.Store(rr) // from here every frame's position is kept

	// The away devices drop.
	froms := make([]string, len(away)*devs)
	for ai, u := range away {
		for d := range devs {
			s := g.socks[u*devs+d]
			s.leaving.Store(true)
			_ = s.nc.Close()
			<-s.done
			froms[ai*devs+d] = s.position()
		}
	}

	// Their partners send, once their sockets have earned back the
	// allowance they spent two rounds ago.
	perSock := (m + devs - 1) / devs
	if t := acc.sendEnd[parity]; !t.IsZero() {
		if wait := time.Until(t.Add(time.Duration(perSock) * time.Second / socketRate)); wait > 0 {
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
		}
	}
	sendStart := time.Now()
	g.resumeSends(ctx, rr, away, opt.SendConc)
	acc.sendEnd[parity] = time.Now()
	var acked int
	for _, w := range rr.want {
		acked += len(w)
	}
	g.cfg.Log("round %d: %d devices away, %d messages to them acked in %s", round, len(away)*devs, acked,
		acc.sendEnd[parity].Sub(sendStart).Round(time.Millisecond))
	if err := ctx.Err(); err != nil {
		return err
	}

	// Every send answered: the events are in the streams. Reconnect.
	n := len(away) * devs
	rr.pending.Store(int64(n))
	acc.c.resumes.Add(int64(n))
	states := make([]*resumeSock, n)
	before, self0 := sampleAll(acc.groups), selfCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		if err := sleepCtx(ctx, time.Until(start.Add(time.Duration(float64(i)/opt.Rate*float64(time.Second))))); err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			states[i] = g.resumeOne(ctx, rr, away[i/devs], i%devs, froms[i], rr.want[i/devs])
		}()
	}
	wg.Wait()
	select {
	case <-rr.done:
	case <-time.After(opt.Timeout):
	case <-ctx.Done():
	}
	end := time.Now()
	g.cfg.Log("round %d: %d reconnects in %s, the last replay %s after the first reconnect", round, n,
		time.Duration(float64(n-1)/opt.Rate*float64(time.Second)).Round(time.Millisecond), end.Sub(start).Round(time.Millisecond))
	after := sampleAll(acc.groups)
	for i := range after {
		acc.cpu[i].CPU += after[i].CPU - before[i].CPU
		acc.cpu[i].RSS = after[i].RSS
	}
	acc.self += selfCPU() - self0
	acc.dur += end.Sub(start)
	// Give up on what has not finished: close it, so its reader stops
	// before its count is read.
	for i, rs := range states {
		if rs == nil || rs.done.Load() {
			continue
		}
		s := g.socks[away[i/devs]*devs+i%devs]
		s.leaving.Store(true)
		_ = s.nc.Close()
		<-s.done
		rs.finish(true)
	}
	// The senders' own copies (message_sent) arrive too, so the positions
	// they leave for the next round are their last.
	for deadline := time.Now().Add(drainWait); rr.liveSent.Load() < int64(acked*devs) && time.Now().Before(deadline); {
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// resumeSends has each away user's partner send it rr.missed messages, one
// at a time, conc partners at once; rr.want collects the seqs acked.
func (g *Generator) resumeSends(ctx context.Context, rr *resumeRun, away []int, conc int) {
	devs := g.cfg.Devices
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, len(away)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var payload, frame []byte
			timer := time.NewTimer(sendTimeout)
			defer timer.Stop()
			for {
				ai := int(next.Add(1) - 1)
				if ai >= len(away) || ctx.Err() != nil {
					return
				}
				a := away[ai]
				for k := range rr.missed {
					seq := ai*rr.missed + k
					s := g.socks[Partner(a)*devs+k%devs]
					rr.c.sends.Add(1)
					if s == nil || s.dead.Load() {
						rr.c.sendErrors.Add(1)
						continue
					}
					payload = appendSend(payload[:0], rr.id, seq, a, time.Now().UnixNano())
					frame = appendClientFrame(frame[:0], opText, payload, rand.Uint32())
					if r := s.write(frame, true); r == overflowed || r == failed {
						rr.c.sendErrors.Add(1)
						continue
					}
					timer.Reset(sendTimeout)
					if !rr.await(ctx, ai, seq, timer) {
						rr.c.sendErrors.Add(1)
						continue
					}
					rr.want[ai] = append(rr.want[ai], seq)
				}
			}
		}()
	}
	wg.Wait()
}

// await waits for the answer to send seq of away user ai, and reports
// whether it was an ack.
func (rr *resumeRun) await(ctx context.Context, ai, seq int, timer *time.Timer) bool {
	for {
		select {
		case a := <-rr.answers[ai]:
			if a.seq == seq {
				return a.ok
			}
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// resumeOne reconnects device dev of user from position from, checks its
// connected frame, and starts its reader, which checks the replay. It
// returns the socket's resume state, or nil when the dial failed.
func (g *Generator) resumeOne(ctx context.Context, rr *resumeRun, user, dev int, from string, want []int) *resumeSock {
	c := rr.c
	t0 := time.Now()
	s, worker, err := g.dialer.dial(ctx, g.tokens[user], "resume="+url.QueryEscape(from))
	if err != nil {
		c.dialErrors.Add(1)
		c.missing.Add(int64(len(want)))
		g.cfg.Log("resume u%d device %d: %v", user, dev, err)
		rr.release()
		return nil
	}
	c.connLat.Record(time.Since(t0))
	h := hello(s.hello)
	rs := &resumeSock{rr: rr, want: want, t0: t0, seen: make([]bool, len(want))}
	if p, ok := proto.ParsePos(from); ok {
		rs.epoch, rs.off = p.Epoch, p.Off
	}
	recovered := h.Recovered != nil && *h.Recovered
	if recovered {
		c.recovered.Add(1)
	} else {
		c.notRecovered.Add(1)
	}
	if h.Missed == nil || *h.Missed != len(want) {
		c.missedMismatch.Add(1)
	}
	if recovered && h.Pos != from {
		c.posMismatch.Add(1)
	}
	s.g, s.user, s.dev, s.worker = g, user, dev, worker
	s.resume = rs
	g.socks[user*g.cfg.Devices+dev] = s
	if !recovered || len(want) == 0 { // nothing will follow
		if recovered {
			c.lat.Record(time.Since(t0))
		}
		rs.finish(false)
	}
	go s.readLoop()
	return rs
}

// sleepCtx sleeps for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
