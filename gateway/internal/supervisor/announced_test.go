package supervisor

import (
	"errors"

	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/announced"
	"github.com/switchboard/switchboard/internal/testkit"
)

// record has p announce n sockets, conn "c<i>" of user "u<i%7>" for i in
// [from, from+n), and then the disconnects of those with gone(i), in
// batches as the worker's publisher does, and waits until the pipe took
// them all.
func record(t *testing.T, p *proc, from, n int, gone func(i int) bool) {
	t.Helper()
	for i := from; i < from+n; i++ {
		p.rec.Connect("c"+strconv.Itoa(i), "u"+strconv.Itoa(i%7))
		if i%256 == 0 {
			if err := p.rec.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := from; i < from+n; i++ {
		if gone(i) {
			p.rec.Disconnect("c" + strconv.Itoa(i))
		}
	}
	testkit.Eventually(t, wait, "the pipe took every record", func() bool {
		if err := p.rec.Flush(); err != nil {
			t.Fatal(err)
		}
		return !p.rec.Pending()
	})
}

// conns returns the orphans' connections, sorted, checking that each has
// its user and was lost within [after, before].
func conns(t *testing.T, orphans []announced.Orphan, after, before time.Time) []string {
	t.Helper()
	var out []string
	for _, o := range orphans {
		i, _ := strconv.Atoi(o.Conn[1:])
		if want := "u" + strconv.Itoa(i%7); o.User != want {
			t.Errorf("orphan %s of user %q, want %q", o.Conn, o.User, want)
		}
		if o.Lost < after.UnixMilli() || o.Lost > before.UnixMilli() {
			t.Errorf("orphan %s lost at %d, want within [%d, %d]", o.Conn, o.Lost, after.UnixMilli(), before.UnixMilli())
		}
		out = append(out, o.Conn)
	}
	slices.Sort(out)
	return out
}

func connRange(from, to int, keep func(i int) bool) []string {
	var out []string
	for i := from; i < to; i++ {
		if keep(i) {
			out = append(out, "c"+strconv.Itoa(i))
		}
	}
	slices.Sort(out)
	return out
}

// TestAnnouncedHandedToReplacement: a worker killed with 100,000 sockets
// announced, half of them disconnected since, has the other half handed
// to its replacement, each with its user and the time of the death, and
// nothing to worker 1; the replacement announces half of those and
// crashes, and the next gets the rest, with the first death's time; that
// one drains (exits 0), and the one after gets nothing.
func TestAnnouncedHandedToReplacement(t *testing.T) {
	const n = 100_000
	st := newStarter()
	r := startSup(t, Config{Workers: 2, MinBackoff: time.Millisecond, Announced: 2 * n}, st)
	byIndex := map[int]*proc{}
	for range 2 {
		p := st.next(t)
		if p.rec == nil || p.orphans != nil {
			t.Fatalf("worker %d: announce pipe %v, orphans %v; want a pipe and none", p.index, p.rec != nil, p.orphans)
		}
		byIndex[p.index] = p
	}
	record(t, byIndex[1], n, 10, func(int) bool { return false }) // worker 1's own, never handed

	even := func(i int) bool { return i%2 == 0 }
	odd := func(i int) bool { return i%2 == 1 }
	record(t, byIndex[0], 0, n, even)
	killed := time.Now()
	if err := byIndex[0].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := st.next(t)
	if second.index != 0 {
		t.Fatalf("restarted worker %d, want 0", second.index)
	}
	if got, want := conns(t, second.orphans, killed, time.Now()), connRange(0, n, odd); !slices.Equal(got, want) {
		t.Fatalf("the replacement got %d orphans, want the %d announced and not disconnected", len(got), len(want))
	}
	testkit.Eventually(t, wait, "Orphans counts the handed sockets", func() bool { return r.sup.Orphans() == n/2 })
	lost := second.orphans[0].Lost

	// It announces the disconnects of those below n/2, and of a socket
	// of its own, then crashes.
	for _, o := range second.orphans {
		if i, _ := strconv.Atoi(o.Conn[1:]); i < n/2 {
			second.rec.Disconnect(o.Conn)
		}
	}
	record(t, second, 2*n, 1, func(int) bool { return true })
	second.exit(errors.New("exit status 2"))
	third := st.next(t)
	for _, o := range third.orphans {
		if o.Lost != lost {
			t.Fatalf("orphan %s handed on lost at %d, want the first death's %d", o.Conn, o.Lost, lost)
		}
	}
	if got, want := conns(t, third.orphans, killed, time.Now()), connRange(n/2, n, odd); !slices.Equal(got, want) {
		t.Fatalf("the third worker got %d orphans, want the %d the second did not announce", len(got), len(want))
	}

	record(t, third, 3*n, 5, func(int) bool { return false })
	third.exit(nil) // a drain: what it could announce, it did
	if fourth := st.next(t); fourth.orphans != nil {
		t.Errorf("after a clean exit the next worker got %d orphans, want none", len(fourth.orphans))
	}
	if sigs := byIndex[1].sigs(); len(sigs) != 0 {
		t.Errorf("worker 1 got signals %v", sigs)
	}
}

// TestAnnouncedBounded: the supervisor keeps at most Config.Announced
// sockets per worker; the connects over it are not handed on (nor do they
// push out those kept), and a disconnect still removes one kept.
func TestAnnouncedBounded(t *testing.T) {
	st := newStarter()
	startSup(t, Config{Workers: 1, MinBackoff: time.Millisecond, Announced: 10}, st)
	p := st.next(t)
	record(t, p, 0, 15, func(i int) bool { return i == 3 })
	p.exit(errors.New("signal: killed"))
	next := st.next(t)
	if got, want := conns(t, next.orphans, time.Time{}, time.Now()), connRange(0, 10, func(i int) bool { return i != 3 }); !slices.Equal(got, want) {
		t.Errorf("handed %v, want %v", got, want)
	}
}

// TestAnnouncedOffHandsNothing: with Config.Announced 0 a worker gets no
// pipe, and a crash hands nothing on.
func TestAnnouncedOffHandsNothing(t *testing.T) {
	st := newStarter()
	startSup(t, Config{Workers: 1, MinBackoff: time.Millisecond}, st)
	p := st.next(t)
	if p.rec != nil {
		t.Fatal("a worker got an announce pipe with Announced 0")
	}
	p.exit(errors.New("signal: killed"))
	if next := st.next(t); next.rec != nil || next.orphans != nil {
		t.Errorf("restart: pipe %v, orphans %d; want neither", next.rec != nil, len(next.orphans))
	}
}

// TestAnnouncedStopHandsNothing: a worker stopped by the supervisor's own
// shutdown hands nothing on, and none is started.
func TestAnnouncedStopHandsNothing(t *testing.T) {
	st := newStarter()
	r := startSup(t, Config{Workers: 1, MinBackoff: time.Millisecond, Announced: 10}, st)
	p := st.next(t)
	record(t, p, 0, 3, func(int) bool { return false })
	r.cancel()
	r.returned(t, "Run did not return after the stop")
	select {
	case p := <-st.started:
		t.Errorf("worker %d started during the stop", p.index)
	default:
	}
}

// TestAnnouncedPipeNotEndedHandsNothing: a dead worker whose announce
// pipe does not end (a process it started holds the write end) may have
// records left unread, disconnects it published among them: its set is
// dropped after announceReadWait rather than handed on.
func TestAnnouncedPipeNotEndedHandsNothing(t *testing.T) {
	defer func(d time.Duration) { announceReadWait = d }(announceReadWait)
	announceReadWait = 100 * time.Millisecond
	st := newStarter()
	startSup(t, Config{Workers: 1, MinBackoff: time.Millisecond, Announced: 10}, st)
	p := st.next(t)
	record(t, p, 0, 3, func(int) bool { return false })
	held, err := syscall.Dup(p.announceFD)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(held)
	p.exit(errors.New("signal: killed"))
	if next := st.next(t); next.orphans != nil {
		t.Errorf("with the pipe still open elsewhere the next worker got %d orphans, want none", len(next.orphans))
	}
}
