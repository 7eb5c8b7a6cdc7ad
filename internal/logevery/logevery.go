// Package logevery logs a failure that repeats, such as each failed attempt
// to reach NATS or Redis: the first at once, then at most one line per
// period, with how many attempts there were. A server that is retried
// every 250 ms must not write a line per attempt, and its error (refused,
// not resolvable, authorization violation) must still be in the log.
package logevery

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Log logs the failures of one kind at warn level under one message.
type Log struct {
	log   *zap.Logger
	msg   string
	every time.Duration
	now   func() time.Time

	mu       sync.Mutex
	attempts int
	last     time.Time // when a line was last written; zero: never since Reset
}

// New returns a Log writing msg at most once per every.
func New(log *zap.Logger, msg string, every time.Duration) *Log {
	return &Log{log: log, msg: msg, every: every, now: time.Now}
}

// Failed records a failed attempt, and logs it with err, fields and the
// attempts since the last Reset if it is the first or the last line is
// every old.
func (l *Log) Failed(err error, fields ...zap.Field) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts++
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		return
	}
	l.last = now
	l.log.Warn(l.msg, append([]zap.Field{zap.Error(err), zap.Int("attempts", l.attempts)}, fields...)...)
}

// Reset starts over after a success: the next failure is logged at once.
func (l *Log) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts, l.last = 0, time.Time{}
}
