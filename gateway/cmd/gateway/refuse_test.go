package main

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/cmdtest"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestRefusalIsAJSONLine runs the real binary with what it must refuse: a
// missing, public or short secret, a bad setting, a bad flag. Each time it exits 1 and
// every line it wrote to stderr is JSON, one of them the refusal naming
// what is wrong.
func TestRefusalIsAJSONLine(t *testing.T) {
	const secret = "refuse-test-secret-of-32-bytes-or-more"
	bin := cmdtest.Build(t, ".")
	tests := []struct {
		name string
		env  []string
		args []string
		want string // in the refusal's error
	}{
		{"missing secret", nil, nil, "GATEWAY_JWT_SECRET"},
		{"bad setting", []string{"GATEWAY_JWT_SECRET=" + secret, "GATEWAY_WORKERS=0"}, nil, "GATEWAY_WORKERS"},
		{"setting that does not parse", []string{"GATEWAY_JWT_SECRET=" + secret, "GATEWAY_HANDLER_TIMEOUT=soon"}, nil, "GATEWAY_HANDLER_TIMEOUT"},
		{"bad NATS URL", []string{"GATEWAY_JWT_SECRET=" + secret, "NATS_URL=http://u:s3cr3t@h:4222"}, nil, "NATS_URL"},
		{"bad log level", []string{"GATEWAY_JWT_SECRET=" + secret, "LOG_LEVEL=loud"}, nil, "LOG_LEVEL"},
		{"bad flag", []string{"GATEWAY_JWT_SECRET=" + secret}, []string{"-no-such-flag"}, "no-such-flag"},
		{"unknown fan-out mode", []string{"GATEWAY_JWT_SECRET=" + secret, "FANOUT_MODE=sharded"}, nil, "FANOUT_MODE"},
		{"fan-out linger out of range", []string{"GATEWAY_JWT_SECRET=" + secret, "GATEWAY_FANOUT_LINGER=-1s"}, nil, "GATEWAY_FANOUT_LINGER"},
		{"client address without a port", []string{"GATEWAY_JWT_SECRET=" + secret, "GATEWAY_ADDR=nonsense"}, nil, "GATEWAY_ADDR"},
		// The dev-secret attack: dev mode next to a real secret would let
		// /dev/token mint production tokens; production with the public
		// dev secret, or a short one, accepts tokens anyone can forge.
		{"dev mode with a real secret", []string{"GATEWAY_DEV=1", "GATEWAY_JWT_SECRET=" + secret}, nil, "GATEWAY_DEV"},
		{"the dev secret outside dev mode", []string{"GATEWAY_JWT_SECRET=switchboard-dev-secret-do-not-use-in-production"}, nil, "dev secret"},
		{"a short secret", []string{"GATEWAY_JWT_SECRET=s3cr3t"}, nil, "at least 32 bytes"},
		{"secret and secret file", []string{"GATEWAY_JWT_SECRET=" + secret, "GATEWAY_JWT_SECRET_FILE=/dev/null"}, nil, "GATEWAY_JWT_SECRET_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Only the case's settings, and no admin port to bind were it
			// to start after all.
			r := cmdtest.Run(t, bin, append([]string{"GATEWAY_METRICS_ADDR=off"}, tt.env...), tt.args...)
			cmdtest.Refusal{Code: 1, Logger: "gateway", Names: tt.want, Hides: "s3cr3t"}.Check(t, r)
		})
	}
}

// TestNeverExpiringTokenAttack: "gateway token" will not mint a token that
// never expires (the gateway would refuse it, and it could never be
// revoked); a positive -ttl mints one.
func TestNeverExpiringTokenAttack(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	env := []string{"GATEWAY_JWT_SECRET=token-test-secret-of-32-bytes-or-more"}
	for _, ttl := range []string{"0", "0s", "-1h"} {
		r := cmdtest.Run(t, bin, env, "token", "-ttl", ttl, "alice")
		if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "-ttl must be positive") {
			t.Errorf("token -ttl %s: exit %d, stdout %q, stderr %q; want a refusal", ttl, r.Code, r.Stdout, r.Stderr)
		}
	}
	if r := cmdtest.Run(t, bin, env, "token", "-ttl", "1h", "alice"); r.Code != 0 || strings.Count(r.Stdout, ".") != 2 {
		t.Errorf("token -ttl 1h: exit %d, stdout %q, stderr %q; want a token", r.Code, r.Stdout, r.Stderr)
	}
}

