package resume_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestResumeAtTopWithWrongTimeFillsLaterGap: a resume position whose epoch
// and offset are the stream's top but whose time part is not the top
// entry's (a stale or hand-edited position) recovers, and the socket goes
// on from the top entry's real position, which connected names. When the
// cursor kept the client's time, its first gap was read from
// "(<wrong ms>-<off>", which found nothing, and the socket got a resync
// "missed events expired" for events that were in the stream.
func TestResumeAtTopWithWrongTimeFillsLaterGap(t *testing.T) {
	f := newFixture(t, resume.DefaultConfig())
	top := f.publish(t, "bob", "e0")
	forged := top
	forged.MS = top.MS + 10*365*24*3600*1000 // the top's offset, another time
	c := &conn{id: "c1", user: "bob"}
	s, args := f.connect(t, c, forged.String(), "")
	f.run(t, func() []*resume.Socket { return []*resume.Socket{s} })
	if args.Recovered == nil {
		t.Fatal("no recovered")
	}
	t.Logf("connected: recovered %v pos %s (top %s)", *args.Recovered, args.Pos, top)
	var ps []proto.Pos
	for i := 1; i <= 3; i++ {
		ps = append(ps, f.publish(t, "bob", fmt.Sprintf("e%d", i)))
	}
	s.Offer(false, &ps[2], eventFrame("bob", "e3", ps[2])) // e1, e2 lost on the way
	testkit.Eventually(t, 5*time.Second, "the gap handled", func() bool {
		return len(c.events(t)) >= 3 || len(f.rec.resyncs()) > 0
	})
	if r := f.rec.resyncs(); len(r) > 0 {
		t.Fatalf("resync %v for a gap the stream holds (events %q); connected recovered %v", r, join(c.events(t)), *args.Recovered)
	}
	if !*args.Recovered || args.Pos != top.String() {
		t.Errorf("connected: recovered %v pos %s, want true and the top's own %s", *args.Recovered, args.Pos, top)
	}
	if got, want := join(c.events(t)), "e1@2 e2@3 e3@4"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
}
