package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/cmdtest"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestRefusalIsAJSONLine runs the real binary with what it must refuse:
// settings the gateway refuses too, and a bad flag. Each time it exits 2
// and every line it wrote to stderr is JSON, one of them the refusal
// naming what is wrong. -h still prints the usage, for a person, and
// exits 0.
func TestRefusalIsAJSONLine(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	tests := []struct {
		name string
		env  []string
		args []string
		want string // in the refusal's error
	}{
		{"NATS scheme", []string{"NATS_URL=http://u:s3cr3t@h:4222"}, nil, "NATS_URL"},
		{"NATS list with a bad server", []string{"NATS_URL=nats://a:4222, ::s3cr3t"}, nil, "NATS_URL"},
		{"Redis URL", []string{"REDIS_URL=redis://:s3cr3t@h:6379/db"}, nil, "REDIS_URL"},
		{"upper-case log level", []string{"LOG_LEVEL=INFO"}, nil, "LOG_LEVEL"},
		{"duration without a unit", []string{"HANDLERS_TIMEOUT=5"}, nil, "HANDLERS_TIMEOUT"},
		{"zero duration", nil, []string{"-handlers-shutdown-timeout=0s"}, "HANDLERS_SHUTDOWN_TIMEOUT"},
		{"unknown fan-out mode", []string{"FANOUT_MODE=per-user"}, nil, "FANOUT_MODE"},
		{"bad flag", nil, []string{"-no-such-flag"}, "no-such-flag"},
		{"stray argument", nil, []string{"serve"}, "unexpected arguments"},
		// The built-in handlers' sender bounds are read by package
		// handlers, but checked before anything connects.
		{"sender bound", []string{"HANDLERS_SEND_BYTES_PER_SEC=lots"}, nil, "HANDLERS_SEND_BYTES_PER_SEC"},
		{"negative recipients burst", []string{"HANDLERS_RECIPIENTS_BURST=-1"}, nil, "HANDLERS_RECIPIENTS_BURST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cmdtest.Run(t, bin, tt.env, tt.args...)
			cmdtest.Refusal{Code: 2, Logger: "handlers-svc", Names: tt.want, Hides: "s3cr3t"}.Check(t, r)
		})
	}
	t.Run("help", func(t *testing.T) {
		if r := cmdtest.Run(t, bin, nil, "-h"); r.Code != 0 || !strings.Contains(r.Stderr, "(env NATS_URL)") {
			t.Fatalf("-h: exit status %d, stderr:\n%s\nwant 0 and the usage", r.Code, r.Stderr)
		}
	})
	// "handlers-svc health -h" too: it checks nothing and exits 0; a bad
	// flag is still a failure.
	t.Run("health help", func(t *testing.T) {
		if r := cmdtest.Run(t, bin, nil, "health", "-h"); r.Code != 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "usage: handlers-svc health [-ready] [URL]") {
			t.Fatalf("health -h: exit status %d, stdout %q, stderr:\n%s\nwant 0 and the usage on stderr", r.Code, r.Stdout, r.Stderr)
		}
		if r := cmdtest.Run(t, bin, nil, "health", "-no-such-flag"); r.Code != 1 || !strings.Contains(r.Stderr, "no-such-flag") {
			t.Fatalf("health -no-such-flag: exit status %d, stderr:\n%s\nwant 1 naming the flag", r.Code, r.Stderr)
		}
	})
}

// TestRefusesRedisDatabaseItLacks: a REDIS_URL whose database index the
// Redis does not have ("ERR DB index is out of range") is a configuration
// error, refused at start as one (exit 2, naming REDIS_URL and the
// database), where handlers-svc used to wait for Redis forever. (A Redis
// that cannot be reached is waited for: TestWaitsForDependencies.)
func TestRefusesRedisDatabaseItLacks(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	rd := testkit.StartRedis(t)
	r := cmdtest.Run(t, bin, []string{
		"HANDLERS_ADDR=127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
		"NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
		"REDIS_URL=redis://" + rd.Addr() + "/99",
	})
	cmdtest.Refusal{Code: 2, Logger: "handlers-svc", Names: "REDIS_URL: database 99"}.Check(t, r)
}
