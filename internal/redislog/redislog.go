// Package redislog sends go-redis's own log lines (such as the dial
// failures of its pool, on every retry while Redis is down) to zap at
// debug level: the services log the outages that matter themselves, once.
package redislog

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

// Message is the message of every line Logger writes; go-redis's text is
// in its "detail" field.
const Message = "go-redis"

// Logger is a go-redis logger (redis.SetLogger) writing to a zap logger.
type Logger struct{ log *zap.Logger }

// New returns a Logger writing to log.
func New(log *zap.Logger) Logger { return Logger{log: log} }

// Printf writes one go-redis line at debug level, formatted only when
// debug is on.
func (l Logger) Printf(_ context.Context, format string, v ...any) {
	if ce := l.log.Check(zap.DebugLevel, Message); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}
