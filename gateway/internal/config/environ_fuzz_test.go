package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

// FuzzEnviron: any environment and flags parse without a panic, and a
// configuration that validates is handed to the workers (Environ) whole:
// a worker parsing it gets the same Config, which validates too. env is
// KEY=value lines, args flags one a line. The settings of files (the
// secrets' and NATS_CREDS) are left out: Load reads them, and Validate
// looks at the file system; load is Load without them.
func FuzzEnviron(f *testing.F) {
	for _, s := range [][2]string{
		{"GATEWAY_JWT_SECRET=" + goodSecret, ""},
		{"GATEWAY_DEV=1", ""},
		{"GATEWAY_DEV=1\nGATEWAY_ADDR=:8000", "-gateway-workers=3"},
		{"GATEWAY_JWT_SECRET=" + goodSecret + "\nGATEWAY_RATE_LIMIT=2.5\nGATEWAY_RATE_BURST=1e2\nGATEWAY_PING_RATE=0",
			"-gateway-allowed-origins= https://a.example ,https://b.example:8443,,\n-gateway-metrics-addr=off"},
		{"GATEWAY_JWT_SECRET=" + goodSecret + "\nHISTORY_WINDOW=90s\nGATEWAY_FANOUT_LINGER=1m30.5s\nGATEWAY_PRESENCE_TTL=0\nGATEWAY_WORKER_HANG_TIMEOUT=0",
			"-gateway-lifecycle-hooks=off\n-fanout-mode=per_user"},
		{"GATEWAY_JWT_SECRET=" + goodSecret + "\nGATEWAY_DEV_TOKEN_NETS=10.1.2.3/8, ::ffff:192.168.0.1/120\nGATEWAY_MAX_FRAME=1048576",
			"-gateway-jwt-previous-secret=" + strings.Repeat("p", 40)},
		{"GATEWAY_JWT_SECRET=" + goodSecret + "\nGATEWAY_RATE_LIMIT=NaN", ""},
		{"GATEWAY_JWT_SECRET=" + goodSecret + "\nGATEWAY_USER_RATE_WAIT=-0s\nGATEWAY_IP_UPGRADE_RATE=0x1p-2", "-log-level=debug"},
		{"NATS_URL=nats://u:p@a:4222, nats://b:4222\nREDIS_URL=rediss://:pw@r:6380/2\nGATEWAY_JWT_SECRET=" + goodSecret, ""},
		{"GATEWAY_WORKERS=0x10", "-gateway-dev\nstray"},
	} {
		f.Add(s[0], s[1])
	}
	skip := map[string]bool{"GATEWAY_JWT_SECRET_FILE": true, "GATEWAY_JWT_PREVIOUS_SECRET_FILE": true, "NATS_CREDS": true}
	f.Fuzz(func(t *testing.T, envText, argsText string) {
		vars := map[string]string{}
		for line := range strings.Lines(envText) {
			k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
			if !skip[k] {
				vars[k] = v
			}
		}
		var args []string
		for line := range strings.Lines(argsText) {
			line = strings.TrimSuffix(line, "\n")
			name, _, _ := strings.Cut(strings.TrimLeft(line, "-"), "=")
			if skip[strings.ToUpper(strings.ReplaceAll(name, "-", "_"))] {
				return
			}
			args = append(args, line)
		}
		c, err := load(args, vars)
		if err != nil || c.Validate() != nil {
			return
		}
		handed := map[string]string{}
		for _, kv := range c.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			handed[k] = v
		}
		// The supervisor's own hand-off (worker index and the like) is
		// not a setting; a worker gets it apart.
		for _, k := range []string{config.WorkerIndexEnv, config.MetricsDirEnv, config.GCTuneEnv, config.WatchdogBeatEnv, config.AnnounceFDEnv, config.OrphansFDEnv} {
			if v, ok := vars[k]; ok {
				handed[k] = v
			}
		}
		w, err := load(nil, handed)
		if err != nil {
			t.Fatalf("a worker cannot parse %q: %v", c.Environ(), err)
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("a worker refuses %q: %v", c.Environ(), err)
		}
		if !reflect.DeepEqual(w, c) {
			t.Fatalf("through Environ\n%+v\nbecame\n%+v", c, w)
		}
	})
}

// load is config.Load for settings that name no file: Parse, and dev
// mode's secret when none is set.
func load(args []string, vars map[string]string) (config.Config, error) {
	c, err := config.Parse(args, func(k string) string { return vars[k] })
	if err == nil && c.Dev && c.JWTSecret == "" {
		c.JWTSecret = config.DevSecret
	}
	return c, err
}
