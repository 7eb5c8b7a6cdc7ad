package config_test

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/gateway/internal/fanout"
)

// TestStrayArgumentRefused shows that Parse never looks at fs.Args(): the
// flag package stops at the first argument that is not a flag, and the
// gateway drops it, and every flag after it, without a word. A boolean
// setting given its value as a separate word, as every other setting's
// flag takes it, is the common way to get there: "-gateway-lifecycle-hooks
// off" turns the hooks ON (the bool flag takes no value, "off" is a stray
// argument), and "-gateway-dev false" turns dev mode ON. handlers-svc
// refuses the same ("unexpected arguments", exit 2: its refuse_test.go).
func TestStrayArgumentRefused(t *testing.T) {
	getenv := env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret})
	tests := []struct {
		name string
		args []string
		bad  func(config.Config) bool // the setting the operator asked for is not the one loaded
	}{
		{"hooks off as two words", []string{"-gateway-lifecycle-hooks", "off"},
			func(c config.Config) bool { return c.LifecycleHooks }},
		{"flags after a stray word", []string{"-gateway-lifecycle-hooks", "off", "-gateway-max-conns", "100"},
			func(c config.Config) bool { return c.LifecycleHooks || c.MaxConns != 100 }},
		{"a subcommand that does not exist", []string{"serve", "-gateway-max-conns", "100"},
			func(c config.Config) bool { return c.MaxConns != 100 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(tt.args, getenv)
			if err == nil {
				t.Errorf("Load(%q) = nil error with LifecycleHooks %t, MaxConns %d (stray argument dropped: wrong setting %t); want a refusal naming the argument",
					tt.args, c.LifecycleHooks, c.MaxConns, tt.bad(c))
			}
		})
	}
	// Dev mode from "-gateway-dev false" (no secret set: the operator
	// expected the refusal for a missing secret, and gets a gateway
	// running on the public dev secret).
	c, err := config.Load([]string{"-gateway-dev", "false"}, env(nil))
	if err == nil && c.Dev {
		t.Errorf("Load(-gateway-dev false) started dev mode (secret %q); want a refusal", c.JWTSecret)
	}
}

// TestFanoutQueueThatCannotBeMade shows that GATEWAY_FANOUT_QUEUE has a
// floor (64) but no ceiling, unlike GATEWAY_WORKERS, which is bounded so
// that a typo is refused: each worker makes a channel of that many strings
// (16 bytes each) at start. A value past the runtime's largest allocation
// passes Load and then panics every worker in fanout.New, which the
// supervisor restarts for ever (a plain-text panic among the JSON lines);
// one a few zeros smaller (3276800000: 52 GB) passes too and runs each
// worker out of memory instead, which a test cannot show safely.
func TestFanoutQueueThatCannotBeMade(t *testing.T) {
	const queue = "20000000000000" // 3.2e14 bytes of channel: beyond the runtime's limit
	c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_FANOUT_QUEUE": queue}))
	if err != nil {
		if !strings.Contains(err.Error(), "GATEWAY_FANOUT_QUEUE") {
			t.Fatalf("Load refused it without naming GATEWAY_FANOUT_QUEUE: %v", err)
		}
		return // refused at start: fine
	}
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("Load accepted GATEWAY_FANOUT_QUEUE=%s, and the worker's fanout.New panics with it: %v", queue, p)
		}
	}()
	fanout.New(nil, nil, c.FanoutQueue, zap.NewNop())
}
