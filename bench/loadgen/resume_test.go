package loadgen

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// replayFrame is a replayed message of send seq of run at offset off.
func replayFrame(run, seq int, off uint64) parsed {
	return parsed{kind: Message, run: run, seq: seq, valid: true, pos: fmt.Appendf(nil, "e1.1764072000124-%d", off)}
}

func newTestResume(missed int, want []int) (*resumeRun, *resumeSock) {
	rr := &resumeRun{id: 7, missed: missed, c: &resumeCounts{}, done: make(chan struct{})}
	rr.pending.Store(1)
	rs := &resumeSock{rr: rr, want: want, t0: time.Now(), epoch: "e1", off: 10, seen: make([]bool, len(want))}
	return rr, rs
}

// TestResumeSockChecksTheReplay: the replay of what a device missed must be
// exactly the sends acked for it, in order, at consecutive offsets after
// its resume position; each departure is counted, and the resume finishes
// (its latency recorded once) when the last missed event arrives.
func TestResumeSockChecksTheReplay(t *testing.T) {
	// Exact: seqs 3, 4, 5 at offsets 11, 12, 13.
	rr, rs := newTestResume(3, []int{3, 4, 5})
	for i, seq := range []int{3, 4, 5} {
		rs.frame(replayFrame(7, seq, uint64(11+i)), time.Now())
	}
	c := rr.c
	if !rs.done.Load() || c.lat.Count() != 1 || c.replayed.Load() != 3 || c.missing.Load() != 0 {
		t.Fatalf("exact replay: done %v, latencies %d, replayed %d, missing %d", rs.done.Load(), c.lat.Count(), c.replayed.Load(), c.missing.Load())
	}
	select {
	case <-rr.done:
	default:
		t.Fatal("the run's last resume finished, but the run is not done")
	}
	if c.outOfOrder.Load()+c.posGaps.Load()+c.duplicates.Load()+c.unexpected.Load() != 0 {
		t.Errorf("exact replay counted errors: %+v", snapshot(c))
	}
	// After it finished, a repeat is a duplicate.
	rs.frame(replayFrame(7, 5, 13), time.Now())
	if c.duplicates.Load() != 1 || c.lat.Count() != 1 {
		t.Errorf("repeat after the end: %+v", snapshot(c))
	}

	// Out of order, a gap, a duplicate, a stranger, another run, an ack.
	rr, rs = newTestResume(3, []int{3, 4, 5})
	c = rr.c
	rs.frame(replayFrame(7, 4, 11), time.Now()) // before 3
	rs.frame(replayFrame(7, 4, 11), time.Now()) // twice
	rs.frame(replayFrame(7, 3, 13), time.Now()) // after 4: out of place too; and offset 12 skipped
	rs.frame(replayFrame(7, 9, 14), time.Now()) // not missed by this device
	rs.frame(replayFrame(8, 5, 14), time.Now()) // another run
	rs.frame(parsed{kind: Ack, run: 7, seq: 5, valid: true}, time.Now())
	rs.frame(parsed{kind: Message, run: 7, seq: 5, valid: true, pos: []byte("not a position")}, time.Now())
	got := snapshot(c)
	want := map[string]int64{"replayed": 3, "duplicates": 1, "out_of_order": 2, "pos_gaps": 2, "unexpected": 3, "missing": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if !rs.done.Load() || c.lat.Count() != 1 {
		t.Errorf("every missed event came, out of order: done %v, latencies %d", rs.done.Load(), c.lat.Count())
	}

	// Given up on after one of three: two missing, incomplete, no latency.
	rr, rs = newTestResume(3, []int{0, 1, 2})
	rs.frame(replayFrame(7, 0, 11), time.Now())
	rs.finish(true)
	rs.finish(true) // once only
	if got := snapshot(rr.c); got["missing"] != 2 || got["incomplete"] != 1 || rr.c.lat.Count() != 0 || rr.pending.Load() != 0 {
		t.Errorf("given up: %v, pending %d", got, rr.pending.Load())
	}
}

func snapshot(c *resumeCounts) map[string]int64 {
	return map[string]int64{
		"replayed": c.replayed.Load(), "missing": c.missing.Load(), "duplicates": c.duplicates.Load(),
		"out_of_order": c.outOfOrder.Load(), "pos_gaps": c.posGaps.Load(), "unexpected": c.unexpected.Load(),
		"incomplete": c.incomplete.Load(),
	}
}

// TestResumeRunRoutesAnswersAndLiveFrames: acks and errors reach the
// sender of their away user; a message_sent of the round is counted live;
// every frame's position is kept on its socket, a straggler's too.
func TestResumeRunRoutesAnswersAndLiveFrames(t *testing.T) {
	rr := &resumeRun{id: 7, missed: 4, c: &resumeCounts{}, answers: []chan answerMsg{make(chan answerMsg, 1), make(chan answerMsg, 1)}}
	s := &sock{}
	rr.frame(s, parsed{kind: Ack, run: 7, seq: 5, valid: true}, time.Now()) // away user 1, k = 1
	if a := <-rr.answers[1]; a != (answerMsg{5, true}) {
		t.Errorf("answer %+v", a)
	}
	rr.answer(2, false)
	if a := <-rr.answers[0]; a != (answerMsg{2, false}) {
		t.Errorf("answer %+v", a)
	}
	rr.answer(99, true) // beyond the away users: dropped
	rr.frame(s, parsed{kind: MessageSent, run: 7, seq: 1, valid: true, pos: []byte("e.1-1")}, time.Now())
	rr.frame(s, parsed{kind: MessageSent, run: 6, seq: 1, valid: true, pos: []byte("e.1-2")}, time.Now())
	rr.frame(s, parsed{kind: Message, run: 7, seq: 1, valid: true, pos: []byte("e.1-3")}, time.Now())
	if rr.liveSent.Load() != 1 || rr.c.unexpected.Load() != 1 || string(s.lastPos) != "e.1-3" {
		t.Errorf("live %d, unexpected %d, last position %q", rr.liveSent.Load(), rr.c.unexpected.Load(), s.lastPos)
	}
}

func TestHelloAndPosition(t *testing.T) {
	s := &sock{hello: []byte(`{"event":"connected","id":"u1","args":{"conn":"c","worker":1,"pos":"e.5-3","recovered":true,"missed":2}}`)}
	h := hello(s.hello)
	if h.Pos != "e.5-3" || h.Recovered == nil || !*h.Recovered || h.Missed == nil || *h.Missed != 2 || h.Worker != 1 {
		t.Errorf("hello %+v", h)
	}
	if s.position() != "e.5-3" {
		t.Errorf("position %q, want the connected frame's", s.position())
	}
	s.lastPos = []byte("e.6-4")
	if s.position() != "e.6-4" {
		t.Errorf("position %q, want the last event's", s.position())
	}
	for _, bad := range []string{``, `{"event":"message","args":{"pos":"x"}}`, `{"event":"connected","args":{"pos":7}}`} {
		if h := hello([]byte(bad)); h.Pos != "" || h.Recovered != nil {
			t.Errorf("hello(%s) = %+v", bad, h)
		}
	}
}

func TestResumeMarkdown(t *testing.T) {
	ok := Result{Mode: "resume", Stack: "candidate", Ref: "abc", Users: 10, Devices: 2, Rate: 100, Pass: true,
		Latency: Latency{Count: 10, P50: 3, P99: 12}, Resume: &ResumeStats{MissedEach: 100, Resumes: 10, Recovered: 10, Replayed: 1000, GoalMet: true}}
	off := Result{Mode: "resume", Stack: "baseline", Users: 10, Devices: 2, Resume: &ResumeStats{Unsupported: true}}
	var b strings.Builder
	ResumeMarkdown(&b, []Result{ok, off})
	out := b.String()
	for _, s := range []string{"| candidate abc | 10x2 | 100 | 10 | 100 | 3.00 ms |", "12.00 ms", "10 / 0", "| baseline | 10x2 | | | | not measured"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	b.Reset()
	ok.WriteTable(&b)
	if !strings.Contains(b.String(), "resume [candidate abc]: 10 users x 2 devices, 100 missed events each") {
		t.Errorf("WriteTable:\n%s", b.String())
	}
}
