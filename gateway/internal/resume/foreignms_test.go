package resume_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/proto"
)

// TestResumeBelowTopWithWrongTimeIsInvalid: a position below the stream's
// top whose time part is not its entry's (the stream holds the entries
// after its offset, and the read from it does not find them; or a time
// after the top's) is no position of ours: recovered false, counted as an
// invalid position, not as events expired. A genuine position whose
// entries the window trimmed still reads "expired".
func TestResumeBelowTopWithWrongTimeIsInvalid(t *testing.T) {
	onBoth(t, testResumeBelowTopWithWrongTime)
}

func testResumeBelowTopWithWrongTime(t *testing.T, newFixture func(*testing.T, resume.Config) *fixture) {
	f := newFixture(t, resume.DefaultConfig())
	e1 := f.publish(t, "bob", "e1")
	e2 := f.publish(t, "bob", "e2")
	// Published until one is in a later millisecond than e2, so that a
	// time between e2's and the top's skips entries after e1.
	top := f.publish(t, "bob", "e3")
	for i := 4; top.MS == e2.MS; i++ {
		top = f.publish(t, "bob", fmt.Sprintf("e%d", i))
	}
	x1 := f.publish(t, "carol", "x1")
	f.publish(t, "carol", "x2")
	x3 := f.publish(t, "carol", "x3")
	f.publish(t, "carol", "x4")
	// Carol's oldest entries expire: trimmed as by time.
	if err := f.rdb.XTrimMinID(context.Background(), proto.UserStreamKey("carol"), x3.ID()).Err(); err != nil {
		t.Fatal(err)
	}
	at := func(p proto.Pos, ms uint64) string { p.MS = ms; return p.String() }
	for _, tt := range []struct {
		name, user, pos, outcome string
	}{
		{"time after the top's", "bob", at(e1, top.MS+10*365*24*3600*1000), resume.OutcomeInvalid},
		{"time before its entry's", "bob", at(e2, e1.MS-1), resume.OutcomeInvalid},
		{"time of a later entry", "bob", at(e1, top.MS), resume.OutcomeInvalid},
		{"trimmed, time after the top's", "carol", at(x1, x3.MS+10*365*24*3600*1000), resume.OutcomeInvalid},
		{"trimmed by the window", "carol", x1.String(), resume.OutcomeExpired},
		{"trimmed, time earlier", "carol", at(x1, 0), resume.OutcomeExpired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &conn{id: "c", user: tt.user}
			_, args := f.connect(t, c, tt.pos, "")
			if args.Recovered == nil || *args.Recovered || *args.Missed != 0 || len(c.got()) != 1 {
				t.Fatalf("resume from %s: connected %+v, %d frames, want recovered false, nothing replayed", tt.pos, args, len(c.got()))
			}
			if got := f.rec.lastResume(); got != tt.outcome {
				t.Fatalf("resume from %s: outcome %s, want %s", tt.pos, got, tt.outcome)
			}
		})
	}
}
