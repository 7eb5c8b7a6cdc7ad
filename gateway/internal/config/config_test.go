package config_test

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

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
		{"Workers", c.Workers, runtime.NumCPU()},
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
		// Extensions.
		{"MaxConns", c.MaxConns, 50000},
		{"MaxConnsPerUser", c.MaxConnsPerUser, 64},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("Default().%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	// Everything but the secret is valid out of the box.
	c.JWTSecret = "s"
	if err := c.Validate(); err != nil {
		t.Errorf("Default() with a secret: Validate = %v", err)
	}
}

func TestLoadWithOnlySecretIsDefault(t *testing.T) {
	c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": "s"}))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.JWTSecret = "s"
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
		{"GATEWAY_SEND_QUEUE_BYTES", "4096", func(c config.Config) any { return c.SendQueueBytes }, 4096},
		{"GATEWAY_FANOUT_QUEUE", "1024", func(c config.Config) any { return c.FanoutQueue }, 1024},
		{"GATEWAY_WORKER_INFLIGHT", "100", func(c config.Config) any { return c.WorkerInFlight }, 100},
		{"GATEWAY_MAX_INFLIGHT", "2", func(c config.Config) any { return c.MaxInFlight }, 2},
		{"GATEWAY_SHUTDOWN_TIMEOUT", "3s", func(c config.Config) any { return c.ShutdownTimeout }, 3 * time.Second},
		{"GATEWAY_MAX_CONNS", "0", func(c config.Config) any { return c.MaxConns }, 0},
		{"GATEWAY_MAX_CONNS_PER_USER", "3", func(c config.Config) any { return c.MaxConnsPerUser }, 3},
		{"HISTORY_WINDOW", "0", func(c config.Config) any { return c.HistoryWindow }, time.Duration(0)},
		{"GATEWAY_MAX_REPLAY", "50", func(c config.Config) any { return c.MaxReplay }, 50},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": "s", tt.env: tt.value}))
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
		"GATEWAY_JWT_SECRET":      "from-env",
		"NATS_URL":                "nats://env:4222",
		"REDIS_URL":               "redis://env:6379/0",
		"GATEWAY_MAX_FRAME":       "2048",
		"GATEWAY_HANDLER_TIMEOUT": "1s",
		"GATEWAY_ALLOWED_ORIGINS": "https://env.example",
		"LOG_LEVEL":               "warn",
	})
	c, err := config.Load([]string{
		"-gateway-addr", ":2222",
		"-gateway-workers=5",
		"-gateway-jwt-secret", "from-flag",
		"-nats-url", "nats://flag:4222",
		"-redis-url", "redis://flag:6379/1",
		"-gateway-max-frame", "4096",
		"-gateway-handler-timeout", "2s",
		"-gateway-allowed-origins", "https://flag.example, https://two.example",
		"-gateway-dev",
		"-log-level", "error",
	}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Addr = ":2222"
	want.Workers = 5
	want.JWTSecret = "from-flag"
	want.NATSURL = "nats://flag:4222"
	want.RedisURL = "redis://flag:6379/1"
	want.MaxFrame = 4096
	want.HandlerTimeout = 2 * time.Second
	want.AllowedOrigins = []string{"https://flag.example", "https://two.example"}
	want.Dev = true
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
		c, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_ALLOWED_ORIGINS": tt.in}))
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if !reflect.DeepEqual(c.AllowedOrigins, tt.want) {
			t.Errorf("GATEWAY_ALLOWED_ORIGINS=%q: AllowedOrigins = %#v, want %#v", tt.in, c.AllowedOrigins, tt.want)
		}
	}
}

