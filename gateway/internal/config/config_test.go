package config_test

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/config"
	"github.com/switchboard/switchboard/proto"
)

// goodSecret is a secret of the length production requires.
const goodSecret = "0123456789abcdef0123456789abcdef"

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestDefaultIsTheContract checks Default against docs/protocol.md section 1.
func TestDefaultIsTheContract(t *testing.T) {
	c := config.Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"Addr", c.Addr, ":7999"},
		{"MetricsAddr", c.MetricsAddr, "127.0.0.1:7998"},
		{"Workers", c.Workers, min(runtime.GOMAXPROCS(0), config.MaxWorkers)},
		{"JWTSecret", c.JWTSecret, ""},
		{"JWTAudience", c.JWTAudience, ""},
		{"NATSURL", c.NATSURL, "nats://127.0.0.1:4222"},
		{"RedisURL", c.RedisURL, "redis://127.0.0.1:6379/0"},
		{"MaxFrame", c.MaxFrame, int64(65536)},
		{"HandlerTimeout", c.HandlerTimeout, 5 * time.Second},
		{"AllowedOrigins", c.AllowedOrigins, []string(nil)},
		{"Dev", c.Dev, false},
		{"LogLevel", c.LogLevel, "info"},
		{"HistoryWindow", c.HistoryWindow, 120 * time.Second},
		{"MaxReplay", c.MaxReplay, 1000},
		{"FanoutMode", c.FanoutMode, "shared"},
		{"FanoutLinger", c.FanoutLinger, 5 * time.Second},
		{"PresenceTTL", c.PresenceTTL, 30 * time.Second},
		// Extensions.
		{"MaxConns", c.MaxConns, 50000},
		{"MaxConnsPerUser", c.MaxConnsPerUser, 64},
		{"PingRate", c.PingRate, 2.0},
		{"PingBurst", c.PingBurst, 10.0},
		{"PingInterval", c.PingInterval, 25 * time.Second},
		{"WorkerHangTimeout", c.WorkerHangTimeout, 10 * time.Second},
		{"LifecycleHooks", c.LifecycleHooks, true},
		// The documented minimums of GATEWAY_SEND_QUEUE and _BYTES.
		{"MinSendQueue", config.MinSendQueue, 4},
		{"MinSendQueueBytes", config.MinSendQueueBytes, 71060},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("Default().%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	// Everything but the secret is valid out of the box.
	c.JWTSecret = goodSecret
	if err := c.Validate(); err != nil {
		t.Errorf("Default() with a secret: Validate = %v", err)
	}
}

