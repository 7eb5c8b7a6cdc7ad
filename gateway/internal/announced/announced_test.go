package announced

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipe returns a Writer on a new pipe, keeping at most maxPending bytes,
// and the read end.
func pipe(t testing.TB, maxPending int) (*Writer, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	rec, err := NewWriter(fd, maxPending)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close(); _ = r.Close() })
	return rec, r
}

// readAll reads r to its end into a new Set of at most max.
func readAll(r *os.File, max int) *Set {
	s := NewSet(max)
	Read(r, s)
	return s
}

func conns(orphans []Orphan) []string {
	var out []string
	for _, o := range orphans {
		out = append(out, o.Conn+"/"+o.User)
	}
	slices.Sort(out)
	return out
}

// TestRoundTrip: connects and disconnects written in several flushes
// read back into the set of sockets still announced, with their users;
// Take empties it and stamps the loss.
func TestRoundTrip(t *testing.T) {
	rec, r := pipe(t, DefaultMaxPending)
	long := strings.Repeat("é", maxUserLen/2) // the longest user id
	rec.Connect("a", "alice")
	rec.Connect("b", "bob")
	rec.Connect("c", long)
	rec.Connect(strings.Repeat("x", MaxConnLen+1), "too long a conn: left out")
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	rec.Disconnect("a")
	rec.Disconnect("never-announced")
	rec.Connect("d", "dora")
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = rec.Close()
	s := readAll(r, 100)
	at := time.UnixMilli(1_700_000_000_000)
	got := s.Take(at)
	if want := []string{"b/bob", "c/" + long, "d/dora"}; !slices.Equal(conns(got), want) {
		t.Errorf("Take = %v, want %v", conns(got), want)
	}
	for _, o := range got {
		if o.Lost != at.UnixMilli() {
			t.Errorf("%s lost at %d, want %d", o.Conn, o.Lost, at.UnixMilli())
		}
	}
	if s.Len() != 0 {
		t.Errorf("Len after Take = %d, want 0", s.Len())
	}
}

// TestFullPipeNeverBlocks: with nobody reading, Flush returns at once and
// keeps what the pipe does not take; past maxPending the Writer drops it
// and owes a reset, which, once read, makes the reader forget every
// socket told before it, and only the records after it count.
func TestFullPipeNeverBlocks(t *testing.T) {
	rec, r := pipe(t, 8<<10)
	start := time.Now()
	for i := range 20_000 { // far more than a pipe's 64 KiB
		rec.Connect("c"+strconv.Itoa(i), "user")
		if i%256 == 0 {
			if err := rec.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("writing to a full pipe took %s", d)
	}
	if !rec.Pending() {
		t.Fatal("nothing pending with a full pipe")
	}
	if rec.pending > 8<<10 {
		t.Errorf("%d bytes kept, want at most %d", rec.pending, 8<<10)
	}
	s := NewSet(1 << 20)
	done := make(chan struct{})
	go func() { defer close(done); Read(r, s) }()
	testkit.Eventually(t, 5*time.Second, "the reader drains the pipe and the Writer what it kept", func() bool {
		if err := rec.Flush(); err != nil {
			t.Fatal(err)
		}
		return !rec.Pending()
	})
	rec.Connect("after", "alice")
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = rec.Close()
	<-done
	got := s.Take(time.Now())
	// The reset forgot every socket written before the drop; those kept
	// after it (the tail of the loop) and "after" remain.
	if len(got) == 0 || len(got) >= 20_000 {
		t.Fatalf("after the reset the set holds %d sockets, want some but not all 20,000", len(got))
	}
	if !slices.Contains(conns(got), "after/alice") {
		t.Errorf("the socket recorded after the reset is missing")
	}
	for _, o := range got {
		if o.Conn == "c0" {
			t.Errorf("c0, written before the drop, survived the reset")
		}
	}
}

// TestClosedReaderFailsWriter: once the reader is gone a Flush fails
// (EPIPE), and the Writer writes nothing more.
func TestClosedReaderFailsWriter(t *testing.T) {
	rec, r := pipe(t, DefaultMaxPending)
	_ = r.Close()
	rec.Connect("a", "alice")
	if err := rec.Flush(); err == nil {
		t.Fatal("Flush to a pipe without reader succeeded")
	}
	if rec.Pending() {
		t.Error("a dead Writer still reports records pending")
	}
}

// TestSetBound: connects past the bound are dropped and counted, a
// connect of a socket already kept is not one, and a reset empties the
// set.
func TestSetBound(t *testing.T) {
	rec, r := pipe(t, DefaultMaxPending)
	for i := range 5 {
		rec.Connect("c"+strconv.Itoa(i), "u")
	}
	rec.Connect("c0", "u")
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = rec.Close()
	s := readAll(r, 3)
	if s.Len() != 3 || s.Dropped() != 2 {
		t.Errorf("Len %d, Dropped %d; want 3 and 2", s.Len(), s.Dropped())
	}
	s2 := NewSet(10)
	Read(bytes.NewReader([]byte{recConnect, 1, 'a', 0, 1, 'u', recReset, recConnect, 1, 'b', 0, 1, 'v'}), s2)
	if got := conns(s2.Take(time.Now())); !slices.Equal(got, []string{"b/v"}) {
		t.Errorf("after a reset: %v, want [b/v]", got)
	}
}

// TestMalformedHandsNothing: a record that cannot be one marks the set
// broken, and Take hands nothing on; a record cut short by the end is
// dropped, the rest kept.
func TestMalformedHandsNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
		want int
	}{
		{"unknown kind", []byte{recConnect, 1, 'a', 0, 1, 'u', 'x'}, 0},
		{"conn too long", []byte{recConnect, 1, 'a', 0, 1, 'u', recDisconnect, MaxConnLen + 1}, 0},
		{"user too long", []byte{recConnect, 1, 'a', 0, 1, 'u', recConnect, 1, 'b', 0xff, 0xff}, 0},
		{"cut short", []byte{recConnect, 1, 'a', 0, 1, 'u', recConnect, 1, 'b', 0, 5, 'v'}, 1},
	} {
		s := NewSet(10)
		Read(bytes.NewReader(tt.in), s)
		if got := s.Take(time.Now()); len(got) != tt.want {
			t.Errorf("%s: Take = %v, want %d", tt.name, got, tt.want)
		}
	}
}

