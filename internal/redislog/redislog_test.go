package redislog_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/switchboard/switchboard/internal/redislog"
)

// go-redis takes it as its logger: this does not compile otherwise.
var _ = func() { redis.SetLogger(redislog.Logger{}) }

func TestPrintf(t *testing.T) {
	tests := []struct {
		name  string
		level zapcore.Level
		want  int // lines written
	}{
		{"debug on", zapcore.DebugLevel, 1},
		{"info", zapcore.InfoLevel, 0},
		{"error", zapcore.ErrorLevel, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(tt.level)
			l := redislog.New(zap.New(core))
			l.Printf(context.Background(), "redis: %s failed: %v", "dial", "connection refused")
			if logs.Len() != tt.want {
				t.Fatalf("%d lines at level %s, want %d", logs.Len(), tt.level, tt.want)
			}
			if tt.want == 0 {
				return
			}
			e := logs.All()[0]
			if e.Level != zapcore.DebugLevel || e.Message != redislog.Message ||
				e.ContextMap()["detail"] != "redis: dial failed: connection refused" {
				t.Fatalf("line %+v %v", e.Entry, e.ContextMap())
			}
		})
	}
}