// TestHelpListsTheSettings: -h is a person asking, so it answers in plain
// text with every setting's flag and variable and exits 0, with or without
// a secret, as handlers-svc -h does.
func TestHelpListsTheSettings(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	for _, arg := range []string{"-h", "-help"} {
		r := cmdtest.Run(t, bin, nil, arg)
		if r.Code != 0 || r.Stdout != "" {
			t.Errorf("gateway %s: exit %d, stdout %q; want 0 and the usage on stderr", arg, r.Code, r.Stdout)
		}
		for _, want := range []string{"usage: gateway", "gateway token", "-gateway-addr", "$GATEWAY_JWT_SECRET", "-history-window"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("gateway %s says %q; want %q in it", arg, r.Stderr, want)
			}
		}
	}
}

// TestSubcommandHelp: "gateway health -h" and "gateway token -h" are a
// person asking, as "gateway -h" is: they check or mint nothing, print the
// usage on stderr and exit 0, without a secret; a bad flag is still a
// failure.
func TestSubcommandHelp(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	tests := []struct {
		cmd  string
		want []string // in stderr
	}{
		{"health", []string{"usage: gateway health [-ready] [URL]", "-ready"}},
		{"token", []string{"usage: gateway token [-ttl 24h] USER", "-ttl"}},
	}
	for _, tt := range tests {
		for _, arg := range []string{"-h", "-help"} {
			r := cmdtest.Run(t, bin, nil, tt.cmd, arg)
			if r.Code != 0 || r.Stdout != "" {
				t.Errorf("gateway %s %s: exit %d, stdout %q, stderr %q; want 0 and the usage on stderr", tt.cmd, arg, r.Code, r.Stdout, r.Stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("gateway %s %s says %q; want %q in it", tt.cmd, arg, r.Stderr, want)
				}
			}
		}
		if r := cmdtest.Run(t, bin, nil, tt.cmd, "-no-such-flag"); r.Code != 1 || !strings.Contains(r.Stderr, "no-such-flag") {
			t.Errorf("gateway %s -no-such-flag: exit %d, stderr %q; want 1 naming the flag", tt.cmd, r.Code, r.Stderr)
		}
	}
}

// TestRefusesRedisDatabaseItLacks: a REDIS_URL whose database index the
// Redis does not have ("ERR DB index is out of range") is a configuration
// error, refused at start as one, naming REDIS_URL and the database, where
// every worker used to retry it forever. (A Redis that cannot be reached
// is not refused: redisconn's TestCheck.)
func TestRefusesRedisDatabaseItLacks(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	rd := testkit.StartRedis(t)
	r := cmdtest.Run(t, bin, []string{
		"GATEWAY_JWT_SECRET=refuse-test-secret-of-32-bytes-or-more", "GATEWAY_METRICS_ADDR=off",
		"GATEWAY_ADDR=127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)), "GATEWAY_WORKERS=1",
		"NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
		"REDIS_URL=redis://" + rd.Addr() + "/99",
	})
	cmdtest.Refusal{Code: 1, Logger: "gateway", Names: "REDIS_URL: database 99"}.Check(t, r)
}

// TestStartsWhileRedisIsDown: a Redis that does not answer at start is no
// configuration error: the gateway starts its workers and waits for it,
// and the supervisor's look at Redis writes nothing but JSON lines (go-redis
// logs a failed dial as plain text unless told otherwise).
func TestStartsWhileRedisIsDown(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	p := testkit.StartProc(t, "gateway", bin, []string{
		"GATEWAY_JWT_SECRET=refuse-test-secret-of-32-bytes-or-more", "GATEWAY_METRICS_ADDR=off",
		"GATEWAY_ADDR=127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)), "GATEWAY_WORKERS=1",
		"NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
		"REDIS_URL=redis://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)) + "/99",
	})
	testkit.Eventually(t, 30*time.Second, "the worker waits for Redis", func() bool {
		return strings.Contains(p.Logs(), "redis not reachable yet")
	})
	if p.Exited() {
		t.Fatalf("the gateway exited:\n%s", p.Logs())
	}
	p.Signal(syscall.SIGTERM)
	if err := p.Wait(30 * time.Second); err != nil {
		t.Errorf("gateway exit: %v", err)
	}
	cmdtest.JSONLines(t, p.Logs())
}