func TestDevMode(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantSecret string
	}{
		{"dev without secret gets DevSecret", map[string]string{"GATEWAY_DEV": "1"}, nil, config.DevSecret},
		{"dev flag without secret gets DevSecret", nil, []string{"-gateway-dev"}, config.DevSecret},
		{"dev keeps a configured secret", map[string]string{"GATEWAY_DEV": "1", "GATEWAY_JWT_SECRET": "mine"}, nil, "mine"},
		{"not dev keeps the secret", map[string]string{"GATEWAY_JWT_SECRET": "mine"}, nil, "mine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(tt.args, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.JWTSecret != tt.wantSecret {
				t.Errorf("JWTSecret = %q, want %q", c.JWTSecret, tt.wantSecret)
			}
		})
	}
	if _, err := config.Load(nil, env(map[string]string{"GATEWAY_DEV": "0"})); err == nil {
		t.Error("GATEWAY_DEV=0 without a secret: Load succeeded, want an error")
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
		{"workers 0", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_WORKERS": "0"}, nil, "GATEWAY_WORKERS"},
		{"workers negative", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_WORKERS": "-2"}, nil, "GATEWAY_WORKERS"},
		{"workers not a number", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_WORKERS": "many"}, nil, "GATEWAY_WORKERS"},
		{"workers flag 0", map[string]string{"GATEWAY_JWT_SECRET": "s"}, []string{"-gateway-workers", "0"}, "GATEWAY_WORKERS"},
		{"timeout without unit", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_HANDLER_TIMEOUT": "5"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"timeout garbage", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_HANDLER_TIMEOUT": "soon"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"timeout zero", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_HANDLER_TIMEOUT": "0s"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"timeout negative", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_HANDLER_TIMEOUT": "-1s"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"bad duration flag", map[string]string{"GATEWAY_JWT_SECRET": "s"}, []string{"-gateway-handler-timeout", "x"}, "gateway-handler-timeout"},
		{"shutdown timeout zero", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_SHUTDOWN_TIMEOUT": "0s"}, nil, "GATEWAY_SHUTDOWN_TIMEOUT"},
		{"negative max conns", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_MAX_CONNS": "-1"}, nil, "GATEWAY_MAX_CONNS"},
		{"negative max conns per user", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_MAX_CONNS_PER_USER": "-1"}, nil, "GATEWAY_MAX_CONNS_PER_USER"},
		{"history window too short", map[string]string{"GATEWAY_JWT_SECRET": "s", "HISTORY_WINDOW": "10ms"}, nil, "HISTORY_WINDOW"},
		{"no replay", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_MAX_REPLAY": "0"}, nil, "GATEWAY_MAX_REPLAY"},
		{"bad log level", map[string]string{"GATEWAY_JWT_SECRET": "s", "LOG_LEVEL": "verbose"}, nil, "LOG_LEVEL"},
		{"upper-case log level", map[string]string{"GATEWAY_JWT_SECRET": "s", "LOG_LEVEL": "INFO"}, nil, "LOG_LEVEL"},
		{"max frame tiny", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_MAX_FRAME": "10"}, nil, "GATEWAY_MAX_FRAME"},
		{"max frame not a number", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_MAX_FRAME": "64k"}, nil, "GATEWAY_MAX_FRAME"},
		{"send queue zero", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_SEND_QUEUE": "0"}, nil, "GATEWAY_SEND_QUEUE"},
		{"fanout queue too small", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_FANOUT_QUEUE": "8"}, nil, "GATEWAY_FANOUT_QUEUE"},
		{"worker in-flight negative", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_WORKER_INFLIGHT": "-1"}, nil, "GATEWAY_WORKER_INFLIGHT"},
		{"in-flight zero", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_MAX_INFLIGHT": "0"}, nil, "GATEWAY_MAX_INFLIGHT"},
		{"bad dev value", map[string]string{"GATEWAY_JWT_SECRET": "s", "GATEWAY_DEV": "yes please"}, nil, "GATEWAY_DEV"},
		{"unknown flag", map[string]string{"GATEWAY_JWT_SECRET": "s"}, []string{"-no-such-flag"}, "no-such-flag"},
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
	want, err := config.Load([]string{"-gateway-jwt-secret=from-flag", "-gateway-workers=3", "-gateway-allowed-origins=https://a.example,https://b.example", "-gateway-rate-limit=2.5"}, func(string) string { return "" })
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
		{"NATS_URL": "nats://a:4222, ::bad"},
		{"NATS_URL": "http://a:4222"}, // the rules handlers-svc applies too
		{"REDIS_URL": "mysql://a"},
	} {
		env["GATEWAY_JWT_SECRET"] = "s"
		if _, err := config.Load(nil, func(k string) string { return env[k] }); err == nil {
			t.Errorf("Load(%v) accepted it", env)
		}
	}
	for _, nats := range []string{"nats://a:4222, nats://b:4222", "nats://[::1]:4222,nats://[::1]:4223", "nats://u:p@a:4222"} {
		env := map[string]string{"GATEWAY_JWT_SECRET": "s", "NATS_URL": nats}
		if _, err := config.Load(nil, func(k string) string { return env[k] }); err != nil {
			t.Errorf("NATS_URL=%q refused: %v", nats, err)
		}
	}
}

// TestMetricsAddr: the supervisor's metrics address defaults to :7998, is
// set by env or flag, and "off" (or an empty flag) turns it off, which
// survives the trip to the workers.
func TestMetricsAddr(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, ":7998"},
		{"env", nil, map[string]string{"GATEWAY_METRICS_ADDR": "127.0.0.1:9191"}, "127.0.0.1:9191"},
		{"env off", nil, map[string]string{"GATEWAY_METRICS_ADDR": "off"}, ""},
		{"empty flag", []string{"-gateway-metrics-addr="}, nil, ""},
		{"flag wins", []string{"-gateway-metrics-addr=:9300"}, map[string]string{"GATEWAY_METRICS_ADDR": "off"}, ":9300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{"GATEWAY_JWT_SECRET": "s"}
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
	base := map[string]string{"GATEWAY_JWT_SECRET": "s"}
	c, err := config.Load(nil, env(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerIndex != -1 || c.MetricsDir != "" {
		t.Errorf("without the worker environment: WorkerIndex %d, MetricsDir %q; want -1 and \"\"", c.WorkerIndex, c.MetricsDir)
	}
	worker := map[string]string{"GATEWAY_JWT_SECRET": "s", config.WorkerIndexEnv: "2", config.MetricsDirEnv: "/run/x"}
	c, err = config.Load(nil, env(worker))
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerIndex != 2 || c.MetricsDir != "/run/x" {
		t.Errorf("WorkerIndex %d, MetricsDir %q; want 2 and /run/x", c.WorkerIndex, c.MetricsDir)
	}
	for _, kv := range c.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == config.WorkerIndexEnv || k == config.MetricsDirEnv {
			t.Errorf("Environ passes on %s", kv)
		}
	}
	for _, bad := range []string{"x", "-1"} {
		if _, err := config.Load(nil, env(map[string]string{"GATEWAY_JWT_SECRET": "s", config.WorkerIndexEnv: bad})); err == nil ||
			!strings.Contains(err.Error(), config.WorkerIndexEnv) {
			t.Errorf("%s=%q: err %v, want one naming it", config.WorkerIndexEnv, bad, err)
		}
	}
}