func TestLoadWithOnlySecretIsDefault(t *testing.T) {
	c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret}))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.JWTSecret = goodSecret
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load = %+v, want %+v", c, want)
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		env   string
		value string
		got   func(config.Config) any
		want  any
	}{
		{"GATEWAY_ADDR", "127.0.0.1:9000", func(c config.Config) any { return c.Addr }, "127.0.0.1:9000"},
		{"GATEWAY_WORKERS", "3", func(c config.Config) any { return c.Workers }, 3},
		{"GATEWAY_JWT_AUDIENCE", "sb", func(c config.Config) any { return c.JWTAudience }, "sb"},
		{"NATS_URL", "nats://n:1", func(c config.Config) any { return c.NATSURL }, "nats://n:1"},
		{"REDIS_URL", "redis://r:2/1", func(c config.Config) any { return c.RedisURL }, "redis://r:2/1"},
		{"GATEWAY_MAX_FRAME", "1024", func(c config.Config) any { return c.MaxFrame }, int64(1024)},
		{"GATEWAY_HANDLER_TIMEOUT", "250ms", func(c config.Config) any { return c.HandlerTimeout }, 250 * time.Millisecond},
		{"GATEWAY_DEV", "1", func(c config.Config) any { return c.Dev }, true},
		{"GATEWAY_DEV", "true", func(c config.Config) any { return c.Dev }, true},
		{"LOG_LEVEL", "debug", func(c config.Config) any { return c.LogLevel }, "debug"},
		{"GATEWAY_SEND_QUEUE", "7", func(c config.Config) any { return c.SendQueueLen }, 7},
		{"GATEWAY_SEND_QUEUE", "4", func(c config.Config) any { return c.SendQueueLen }, 4},
		{"GATEWAY_SEND_QUEUE_BYTES", "80000", func(c config.Config) any { return c.SendQueueBytes }, 80000},
		{"GATEWAY_SEND_QUEUE_BYTES", strconv.Itoa(config.MinSendQueueBytes), func(c config.Config) any { return c.SendQueueBytes }, config.MinSendQueueBytes},
		{"GATEWAY_FANOUT_QUEUE", "1024", func(c config.Config) any { return c.FanoutQueue }, 1024},
		{"GATEWAY_WORKER_INFLIGHT", "100", func(c config.Config) any { return c.WorkerInFlight }, 100},
		{"GATEWAY_MAX_INFLIGHT", "2", func(c config.Config) any { return c.MaxInFlight }, 2},
		{"GATEWAY_SHUTDOWN_TIMEOUT", "3s", func(c config.Config) any { return c.ShutdownTimeout }, 3 * time.Second},
		{"GATEWAY_WORKER_HANG_TIMEOUT", "0s", func(c config.Config) any { return c.WorkerHangTimeout }, time.Duration(0)},
		{"GATEWAY_WORKER_HANG_TIMEOUT", "1s", func(c config.Config) any { return c.WorkerHangTimeout }, time.Second},
		{"GATEWAY_MAX_CONNS", "0", func(c config.Config) any { return c.MaxConns }, 0},
		{"GATEWAY_MAX_CONNS_PER_USER", "3", func(c config.Config) any { return c.MaxConnsPerUser }, 3},
		{"HISTORY_WINDOW", "0", func(c config.Config) any { return c.HistoryWindow }, time.Duration(0)},
		{"GATEWAY_MAX_REPLAY", "50", func(c config.Config) any { return c.MaxReplay }, 50},
		{"FANOUT_MODE", "per_user", func(c config.Config) any { return c.Fanout() }, proto.FanoutPerUser},
		{"GATEWAY_FANOUT_LINGER", "0s", func(c config.Config) any { return c.FanoutLinger }, time.Duration(0)},
		{"GATEWAY_PRESENCE_TTL", "0", func(c config.Config) any { return c.PresenceTTL }, time.Duration(0)},
		{"GATEWAY_JWT_LEEWAY", "0", func(c config.Config) any { return c.JWTLeeway }, time.Duration(0)},
		{"GATEWAY_JWT_LEEWAY", "5s", func(c config.Config) any { return c.JWTLeeway }, 5 * time.Second},
		{"GATEWAY_PRESENCE_TTL", "3s", func(c config.Config) any { return c.PresenceTTL }, 3 * time.Second},
		{"GATEWAY_PING_RATE", "0", func(c config.Config) any { return c.PingRate }, 0.0},
		{"GATEWAY_PING_RATE", "0.5", func(c config.Config) any { return c.PingRate }, 0.5},
		{"GATEWAY_PING_BURST", "3", func(c config.Config) any { return c.PingBurst }, 3.0},
		{"GATEWAY_PING_INTERVAL", "500ms", func(c config.Config) any { return c.PingInterval }, 500 * time.Millisecond},
		{"GATEWAY_PING_INTERVAL", "30s", func(c config.Config) any { return c.PingInterval }, 30 * time.Second},
		{"GATEWAY_LIFECYCLE_HOOKS", "off", func(c config.Config) any { return c.LifecycleHooks }, false},
		{"GATEWAY_LIFECYCLE_HOOKS", "false", func(c config.Config) any { return c.LifecycleHooks }, false},
		{"GATEWAY_LIFECYCLE_HOOKS", "0", func(c config.Config) any { return c.LifecycleHooks }, false},
		{"GATEWAY_LIFECYCLE_HOOKS", "on", func(c config.Config) any { return c.LifecycleHooks }, true},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			e := map[string]string{"GATEWAY_JWT_SECRET": goodSecret, tt.env: tt.value}
			if tt.env == "GATEWAY_DEV" {
				delete(e, "GATEWAY_JWT_SECRET") // dev mode takes the dev secret only
			}
			c, err := config.Load(nil, env(e))
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s=%s: got %#v, want %#v", tt.env, tt.value, got, tt.want)
			}
		})
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	getenv := env(map[string]string{
		"GATEWAY_ADDR":            ":1111",
		"GATEWAY_WORKERS":         "2",
		"GATEWAY_JWT_SECRET":      "from-env-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		"NATS_URL":                "nats://env:4222",
		"REDIS_URL":               "redis://env:6379/0",
		"GATEWAY_MAX_FRAME":       "2048",
		"GATEWAY_HANDLER_TIMEOUT": "soon", // malformed, but the flag wins
		"GATEWAY_ALLOWED_ORIGINS": "https://env.example",
		"LOG_LEVEL":               "warn",
	})
	c, err := config.Load([]string{
		"-gateway-addr", ":2222",
		"-gateway-workers=5",
		"-gateway-jwt-secret", "from-flag-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		"-nats-url", "nats://flag:4222",
		"-redis-url", "redis://flag:6379/1",
		"-gateway-max-frame", "4096",
		"-gateway-handler-timeout", "2s",
		"-gateway-allowed-origins", "https://flag.example, https://two.example",
		"-log-level", "error",
	}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Addr = ":2222"
	want.Workers = 5
	want.JWTSecret = "from-flag-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	want.NATSURL = "nats://flag:4222"
	want.RedisURL = "redis://flag:6379/1"
	want.MaxFrame = 4096
	want.HandlerTimeout = 2 * time.Second
	want.AllowedOrigins = []string{"https://flag.example", "https://two.example"}
	want.LogLevel = "error"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", c, want)
	}
}

