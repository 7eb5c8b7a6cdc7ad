// Package logging builds the zap logger every switchboard process writes
// with, JSON lines on stderr, and names the log levels a configuration may
// choose.
package logging

import (
	"fmt"
	"os"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// levels are the values LOG_LEVEL may take, spelled as here.
var levels = [...]string{"debug", "info", "warn", "error"}

// ParseLevel returns the level named by s, one of debug, info, warn or
// error. It is stricter than zapcore.ParseLevel, which also takes upper
// case, the empty string and the levels that panic or exit.
func ParseLevel(s string) (zapcore.Level, error) {
	if !slices.Contains(levels[:], s) {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	var l zapcore.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// Option changes how New builds a logger.
type Option func(*zap.Config)

// Unsampled logs every line. By default, as in zap's production
// configuration, a message logged more than 100 times in a second is then
// written only every 100th time in that second.
func Unsampled() Option {
	return func(c *zap.Config) { c.Sampling = nil }
}

// New returns a logger writing JSON lines to stderr at level (see
// ParseLevel), with RFC 3339 timestamps under "ts".
func New(level string, opts ...Option) (*zap.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg.Build()
}

// RefusalMessage is the message of the line Refuse writes.
const RefusalMessage = "refusing to start"

// Refuse logs err, the reason a program will not start (a missing secret,
// a bad setting or flag), as one JSON line at error level on stderr, like
// every other line the program writes, under the logger name name. It
// needs no configured logger: the configured level may be the very
// setting refused. The caller then exits non-zero.
func Refuse(name string, err error) {
	// A refusal is no bug: no stack trace.
	log, lerr := New("info", Unsampled(), func(c *zap.Config) { c.DisableStacktrace = true })
	if lerr != nil { // stderr cannot be opened: nothing better is left
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", name, RefusalMessage, err)
		return
	}
	if name != "" {
		log = log.Named(name)
	}
	// The caller is the program's main, not this function.
	log.WithOptions(zap.AddCallerSkip(1)).Error(RefusalMessage, zap.Error(err))
	_ = log.Sync()
}
