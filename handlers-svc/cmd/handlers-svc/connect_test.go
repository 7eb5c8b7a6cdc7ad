package main

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestWaitLogIsBounded: a wait at start-up logs its first failure at once,
// then at most one line per waitLogEvery with the attempts made, however
// often it retries: NATS is retried every 250 ms, and a line per attempt
// filled the log of a handlers-svc started while NATS was down.
func TestWaitLogIsBounded(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	now := time.Unix(1_000_000, 0)
	w := newWaitLog(zap.New(core), "waiting for NATS")
	w.now = func() time.Time { return now }
	refused := errors.New("connection refused")

	for range 120 { // 30 s of attempts, every 250 ms
		w.failed(refused)
		now = now.Add(250 * time.Millisecond)
	}
	if n := logs.FilterMessage("waiting for NATS").Len(); n != 1 {
		t.Fatalf("%d lines for 120 attempts within %s, want 1", n, waitLogEvery)
	}
	w.failed(refused)
	lines := logs.FilterMessage("waiting for NATS").All()
	if len(lines) != 2 {
		t.Fatalf("%d lines once %s passed, want 2", len(lines), waitLogEvery)
	}
	if got := lines[0].ContextMap()["attempts"]; got != int64(1) {
		t.Errorf("first line: attempts %v, want 1", got)
	}
	if got := lines[1].ContextMap()["attempts"]; got != int64(121) {
		t.Errorf("second line: attempts %v, want 121", got)
	}
	if lines[1].Level != zapcore.WarnLevel || lines[1].ContextMap()["error"] != refused.Error() {
		t.Errorf("second line %v %v, want a warning with the error", lines[1].Level, lines[1].ContextMap())
	}
}
