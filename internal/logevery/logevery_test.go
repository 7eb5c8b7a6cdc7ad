package logevery

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestLogIsBounded: the first failure is logged at once, then at most one
// line per period with the attempts made, however often they come; after
// Reset the next failure is logged at once again.
func TestLogIsBounded(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	now := time.Unix(1_000_000, 0)
	l := New(zap.New(core), "waiting for NATS", 30*time.Second)
	l.now = func() time.Time { return now }
	refused := errors.New("connection refused")
	lines := func() []observer.LoggedEntry { return logs.FilterMessage("waiting for NATS").All() }

	for range 120 { // 30 s of attempts, every 250 ms
		l.Failed(refused)
		now = now.Add(250 * time.Millisecond)
	}
	if n := len(lines()); n != 1 {
		t.Fatalf("%d lines for 120 attempts within 30 s, want 1", n)
	}
	l.Failed(refused, zap.String("extra", "x"))
	got := lines()
	if len(got) != 2 {
		t.Fatalf("%d lines once 30 s passed, want 2", len(got))
	}
	if a := got[0].ContextMap()["attempts"]; a != int64(1) {
		t.Errorf("first line: attempts %v, want 1", a)
	}
	second := got[1].ContextMap()
	if second["attempts"] != int64(121) || second["error"] != refused.Error() || second["extra"] != "x" ||
		got[1].Level != zapcore.WarnLevel {
		t.Errorf("second line %v %v, want a warning with 121 attempts, the error and the fields", got[1].Level, second)
	}

	l.Reset()
	l.Failed(refused)
	if got := lines(); len(got) != 3 || got[2].ContextMap()["attempts"] != int64(1) {
		t.Errorf("after Reset: %d lines, last %v; want a third line at once, attempts 1", len(got), got[len(got)-1].ContextMap())
	}
}
