package resume_test

import (
	"context"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/resume"
	"github.com/switchboard/switchboard/proto"
)

// TestRecoveryOffResumeCounted: with HISTORY_WINDOW=0 a socket that
// connects with a resume position is answered recovered false, and counted
// in switchboard_gateway_resumes_total as recovery_off: the metric counts
// every socket that connected with a resume position.
func TestRecoveryOffResumeCounted(t *testing.T) {
	cfg := resume.DefaultConfig()
	cfg.Enabled = false
	f := newFixture(t, cfg)
	c := &conn{id: "c1", user: "bob"}
	s := f.res.NewSocket(c)
	if err := f.res.Connect(context.Background(), s, proto.Connected{Worker: 0}, "e.1-1", ""); err != nil {
		t.Fatal(err)
	}
	f.rec.mu.Lock()
	got := append([]string(nil), f.rec.resumed...)
	f.rec.mu.Unlock()
	if len(got) != 1 || got[0] != resume.OutcomeOff {
		t.Fatalf("Recorder.Resumed calls %q for one resume with recovery off; want one, %q", got, resume.OutcomeOff)
	}
}