// TestOrphansFile: WriteOrphans and ReadOrphans round-trip, ReadOrphans
// stops at its bound, and a cut file returns what came before the cut.
func TestOrphansFile(t *testing.T) {
	var in []Orphan
	for i := range 1000 {
		in = append(in, Orphan{Conn: "c" + strconv.Itoa(i), User: "u" + strconv.Itoa(i%3), Lost: int64(1_700_000_000_000 + i)})
	}
	in = append(in, Orphan{Conn: strings.Repeat("x", MaxConnLen+1), User: "left out"})
	var b bytes.Buffer
	if err := WriteOrphans(&b, in); err != nil {
		t.Fatal(err)
	}
	got, err := ReadOrphans(bytes.NewReader(b.Bytes()), 1<<20)
	if err != nil || !slices.Equal(got, in[:1000]) {
		t.Fatalf("ReadOrphans = %d orphans, %v; want the 1000 written", len(got), err)
	}
	if got, err := ReadOrphans(bytes.NewReader(b.Bytes()), 10); err != nil || len(got) != 10 {
		t.Errorf("bounded at 10: %d, %v", len(got), err)
	}
	if got, err := ReadOrphans(bytes.NewReader(b.Bytes()[:b.Len()-3]), 1<<20); err == nil || len(got) != 999 {
		t.Errorf("cut: %d orphans, %v; want 999 and an error", len(got), err)
	}
}

// FuzzRead: any bytes from a worker's pipe leave the reader standing, and
// a set it did not mark broken holds only what connects named.
func FuzzRead(f *testing.F) {
	f.Add([]byte{recConnect, 1, 'a', 0, 1, 'u', recDisconnect, 1, 'a', recReset})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := NewSet(100)
		Read(bytes.NewReader(in), s)
		if s.Len() > 100 {
			t.Fatalf("Len %d over the bound", s.Len())
		}
		_ = s.Take(time.Now())
	})
}

// FuzzReadOrphans: any file leaves the reader standing, within its bound.
func FuzzReadOrphans(f *testing.F) {
	var b bytes.Buffer
	_ = WriteOrphans(&b, []Orphan{{Conn: "c", User: "u", Lost: 1}})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		got, _ := ReadOrphans(bytes.NewReader(in), 50)
		if len(got) > 50 {
			t.Fatalf("%d orphans over the bound", len(got))
		}
	})
}

// TestFlushWithinWaitsForDisconnect: with the pipe full, a disconnect is
// in the pipe when FlushWithin returns as soon as a reader makes room (a
// plain Flush leaves it pending), and without a reader FlushWithin gives
// up at its bound with it still pending, the pipe never failed.
func TestFlushWithinWaitsForDisconnect(t *testing.T) {
	rec, r := pipe(t, DefaultMaxPending)
	fill := func() {
		for i := 0; !rec.Pending(); i++ {
			rec.Connect("c"+strconv.Itoa(i), "user")
			if err := rec.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill()
	rec.Disconnect("c0")
	start := time.Now()
	if err := rec.FlushWithin(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("FlushWithin gave up after %s with nobody reading, want about its bound", d)
	}
	if !rec.Pending() {
		t.Fatal("a full pipe without reader took the disconnect")
	}

	s := NewSet(1 << 20)
	done := make(chan struct{})
	go func() { defer close(done); Read(r, s) }()
	if err := rec.FlushWithin(time.Minute); err != nil {
		t.Fatal(err)
	}
	if rec.Pending() {
		t.Fatal("FlushWithin returned with records pending while the reader drains the pipe")
	}
	_ = rec.Close()
	<-done
	for _, o := range s.Take(time.Now()) {
		if o.Conn == "c0" {
			t.Fatal("c0's disconnect, flushed, is not in the set's reading")
		}
	}
	if s.Len() != 0 {
		t.Errorf("Len after Take = %d", s.Len())
	}
}
