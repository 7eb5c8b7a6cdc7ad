package loadgen

import (
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSendFailedByTheFlusherIsCountedOnce: every send schedule makes is
// counted once, as made (Tracker: its deliveries and ack then expected,
// missing if they do not come), or as a client overflow, or as a send
// error: 8a389c5 takes back (Tracker.Unsent) a send that write drops or
// fails at once, so that "missing" counts only what the stack lost.
//
// It fails on main: a send that write queued behind a full socket and
// that the flusher then fails to write (the connection reset) is added to
// send_errors by flush, which does not know its sequence number, and stays
// in the tracker: it counts as a send error and again as 2*D missing
// deliveries and a missing ack, so Result.Errors (704c1ec) counts it twice
// and "missing" blames the stack for a send it never saw. Fix: keep the
// sequence numbers of the queued sends with pending (or the tracker's
// seqs per socket), and Unsent them where flush counts them as send errors.
func TestSendFailedByTheFlusherIsCountedOnce(t *testing.T) {
	reset := make(chan struct{})
	closed := make(chan struct{})
	url := testServer(t, websocket.Upgrader{}, func(c *websocket.Conn) {
		tc := c.NetConn().(*net.TCPConn)
		_ = tc.SetReadBuffer(4096)
		<-reset
		// Reads nothing, and resets the connection (unread data, no
		// linger): the flusher's blocked write fails.
		_ = tc.SetLinger(0)
		_ = tc.Close()
		close(closed)
	})
	g, s := testSock(t, url)
	_ = s.nc.SetWriteBuffer(4096)
	g.socks[1] = s // both users send on the one socket: every send is made
	const sends = 100_000
	rs := &runState{id: 1, rate: 1000, start: time.Now(), endSeqs: sends, tracker: NewTracker(sends, 1)}
	g.cur.Store(rs)
	rng := rand.New(rand.NewPCG(1, 2))
	flushing := func() bool {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		return s.flushing
	}
	seq := 0
	for ; seq < sends && !flushing(); seq++ {
		g.schedule(rs, rng, seq)
	}
	if !flushing() {
		t.Fatalf("%d sends all taken by a socket whose peer reads nothing", seq)
	}
	// Some more, queued behind the full socket.
	for range 10 {
		g.schedule(rs, rng, seq)
		seq++
	}
	close(reset)
	<-closed
	g.waitFlushes()
	tally := rs.tracker.Tally()
	overflow, sendErrs := g.overflow.Load(), g.sendErrors.Load()
	if sendErrs == 0 {
		t.Fatalf("no send errors after the connection was reset under %d queued sends (tally %+v)", 10, tally)
	}
	if got := tally.Sends + overflow + sendErrs; got != int64(seq) {
		t.Errorf("%d sends scheduled, but %d made + %d client overflows + %d send errors = %d: "+
			"the sends the flusher failed to write are counted as send errors and also as made "+
			"(%d missing deliveries, %d missing acks)",
			seq, tally.Sends, overflow, sendErrs, got, tally.Missing, tally.MissingAcks)
	}
}