func TestFlagName(t *testing.T) {
	for env, want := range map[string]string{
		"GATEWAY_ADDR":            "gateway-addr",
		"NATS_URL":                "nats-url",
		"GATEWAY_ALLOWED_ORIGINS": "gateway-allowed-origins",
		"LOG_LEVEL":               "log-level",
	} {
		if got := config.FlagName(env); got != want {
			t.Errorf("FlagName(%s) = %s, want %s", env, got, want)
		}
	}
}

func TestAllowedOrigins(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"*", []string{"*"}},
		{"https://a.example", []string{"https://a.example"}},
		{"https://a.example,https://b.example", []string{"https://a.example", "https://b.example"}},
		{" https://a.example , https://b.example ", []string{"https://a.example", "https://b.example"}},
		{"https://a.example,,", []string{"https://a.example"}},
		{" , ", nil},
	}
	for _, tt := range tests {
		c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_ALLOWED_ORIGINS": tt.in}))
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if !reflect.DeepEqual(c.AllowedOrigins, tt.want) {
			t.Errorf("GATEWAY_ALLOWED_ORIGINS=%q: AllowedOrigins = %#v, want %#v", tt.in, c.AllowedOrigins, tt.want)
		}
	}
}

// TestAllowedOriginsRefusesNonOrigins: an entry no browser's Origin can
// equal (a final "/", a path, no scheme, user info, a query) refuses the
// start, naming the setting, rather than refuse every browser with 403
// forbidden_origin at run time.
func TestAllowedOriginsRefusesNonOrigins(t *testing.T) {
	for _, o := range []string{"https://app.example/", "https://app.example/chat", "app.example", "app.example:443",
		"https://u@app.example", "https://app.example?x=1", "https://app.example#", "https://a.example, https://b.example/"} {
		_, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_ALLOWED_ORIGINS": o}))
		if err == nil || !strings.Contains(err.Error(), "GATEWAY_ALLOWED_ORIGINS") {
			t.Errorf("GATEWAY_ALLOWED_ORIGINS=%q: Load error %v, want one naming the setting", o, err)
		}
	}
	for _, o := range []string{"*", "null", "http://localhost:3000", "https://app.example:8443", "HTTPS://App.Example", "http://[::1]:8080"} {
		if _, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_ALLOWED_ORIGINS": o})); err != nil {
			t.Errorf("GATEWAY_ALLOWED_ORIGINS=%q refused: %v", o, err)
		}
	}
}

func TestDevMode(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantAddr string
	}{
		{"dev without secret gets DevSecret", map[string]string{"GATEWAY_DEV": "1"}, nil, ":7999"},
		{"dev flag without secret gets DevSecret", nil, []string{"-gateway-dev"}, ":7999"},
		{"dev with the dev secret set", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET": config.DevSecret}, nil, ":7999"},
		{"dev keeps an address from the environment", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_ADDR": ":7999"}, nil, ":7999"},
		{"dev keeps an address from a flag", nil, []string{"-gateway-dev", "-gateway-addr=0.0.0.0:8000"}, "0.0.0.0:8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(tt.args, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.JWTSecret != config.DevSecret {
				t.Errorf("JWTSecret = %q, want the dev secret", c.JWTSecret)
			}
			if c.Addr != tt.wantAddr {
				t.Errorf("Addr = %q, want %q", c.Addr, tt.wantAddr)
			}
		})
	}
	if _, err := config.Load(nil, env(map[string]string{"GATEWAY_DEV": "0"})); err == nil {
		t.Error("GATEWAY_DEV=0 without a secret: Load succeeded, want an error")
	}
}

