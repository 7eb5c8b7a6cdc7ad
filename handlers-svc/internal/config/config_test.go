package config_test

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/internal/config"
	"github.com/switchboard/switchboard/proto"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want func(*config.Config)
	}{
		{"defaults", nil, nil, func(*config.Config) {}},
		{"env", map[string]string{
			"NATS_URL":                  "nats://nats:4222",
			"REDIS_URL":                 "redis://redis:6379/1",
			"HANDLERS_ADDR":             ":9000",
			"LOG_LEVEL":                 "debug",
			"HANDLERS_TIMEOUT":          "3s",
			"HANDLERS_SHUTDOWN_TIMEOUT": "1m",
		}, nil, func(c *config.Config) {
			c.NATSURL, c.RedisURL, c.Addr, c.LogLevel = "nats://nats:4222", "redis://redis:6379/1", ":9000", "debug"
			c.Timeout, c.ShutdownTimeout = 3*time.Second, time.Minute
		}},
		{"flags override env", map[string]string{"NATS_URL": "nats://env:4222", "HANDLERS_TIMEOUT": "3s"},
			[]string{"-nats-url", "nats://flag:4222", "-handlers-timeout=2s", "-log-level", "warn", "-redis-url=redis://r:1/2", "-handlers-addr", "127.0.0.1:1", "-handlers-shutdown-timeout", "4s"},
			func(c *config.Config) {
				c.NATSURL, c.Timeout, c.LogLevel, c.RedisURL, c.Addr, c.ShutdownTimeout = "nats://flag:4222", 2*time.Second, "warn", "redis://r:1/2", "127.0.0.1:1", 4*time.Second
			}},
		{"empty env is unset", map[string]string{"LOG_LEVEL": ""}, nil, func(*config.Config) {}},
		{"api key", map[string]string{"HANDLERS_API_KEY": "0123456789abcdef"}, nil, func(c *config.Config) { c.APIKey = "0123456789abcdef" }},
		{"per-user fan-out", map[string]string{"FANOUT_MODE": "per_user"}, nil, func(c *config.Config) { c.FanoutMode = "per_user" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Load(tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := config.Default()
			tt.want(&want)
			if got != want {
				t.Fatalf("Load = %+v, want %+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := config.Default()
	want := config.Config{
		NATSURL: "nats://127.0.0.1:4222", RedisURL: "redis://127.0.0.1:6379/0", Addr: ":8081",
		LogLevel: "info", Timeout: 4 * time.Second, ShutdownTimeout: 10 * time.Second, HistoryWindow: 120 * time.Second, RevokeTTL: 24 * time.Hour,
		FanoutMode: "shared",
	}
	if c != want {
		t.Fatalf("Default = %+v, want %+v", c, want)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"bad env duration", map[string]string{"HANDLERS_TIMEOUT": "5"}, nil, "HANDLERS_TIMEOUT"},
		{"bad flag duration", nil, []string{"-handlers-timeout", "x"}, "handlers-timeout"},
		{"unknown flag", nil, []string{"-nope"}, "nope"},
		{"stray argument", nil, []string{"extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	if _, err := config.Load([]string{"-h"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*config.Config)
		wantErr string
	}{
		{"nats scheme", func(c *config.Config) { c.NATSURL = "http://x:4222" }, "NATS_URL"},
		{"nats empty", func(c *config.Config) { c.NATSURL = "" }, "NATS_URL"},
		{"nats no host", func(c *config.Config) { c.NATSURL = "nats://" }, "NATS_URL"},
		{"redis", func(c *config.Config) { c.RedisURL = "mysql://x" }, "REDIS_URL"},
		{"addr", func(c *config.Config) { c.Addr = "8081" }, "HANDLERS_ADDR"},
		{"addr with a port that is none", func(c *config.Config) { c.Addr = "127.0.0.1:99999" }, "HANDLERS_ADDR"},
		{"log level", func(c *config.Config) { c.LogLevel = "loud" }, "LOG_LEVEL"},
		// The gateway's rules: zap would take these, the configuration does not.
		{"upper-case log level", func(c *config.Config) { c.LogLevel = "INFO" }, "LOG_LEVEL"},
		{"fatal log level", func(c *config.Config) { c.LogLevel = "fatal" }, "LOG_LEVEL"},
		{"empty log level", func(c *config.Config) { c.LogLevel = "" }, "LOG_LEVEL"},
		{"redis database", func(c *config.Config) { c.RedisURL = "redis://x:6379/db" }, "REDIS_URL"},
		{"nats port out of range", func(c *config.Config) { c.NATSURL = "nats://x:99999" }, "NATS_URL"},
		{"redis port out of range", func(c *config.Config) { c.RedisURL = "redis://x:99999/0" }, "REDIS_URL"},
		{"timeout", func(c *config.Config) { c.Timeout = 0 }, "HANDLERS_TIMEOUT"},
		{"shutdown timeout", func(c *config.Config) { c.ShutdownTimeout = -time.Second }, "HANDLERS_SHUTDOWN_TIMEOUT"},
		{"history window too short", func(c *config.Config) { c.HistoryWindow = time.Millisecond }, "HISTORY_WINDOW"},
		{"history window too long", func(c *config.Config) { c.HistoryWindow = 25 * time.Hour }, "HISTORY_WINDOW"},
		{"history window negative", func(c *config.Config) { c.HistoryWindow = -time.Second }, "HISTORY_WINDOW"},
		{"api key too short", func(c *config.Config) { c.APIKey = "short" }, "HANDLERS_API_KEY"},
		// Keys the API could never match: it trims the bearer token, and
		// no header carries a control character.
		{"api key with a trailing newline", func(c *config.Config) { c.APIKey = "0123456789abcdef\n" }, "HANDLERS_API_KEY"},
		{"api key with a leading space", func(c *config.Config) { c.APIKey = " 0123456789abcdef" }, "HANDLERS_API_KEY"},
		{"api key with a control character", func(c *config.Config) { c.APIKey = "0123456789\x00abcdef" }, "HANDLERS_API_KEY"},
		{"unknown fan-out mode", func(c *config.Config) { c.FanoutMode = "per-user" }, "FANOUT_MODE"},
		// The previous key of a rotation is held to the same rules, and
		// means nothing without a current one.
		{"previous api key too short", func(c *config.Config) { c.APIKey, c.APIKeyPrevious = key, "short" }, "HANDLERS_API_KEY_PREVIOUS: must be at least 16"},
		{"previous api key with a trailing newline", func(c *config.Config) { c.APIKey, c.APIKeyPrevious = key, previousKey+"\n" }, "HANDLERS_API_KEY_PREVIOUS: has white space"},
		{"previous api key with a control character", func(c *config.Config) { c.APIKey, c.APIKeyPrevious = key, "\x7f"+previousKey }, "HANDLERS_API_KEY_PREVIOUS: has white space"},
		{"previous api key the same as the key", func(c *config.Config) { c.APIKey, c.APIKeyPrevious = key, key }, "HANDLERS_API_KEY_PREVIOUS is the same as HANDLERS_API_KEY"},
		{"previous api key without a key", func(c *config.Config) { c.APIKeyPrevious = previousKey }, "HANDLERS_API_KEY_PREVIOUS is set without HANDLERS_API_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
	c := config.Default()
	c.NATSURL = "nats://a:4222, tls://b:4222"
	if err := c.Validate(); err != nil {
		t.Fatalf("server list rejected: %v", err)
	}
	c.HistoryWindow = 0 // recovery off
	if err := c.Validate(); err != nil {
		t.Fatalf("HISTORY_WINDOW=0 rejected: %v", err)
	}
	if c.Fanout() != proto.FanoutShared {
		t.Fatalf("default fan-out %q", c.Fanout())
	}
	c.FanoutMode = "per_user"
	if err := c.Validate(); err != nil || c.Fanout() != proto.FanoutPerUser {
		t.Fatalf("FANOUT_MODE=per_user: %v, %q", err, c.Fanout())
	}
}

func TestFlagName(t *testing.T) {
	if got := config.FlagName("HANDLERS_SHUTDOWN_TIMEOUT"); got != "handlers-shutdown-timeout" {
		t.Fatalf("FlagName = %q", got)
	}
}

// Keys of the dispatch API long enough for Validate.
const (
	key         = "new-dispatch-key-0123456789"
	previousKey = "old-dispatch-key-0123456789"
)

// TestAPIKeyPrevious: HANDLERS_API_KEY_PREVIOUS is read from the
// environment or its flag, beside HANDLERS_API_KEY, and valid with it.
func TestAPIKeyPrevious(t *testing.T) {
	c, err := config.Load(nil, env(map[string]string{"HANDLERS_API_KEY": key, "HANDLERS_API_KEY_PREVIOUS": previousKey}), io.Discard)
	if err != nil || c.APIKey != key || c.APIKeyPrevious != previousKey {
		t.Fatalf("Load = %q, %q, %v; want both keys", c.APIKey, c.APIKeyPrevious, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c, err = config.Load([]string{"-handlers-api-key-previous=" + previousKey}, env(nil), io.Discard)
	if err != nil || c.APIKeyPrevious != previousKey {
		t.Fatalf("flag: %q, %v", c.APIKeyPrevious, err)
	}
}

// TestAPIKeyFile: HANDLERS_API_KEY_FILE and HANDLERS_API_KEY_PREVIOUS_FILE
// are read (without their final line break, which echo and editors add)
// into the keys they stand for, from the environment or their flags, and
// the keys read are held to Validate's rules.
func TestAPIKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyPath := write("key", key+"\n")
	previousPath := write("previous", previousKey+"\r\n")

	c, err := config.Load(nil, env(map[string]string{"HANDLERS_API_KEY_FILE": keyPath, "HANDLERS_API_KEY_PREVIOUS_FILE": previousPath}), io.Discard)
	if err != nil || c.APIKey != key || c.APIKeyPrevious != previousKey {
		t.Fatalf("Load = %q, %q, %v; want both keys from their files", c.APIKey, c.APIKeyPrevious, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c, err = config.Load([]string{"-handlers-api-key-file", keyPath}, env(map[string]string{"HANDLERS_API_KEY_PREVIOUS": previousKey}), io.Discard)
	if err != nil || c.APIKey != key || c.APIKeyPrevious != previousKey {
		t.Fatalf("flag: %q, %q, %v", c.APIKey, c.APIKeyPrevious, err)
	}
	// Parse, for "handlers-svc health", reads no file: one it cannot read
	// does not fail a probe.
	c, err = config.Parse(nil, env(map[string]string{"HANDLERS_API_KEY_FILE": filepath.Join(dir, "nope")}), io.Discard)
	if err != nil || c.APIKey != "" {
		t.Fatalf("Parse = %q, %v; want no key and no error", c.APIKey, err)
	}
	// A space inside the file is kept, and refused as in the variable.
	c, err = config.Load(nil, env(map[string]string{"HANDLERS_API_KEY_FILE": write("spaced", key+" \n")}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "HANDLERS_API_KEY: has white space") {
		t.Fatalf("Validate of a key with a trailing space = %v", err)
	}

	empty := write("empty", "\n")
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"key and its file", map[string]string{"HANDLERS_API_KEY": key, "HANDLERS_API_KEY_FILE": keyPath},
			"HANDLERS_API_KEY and HANDLERS_API_KEY_FILE are both set"},
		{"previous key and its file", map[string]string{"HANDLERS_API_KEY": key, "HANDLERS_API_KEY_PREVIOUS": previousKey, "HANDLERS_API_KEY_PREVIOUS_FILE": previousPath},
			"HANDLERS_API_KEY_PREVIOUS and HANDLERS_API_KEY_PREVIOUS_FILE are both set"},
		{"missing key file", map[string]string{"HANDLERS_API_KEY_FILE": filepath.Join(dir, "nope")}, "HANDLERS_API_KEY_FILE: open"},
		{"missing previous key file", map[string]string{"HANDLERS_API_KEY": key, "HANDLERS_API_KEY_PREVIOUS_FILE": filepath.Join(dir, "nope")}, "HANDLERS_API_KEY_PREVIOUS_FILE: open"},
		{"key file is a directory", map[string]string{"HANDLERS_API_KEY_FILE": dir}, "HANDLERS_API_KEY_FILE"},
		{"empty key file", map[string]string{"HANDLERS_API_KEY_FILE": empty}, "HANDLERS_API_KEY_FILE: " + empty + " is empty"},
		{"empty previous key file", map[string]string{"HANDLERS_API_KEY": key, "HANDLERS_API_KEY_PREVIOUS_FILE": empty}, "HANDLERS_API_KEY_PREVIOUS_FILE: " + empty + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(nil, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load = %v, want an error naming %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), previousKey) {
				t.Fatalf("the error shows a key: %v", err)
			}
		})
	}
}

// TestFlagWinsOverAMalformedVariable: a flag wins over its variable, also
// over one whose value would not parse (docs/operations.md).
func TestFlagWinsOverAMalformedVariable(t *testing.T) {
	c, err := config.Load([]string{"-handlers-timeout=3s"}, env(map[string]string{"HANDLERS_TIMEOUT": "soon"}), io.Discard)
	if err != nil || c.Timeout != 3*time.Second {
		t.Fatalf("Load = %v timeout, %v; want 3s from the flag", c.Timeout, err)
	}
	if _, err := config.Load(nil, env(map[string]string{"HANDLERS_TIMEOUT": "soon"}), io.Discard); err == nil || !strings.Contains(err.Error(), "HANDLERS_TIMEOUT") {
		t.Fatalf("Load without the flag = %v, want an error naming HANDLERS_TIMEOUT", err)
	}
}