// TestDevSecretAttack: a real secret next to GATEWAY_DEV=1 would let
// /dev/token hand out production tokens for any user, so dev mode refuses
// every secret but the dev secret; outside dev mode the public dev secret
// and secrets too short to resist an offline guess are refused.
func TestDevSecretAttack(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // in the error
	}{
		{"dev with a real secret", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET": goodSecret}, "GATEWAY_DEV"},
		{"dev with a short secret", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET": "mine"}, "GATEWAY_DEV"},
		{"production with the dev secret", map[string]string{"GATEWAY_JWT_SECRET": config.DevSecret}, "dev secret"},
		{"production with a 31-byte secret", map[string]string{"GATEWAY_JWT_SECRET": goodSecret[:31]}, "at least 32 bytes"},
		{"production with a 1-byte secret", map[string]string{"GATEWAY_JWT_SECRET": "s"}, "at least 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(nil, env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want an error with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.env["GATEWAY_JWT_SECRET"]) && tt.env["GATEWAY_JWT_SECRET"] != "s" {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret}))
	if err != nil || c.JWTSecret != goodSecret {
		t.Fatalf("a 32-byte secret: %v", err)
	}
}

// TestSecretFile: GATEWAY_JWT_SECRET_FILE is read (without its final line
// break), setting it next to GATEWAY_JWT_SECRET is an error, and the
// workers are handed the file rather than the secret, so the secret is in
// no process's environment.
func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte(goodSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET_FILE": path}))
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTSecret != goodSecret {
		t.Fatalf("JWTSecret = %q, want the file's content without its line break", c.JWTSecret)
	}
	back := map[string]string{}
	for _, kv := range c.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		back[k] = v
		if strings.Contains(v, goodSecret) {
			t.Errorf("Environ hands the workers the secret: %s", k)
		}
	}
	again, err := config.Load(nil, env(back))
	if err != nil || again.JWTSecret != goodSecret {
		t.Fatalf("a worker loading Environ: secret %q, %v", again.JWTSecret, err)
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]map[string]string{
		"both set":        {"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_SECRET_FILE": path},
		"missing file":    {"GATEWAY_JWT_SECRET_FILE": filepath.Join(dir, "nope")},
		"empty file":      {"GATEWAY_JWT_SECRET_FILE": empty},
		"dev with a file": {"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET_FILE": path},
	} {
		if _, err := config.Load(nil, env(e)); err == nil {
			t.Errorf("%s: Load succeeded, want an error", name)
		}
	}
}

// TestDevTokenNets: GATEWAY_DEV_TOKEN_NETS is a list of networks.
func TestDevTokenNets(t *testing.T) {
	c, err := config.Load(nil, env(map[string]string{"GATEWAY_DEV": "1", "GATEWAY_DEV_TOKEN_NETS": "172.16.0.0/12, 10.1.2.3/8"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("10.0.0.0/8")}
	if !reflect.DeepEqual(c.DevTokenNets, want) {
		t.Errorf("DevTokenNets = %v, want %v", c.DevTokenNets, want)
	}
	if _, err := config.Load(nil, env(map[string]string{"GATEWAY_DEV": "1", "GATEWAY_DEV_TOKEN_NETS": "172.16.0.0"})); err == nil {
		t.Error("a network without its length was accepted")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{"no secret outside dev", map[string]string{}, nil, "GATEWAY_JWT_SECRET"},
		{"workers 0", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKERS": "0"}, nil, "GATEWAY_WORKERS"},
		{"workers negative", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKERS": "-2"}, nil, "GATEWAY_WORKERS"},
		{"workers not a number", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKERS": "many"}, nil, "GATEWAY_WORKERS"},
		{"workers flag 0", map[string]string{"GATEWAY_JWT_SECRET": goodSecret}, []string{"-gateway-workers", "0"}, "GATEWAY_WORKERS"},
		{"timeout without unit", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_HANDLER_TIMEOUT": "5"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"timeout garbage", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_HANDLER_TIMEOUT": "soon"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"timeout zero", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_HANDLER_TIMEOUT": "0s"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"timeout negative", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_HANDLER_TIMEOUT": "-1s"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"bad duration flag", map[string]string{"GATEWAY_JWT_SECRET": goodSecret}, []string{"-gateway-handler-timeout", "x"}, "gateway-handler-timeout"},
		{"shutdown timeout zero", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_SHUTDOWN_TIMEOUT": "0s"}, nil, "GATEWAY_SHUTDOWN_TIMEOUT"},
		{"hang timeout negative", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKER_HANG_TIMEOUT": "-1s"}, nil, "GATEWAY_WORKER_HANG_TIMEOUT"},
		{"hang timeout too short", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKER_HANG_TIMEOUT": "500ms"}, nil, "GATEWAY_WORKER_HANG_TIMEOUT"},
		{"hang timeout too long", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKER_HANG_TIMEOUT": "1h"}, nil, "GATEWAY_WORKER_HANG_TIMEOUT"},
		{"negative max conns", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_MAX_CONNS": "-1"}, nil, "GATEWAY_MAX_CONNS"},
		{"negative max conns per user", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_MAX_CONNS_PER_USER": "-1"}, nil, "GATEWAY_MAX_CONNS_PER_USER"},
		{"history window too short", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "HISTORY_WINDOW": "10ms"}, nil, "HISTORY_WINDOW"},
		{"no replay", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_MAX_REPLAY": "0"}, nil, "GATEWAY_MAX_REPLAY"},
		{"unknown fan-out mode", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "FANOUT_MODE": "perUser"}, nil, "FANOUT_MODE"},
		{"nats port out of range", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "NATS_URL": "nats://127.0.0.1:99999"}, nil, "NATS_URL"},
		{"redis port out of range", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "REDIS_URL": "redis://127.0.0.1:99999/0"}, nil, "REDIS_URL"},
		{"negative linger", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_FANOUT_LINGER": "-1s"}, nil, "GATEWAY_FANOUT_LINGER"},
		{"linger too long", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_FANOUT_LINGER": "1h"}, nil, "GATEWAY_FANOUT_LINGER"},
		{"negative JWT leeway", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_LEEWAY": "-1s"}, nil, "GATEWAY_JWT_LEEWAY"},
		{"JWT leeway too long", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_LEEWAY": "1h"}, nil, "GATEWAY_JWT_LEEWAY"},
		{"presence lease too short", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PRESENCE_TTL": "2s"}, nil, "GATEWAY_PRESENCE_TTL"},
		{"negative presence lease", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PRESENCE_TTL": "-1s"}, nil, "GATEWAY_PRESENCE_TTL"},
		{"presence lease too long", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PRESENCE_TTL": "1h"}, nil, "GATEWAY_PRESENCE_TTL"},
		{"bad log level", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "LOG_LEVEL": "verbose"}, nil, "LOG_LEVEL"},
		{"upper-case log level", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "LOG_LEVEL": "INFO"}, nil, "LOG_LEVEL"},
		{"max frame tiny", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_MAX_FRAME": "10"}, nil, "GATEWAY_MAX_FRAME"},
		{"max frame not a number", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_MAX_FRAME": "64k"}, nil, "GATEWAY_MAX_FRAME"},
		{"send queue zero", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_SEND_QUEUE": "0"}, nil, "GATEWAY_SEND_QUEUE"},
		// An audience no token carries: every client would get 401.
		{"audience of spaces", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_AUDIENCE": " "}, nil, `GATEWAY_JWT_AUDIENCE must not start or end with white space, got " "`},
		{"audience with a trailing space", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_AUDIENCE": "chat "}, nil, "GATEWAY_JWT_AUDIENCE"},
		// Three frames cannot hold a part of a replay, a resync, a ping and a heartbeat.
		{"send queue three frames", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_SEND_QUEUE": "3"}, nil, "GATEWAY_SEND_QUEUE must be at least 4"},
		// A queue smaller than one event closes its socket at every replay
		// of that event: the minimum is named.
		{"send queue bytes under one event", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_SEND_QUEUE_BYTES": "4096"}, nil,
			"GATEWAY_SEND_QUEUE_BYTES must be at least " + strconv.Itoa(config.MinSendQueueBytes)},
		{"send queue bytes one short", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_SEND_QUEUE_BYTES": strconv.Itoa(config.MinSendQueueBytes - 1)}, nil,
			"GATEWAY_SEND_QUEUE_BYTES must be at least " + strconv.Itoa(config.MinSendQueueBytes)},
		{"fanout queue too small", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_FANOUT_QUEUE": "8"}, nil, "GATEWAY_FANOUT_QUEUE"},
		{"worker in-flight negative", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKER_INFLIGHT": "-1"}, nil, "GATEWAY_WORKER_INFLIGHT"},
		{"in-flight zero", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_MAX_INFLIGHT": "0"}, nil, "GATEWAY_MAX_INFLIGHT"},
		{"bad dev value", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_DEV": "yes please"}, nil, "GATEWAY_DEV"},
		{"negative ping rate", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PING_RATE": "-1"}, nil, "GATEWAY_PING_RATE"},
		{"ping burst under 1", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PING_BURST": "0.5"}, nil, "GATEWAY_PING_BURST"},
		{"ping interval too short", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PING_INTERVAL": "10ms"}, nil, "GATEWAY_PING_INTERVAL"},
		{"ping interval over the pong wait's half", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PING_INTERVAL": "31s"}, nil, "GATEWAY_PING_INTERVAL"},
		{"ping interval zero", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_PING_INTERVAL": "0"}, nil, "GATEWAY_PING_INTERVAL"},
		{"unknown flag", map[string]string{"GATEWAY_JWT_SECRET": goodSecret}, []string{"-no-such-flag"}, "no-such-flag"},
		// Refused at start, naming the setting, rather than failing to
		// listen later with only the address in the message.
		{"addr without a port", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_ADDR": "7999"}, nil, "GATEWAY_ADDR"},
		{"addr with a port that is none", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_ADDR": "127.0.0.1:abc"}, nil, "GATEWAY_ADDR"},
		{"metrics addr without a port", map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_METRICS_ADDR": "localhost"}, nil, "GATEWAY_METRICS_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(tt.args, env(tt.env))
			if err == nil {
				t.Fatalf("Load succeeded, want an error naming %s", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %q, want it to name %s", err, tt.want)
			}
		})
	}
}

// TestUnparsableValueSaysWhatIsWanted: a value that does not parse is
// refused with the setting, the value and what was wanted, not Go's
// parser error ("strconv.Atoi: parsing \"abc\": invalid syntax").
func TestUnparsableValueSaysWhatIsWanted(t *testing.T) {
	tests := []struct {
		env, value string
		args       []string
		want       string
	}{
		{"GATEWAY_WORKERS", "abc", nil, `GATEWAY_WORKERS="abc": want a whole number`},
		{"GATEWAY_WORKER_INFLIGHT_BYTES", "64MiB", nil, `GATEWAY_WORKER_INFLIGHT_BYTES="64MiB": want a whole number`},
		{"GATEWAY_RATE_LIMIT", "fast", nil, `GATEWAY_RATE_LIMIT="fast": want a number`},
		{"GATEWAY_DEV", "yes", nil, `GATEWAY_DEV="yes": want 1 or 0 (true or false)`},
		{"GATEWAY_LIFECYCLE_HOOKS", "no", nil, `GATEWAY_LIFECYCLE_HOOKS="no": want on or off (1 or 0, true or false)`},
		{"GATEWAY_HANDLER_TIMEOUT", "5", nil, `GATEWAY_HANDLER_TIMEOUT="5": want a duration such as 5s`},
		{"", "", []string{"-gateway-workers=abc"}, `invalid value "abc" for flag -gateway-workers: want a whole number`},
	}
	for _, tt := range tests {
		e := map[string]string{"GATEWAY_JWT_SECRET": goodSecret}
		if tt.env != "" {
			e[tt.env] = tt.value
		}
		_, err := config.Load(tt.args, env(e))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Load with %s=%q %v: error %v, want %q", tt.env, tt.value, tt.args, err, tt.want)
		}
	}
}

// TestGroupedLimitsSayTheirValues: a check that covers several settings
// says the value of each, so the one that is wrong can be told apart:
// GATEWAY_RATE_BURST=0 was refused as "GATEWAY_RATE_LIMIT and
// GATEWAY_RATE_CLOSE_AFTER must not be negative, and GATEWAY_RATE_BURST
// must be at least 1", with nothing set wrongly named.
func TestGroupedLimitsSayTheirValues(t *testing.T) {
	tests := []struct {
		env, value, want string
	}{
		{"GATEWAY_RATE_BURST", "0", "got 50, 50 and 0"},
		{"GATEWAY_RATE_CLOSE_AFTER", "-1", "got 50, -1 and 100"},
		{"GATEWAY_PING_RATE", "-2", "got -2 and 10"},
		{"GATEWAY_USER_RATE_BURST", "0", "got 50 and 0"},
		{"GATEWAY_MAX_CONNS_PER_USER", "-1", "got 50000 and -1"},
		{"GATEWAY_IP_UPGRADE_BURST", "0", "got 64, 50 and 0"},
	}
	for _, tt := range tests {
		_, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, tt.env: tt.value}))
		if err == nil || !strings.Contains(err.Error(), tt.env) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load with %s=%s: error %v, want it to name %s and say %q", tt.env, tt.value, err, tt.env, tt.want)
		}
	}
}

// TestWorkersBounded: GATEWAY_WORKERS above MaxWorkers is refused, naming
// the setting and the bound, instead of starting that many processes;
// MaxWorkers itself is accepted.
func TestWorkersBounded(t *testing.T) {
	for _, tt := range []struct {
		value string
		ok    bool
	}{
		{strconv.Itoa(config.MaxWorkers), true},
		{strconv.Itoa(config.MaxWorkers + 1), false},
		{"100000", false},
		{"0", false},
	} {
		_, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_WORKERS": tt.value}))
		switch {
		case tt.ok && err != nil:
			t.Errorf("GATEWAY_WORKERS=%s refused: %v", tt.value, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "GATEWAY_WORKERS must be from 1 to 1024, got "+tt.value)):
			t.Errorf("GATEWAY_WORKERS=%s: error %v, want it to name GATEWAY_WORKERS, its bounds and the value", tt.value, err)
		}
	}
}

// TestValidateJoinsErrors checks that every problem is reported at once.
func TestValidateJoinsErrors(t *testing.T) {
	c := config.Default()
	c.Workers = 0
	c.HandlerTimeout = 0
	c.LogLevel = "loud"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, want := range []string{"GATEWAY_JWT_SECRET", "GATEWAY_WORKERS", "GATEWAY_HANDLER_TIMEOUT", "LOG_LEVEL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q does not name %s", err, want)
		}
	}
}

// TestEnvironRoundTrip: what the supervisor hands its workers loads back
// into the same Config, flags included.
func TestEnvironRoundTrip(t *testing.T) {
	want, err := config.Load([]string{"-gateway-jwt-secret=from-flag-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "-gateway-workers=3", "-gateway-allowed-origins=https://a.example,https://b.example", "-gateway-rate-limit=2.5"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range want.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	got, err := config.Load(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip through Environ:\n%+v\nwant\n%+v", got, want)
	}
}

// TestValidateRefusesNaNAndLists: NaN or infinite rates are refused, and a
// comma-separated list of NATS servers is accepted.
func TestValidateRefusesNaNAndLists(t *testing.T) {
	for _, env := range []map[string]string{
		{"GATEWAY_RATE_LIMIT": "NaN"},
		{"GATEWAY_RATE_LIMIT": "+Inf"},
		{"GATEWAY_RATE_BURST": "NaN"},
		{"GATEWAY_RATE_BURST": "Inf"},
		{"GATEWAY_PING_RATE": "NaN"},
		{"GATEWAY_PING_RATE": "Inf"},
		{"GATEWAY_PING_BURST": "NaN"},
		{"NATS_URL": "nats://a:4222, ::bad"},
		{"NATS_URL": "http://a:4222"}, // the rules handlers-svc applies too
		{"REDIS_URL": "mysql://a"},
	} {
		env["GATEWAY_JWT_SECRET"] = goodSecret
		if _, err := config.Load(nil, func(k string) string { return env[k] }); err == nil {
			t.Errorf("Load(%v) accepted it", env)
		}
	}
	for _, nats := range []string{"nats://a:4222, nats://b:4222", "nats://[::1]:4222,nats://[::1]:4223", "nats://u:p@a:4222"} {
		env := map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "NATS_URL": nats}
		if _, err := config.Load(nil, func(k string) string { return env[k] }); err != nil {
			t.Errorf("NATS_URL=%q refused: %v", nats, err)
		}
	}
}

// TestMetricsAddr: the supervisor's metrics address defaults to 127.0.0.1:7998, is
// set by env or flag, and "off" (or an empty flag) turns it off, which
// survives the trip to the workers.
func TestMetricsAddr(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, "127.0.0.1:7998"},
		{"env", nil, map[string]string{"GATEWAY_METRICS_ADDR": "127.0.0.1:9191"}, "127.0.0.1:9191"},
		{"env off", nil, map[string]string{"GATEWAY_METRICS_ADDR": "off"}, ""},
		{"empty flag", []string{"-gateway-metrics-addr="}, nil, ""},
		{"flag wins", []string{"-gateway-metrics-addr=:9300"}, map[string]string{"GATEWAY_METRICS_ADDR": "off"}, ":9300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{"GATEWAY_JWT_SECRET": goodSecret}
			for k, v := range tt.env {
				e[k] = v
			}
			c, err := config.Load(tt.args, env(e))
			if err != nil {
				t.Fatal(err)
			}
			if c.MetricsAddr != tt.want {
				t.Fatalf("MetricsAddr = %q, want %q", c.MetricsAddr, tt.want)
			}
			back := map[string]string{}
			for _, kv := range c.Environ() {
				k, v, _ := strings.Cut(kv, "=")
				back[k] = v
			}
			again, err := config.Load(nil, env(back))
			if err != nil {
				t.Fatal(err)
			}
			if again.MetricsAddr != tt.want {
				t.Errorf("through Environ: MetricsAddr = %q, want %q", again.MetricsAddr, tt.want)
			}
		})
	}
}

// TestWorkerEnvironment: the supervisor's hand-off to its workers is read
// here like every setting, is not a setting (no flag, not in Environ, so a
// worker never passes it on), and a bad worker number is refused.
func TestWorkerEnvironment(t *testing.T) {
	base := map[string]string{"GATEWAY_JWT_SECRET": goodSecret}
	c, err := config.Load(nil, env(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerIndex != -1 || c.MetricsDir != "" {
		t.Errorf("without the worker environment: WorkerIndex %d, MetricsDir %q; want -1 and \"\"", c.WorkerIndex, c.MetricsDir)
	}
	if c.WatchdogBeat != 0 {
		t.Errorf("without the worker environment: WatchdogBeat %s, want 0", c.WatchdogBeat)
	}
	worker := map[string]string{"GATEWAY_JWT_SECRET": goodSecret, config.WorkerIndexEnv: "2", config.MetricsDirEnv: "/run/x",
		config.WatchdogBeatEnv: "250ms"}
	c, err = config.Load(nil, env(worker))
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerIndex != 2 || c.MetricsDir != "/run/x" || c.WatchdogBeat != 250*time.Millisecond {
		t.Errorf("WorkerIndex %d, MetricsDir %q, WatchdogBeat %s; want 2, /run/x and 250ms", c.WorkerIndex, c.MetricsDir, c.WatchdogBeat)
	}
	for _, kv := range c.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == config.WorkerIndexEnv || k == config.MetricsDirEnv || k == config.WatchdogBeatEnv {
			t.Errorf("Environ passes on %s", kv)
		}
	}
	for _, bad := range []struct{ env, value string }{
		{config.WorkerIndexEnv, "x"}, {config.WorkerIndexEnv, "-1"},
		{config.WatchdogBeatEnv, "1"}, {config.WatchdogBeatEnv, "0s"}, {config.WatchdogBeatEnv, "-1s"},
	} {
		if _, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, bad.env: bad.value})); err == nil ||
			!strings.Contains(err.Error(), bad.env) {
			t.Errorf("%s=%q: err %v, want one naming it", bad.env, bad.value, err)
		}
	}
}

// previousSecret is a second secret of the length production requires.
const previousSecret = "fedcba9876543210fedcba9876543210"

// TestPreviousSecret: GATEWAY_JWT_PREVIOUS_SECRET, or its _FILE, is read
// as the current secret is (a file's final line break dropped, both set an
// error), handed to the workers as the file rather than the secret, and
// held to the same rules: 32 bytes at least, not the dev secret, and none
// at all in dev mode. The refusals never show it.
func TestPreviousSecret(t *testing.T) {
	c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_PREVIOUS_SECRET": previousSecret}))
	if err != nil || c.JWTSecret != goodSecret || c.JWTPreviousSecret != previousSecret {
		t.Fatalf("Load = %q, %q, %v; want both secrets", c.JWTSecret, c.JWTPreviousSecret, err)
	}
	c, err = config.Load([]string{"-gateway-jwt-previous-secret=" + previousSecret}, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret}))
	if err != nil || c.JWTPreviousSecret != previousSecret {
		t.Fatalf("flag: JWTPreviousSecret %q, %v", c.JWTPreviousSecret, err)
	}
	c, err = config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret}))
	if err != nil || c.JWTPreviousSecret != "" {
		t.Fatalf("unset: JWTPreviousSecret %q, %v; want none", c.JWTPreviousSecret, err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "previous")
	if err := os.WriteFile(path, []byte(previousSecret+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_PREVIOUS_SECRET_FILE": path}))
	if err != nil || c.JWTPreviousSecret != previousSecret {
		t.Fatalf("file: JWTPreviousSecret %q, %v; want the file's content without its line break", c.JWTPreviousSecret, err)
	}
	back := map[string]string{}
	for _, kv := range c.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		back[k] = v
		if strings.Contains(v, previousSecret) {
			t.Errorf("Environ hands the workers the previous secret: %s", k)
		}
	}
	again, err := config.Load(nil, env(back))
	if err != nil || again.JWTPreviousSecret != previousSecret || again.JWTSecret != goodSecret {
		t.Fatalf("a worker loading Environ: %q, %q, %v", again.JWTSecret, again.JWTPreviousSecret, err)
	}
	// Given in the environment, it goes to the workers as the current
	// secret does.
	c, err = config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": goodSecret, "GATEWAY_JWT_PREVIOUS_SECRET": previousSecret}))
	if err != nil || !slices.Contains(c.Environ(), "GATEWAY_JWT_PREVIOUS_SECRET="+previousSecret) {
		t.Fatalf("Environ without a file: %v, %v", c.Environ(), err)
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want string // in the error
	}{
		{"too short", map[string]string{"GATEWAY_JWT_PREVIOUS_SECRET": previousSecret[:31]}, "GATEWAY_JWT_PREVIOUS_SECRET must be at least 32 bytes"},
		{"the dev secret", map[string]string{"GATEWAY_JWT_PREVIOUS_SECRET": config.DevSecret}, "GATEWAY_JWT_PREVIOUS_SECRET is the public dev secret"},
		{"both variable and file", map[string]string{"GATEWAY_JWT_PREVIOUS_SECRET": previousSecret, "GATEWAY_JWT_PREVIOUS_SECRET_FILE": path},
			"GATEWAY_JWT_PREVIOUS_SECRET and GATEWAY_JWT_PREVIOUS_SECRET_FILE are both set"},
		{"missing file", map[string]string{"GATEWAY_JWT_PREVIOUS_SECRET_FILE": filepath.Join(dir, "nope")}, "GATEWAY_JWT_PREVIOUS_SECRET_FILE"},
		{"empty file", map[string]string{"GATEWAY_JWT_PREVIOUS_SECRET_FILE": empty}, "is empty"},
		{"dev mode", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET": "", "GATEWAY_JWT_PREVIOUS_SECRET": previousSecret}, "GATEWAY_DEV"},
		{"dev mode, the dev secret", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET": "", "GATEWAY_JWT_PREVIOUS_SECRET": config.DevSecret}, "GATEWAY_DEV"},
		{"dev mode, a file", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET": "", "GATEWAY_JWT_PREVIOUS_SECRET_FILE": path}, "GATEWAY_DEV"},
		{"the same as the current one", map[string]string{"GATEWAY_JWT_PREVIOUS_SECRET": goodSecret}, "GATEWAY_JWT_PREVIOUS_SECRET is the same as GATEWAY_JWT_SECRET"},
		{"without a current secret", map[string]string{"GATEWAY_JWT_SECRET": "", "GATEWAY_JWT_PREVIOUS_SECRET": previousSecret}, "GATEWAY_JWT_SECRET (or GATEWAY_JWT_SECRET_FILE) is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{"GATEWAY_JWT_SECRET": goodSecret}
			maps.Copy(e, tt.env)
			_, err := config.Load(nil, env(e))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want an error with %q", err, tt.want)
			}
			if p := e["GATEWAY_JWT_PREVIOUS_SECRET"]; len(p) > 1 && strings.Contains(err.Error(), p) {
				t.Errorf("the error shows the previous secret: %v", err)
			}
		})
	}
}
