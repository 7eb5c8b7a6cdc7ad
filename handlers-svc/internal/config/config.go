// Package config holds the one Config of handlers-svc: defaults in code,
// read from the environment and then from flags, and checked by Validate.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/switchboard/switchboard/internal/httpserver"
	"github.com/switchboard/switchboard/internal/logging"
	"github.com/switchboard/switchboard/internal/serverurl"
	"github.com/switchboard/switchboard/proto"
)

// Config is the configuration of handlers-svc (docs/protocol.md section 1).
type Config struct {
	NATSURL         string        // NATS_URL
	NATSCreds       string        // NATS_CREDS: a NATS credentials file; "" = none
	RedisURL        string        // REDIS_URL
	Addr            string        // HANDLERS_ADDR: health and metrics endpoints
	LogLevel        string        // LOG_LEVEL: debug, info, warn or error
	Timeout         time.Duration // HANDLERS_TIMEOUT: per request; below GATEWAY_HANDLER_TIMEOUT
	ShutdownTimeout time.Duration // HANDLERS_SHUTDOWN_TIMEOUT: drain and wait on SIGTERM
	HistoryWindow   time.Duration // HISTORY_WINDOW: how long events are kept for recovery; 0 = off
	RevokeTTL       time.Duration // HANDLERS_REVOKE_TTL: how long a revocation is kept in Redis; the longest token lifetime
	APIKey          string        // HANDLERS_API_KEY: the dispatch API's bearer key; "" = no API (404); Load reads it from APIKeyFile when that is set
	// APIKeyPrevious is HANDLERS_API_KEY_PREVIOUS: during a rotation, the
	// key being replaced, still accepted beside APIKey; "" = none. Load
	// reads it from APIKeyPreviousFile when that is set.
	APIKeyPrevious string
	FanoutMode     string // FANOUT_MODE: shared (default) or per_user; see Fanout
	// APIKeyFile is HANDLERS_API_KEY_FILE: a file holding the key, instead
	// of HANDLERS_API_KEY (a Kubernetes or compose secret); "" = none.
	APIKeyFile string
	// APIKeyPreviousFile is HANDLERS_API_KEY_PREVIOUS_FILE: a file holding
	// the previous key, instead of HANDLERS_API_KEY_PREVIOUS; "" = none.
	APIKeyPreviousFile string
}

// MinAPIKeyLen is the shortest HANDLERS_API_KEY accepted: a key short
// enough to guess would let anyone dispatch to every user.
const MinAPIKeyLen = 16

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		NATSURL:  "nats://127.0.0.1:4222",
		RedisURL: "redis://127.0.0.1:6379/0",
		// The contract's default (PROTOCOL.md section 1). Only /healthz,
		// /readyz and /metrics answer without a key; the dispatch API
		// needs HANDLERS_API_KEY and does not exist without one.
		Addr:     ":8081",
		LogLevel: "info",
		// Below the gateway's 5s GATEWAY_HANDLER_TIMEOUT, with margin: a
		// handler gives up before the gateway answers the client "timeout",
		// so it cannot dispatch after the client was told it failed.
		Timeout:         4 * time.Second,
		ShutdownTimeout: 10 * time.Second,
		HistoryWindow:   proto.DefaultHistoryWindow,
		RevokeTTL:       24 * time.Hour,
		FanoutMode:      string(proto.FanoutShared),
	}
}

// setting is one configuration value: its environment variable, whose
// lower-cased, dashed form is its flag name.
type setting struct {
	env   string
	usage string
	str   *string
	dur   *time.Duration
}

func (c *Config) settings() []setting {
	return []setting{
		{env: "NATS_URL", usage: "NATS server URL", str: &c.NATSURL},
		{env: "NATS_CREDS", usage: "NATS credentials file (user JWT and NKey seed), if NATS asks for one", str: &c.NATSCreds},
		{env: "REDIS_URL", usage: "Redis URL", str: &c.RedisURL},
		{env: "HANDLERS_ADDR", usage: "HTTP address of /healthz, /readyz and /metrics", str: &c.Addr},
		{env: "LOG_LEVEL", usage: "log level: debug, info, warn or error", str: &c.LogLevel},
		{env: "HANDLERS_TIMEOUT", usage: "per-request handler timeout; keep it below GATEWAY_HANDLER_TIMEOUT, with margin", dur: &c.Timeout},
		{env: "HANDLERS_SHUTDOWN_TIMEOUT", usage: "how long shutdown waits for running handlers", dur: &c.ShutdownTimeout},
		{env: "HISTORY_WINDOW", usage: "how long dispatched events are kept for recovery; 0 = recovery off (set the same on the gateway)", dur: &c.HistoryWindow},
		{env: "HANDLERS_REVOKE_TTL", usage: "how long a token revocation (POST /v1/disconnect with revoke) is kept in Redis: the longest lifetime of your tokens (set GATEWAY_REVOKE_TTL the same)", dur: &c.RevokeTTL},
		{env: "FANOUT_MODE", usage: "how dispatches reach the gateway workers: shared (one channel) or per_user (a channel per user); set the same on the gateway", str: &c.FanoutMode},
		{env: "HANDLERS_API_KEY", usage: "bearer key of the dispatch API, POST /v1/dispatch on HANDLERS_ADDR; unset = no API", str: &c.APIKey},
		{env: "HANDLERS_API_KEY_PREVIOUS", usage: "while rotating HANDLERS_API_KEY, the key being replaced, still accepted beside it; unset once no caller uses it", str: &c.APIKeyPrevious},
		{env: "HANDLERS_API_KEY_FILE", usage: "a file holding HANDLERS_API_KEY (its final line break is dropped), instead of the variable", str: &c.APIKeyFile},
		{env: "HANDLERS_API_KEY_PREVIOUS_FILE", usage: "a file holding HANDLERS_API_KEY_PREVIOUS (its final line break is dropped), instead of the variable", str: &c.APIKeyPreviousFile},
	}
}

// Fanout returns the fan-out mode of a validated Config.
func (c Config) Fanout() proto.FanoutMode {
	m, _ := proto.ParseFanoutMode(c.FanoutMode)
	return m
}

// FlagName returns the flag that sets the environment variable env:
// NATS_URL is -nats-url.
func FlagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(env), "_", "-")
}

// Load returns the defaults overridden by the environment (read through
// getenv; an empty value counts as unset) and then by the flags in args,
// with each dispatch API key read from its file (HANDLERS_API_KEY_FILE,
// HANDLERS_API_KEY_PREVIOUS_FILE) when that is set. It does not validate.
// Usage and flag errors are written to output; -h yields flag.ErrHelp.
func Load(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	c, err := Parse(args, getenv, output)
	if err != nil {
		return Config{}, err
	}
	for _, k := range c.keyFiles() {
		if err := k.read(); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// Parse is Load without reading the key files, for a command that needs
// only some settings (the address "handlers-svc health" dials) and must
// work where a key's file cannot be read.
func Parse(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("handlers-svc", flag.ContinueOnError)
	fs.SetOutput(output)
	// The flags are registered with the built-in defaults, which the
	// usage (-h) prints: the environment's values may be secrets (the API
	// keys, the passwords in the server URLs). They are applied after the
	// flags are parsed, to the settings no flag set: a flag wins.
	settings := c.settings()
	for _, s := range settings {
		name := FlagName(s.env)
		usage := s.usage + " (env " + s.env + ")"
		switch {
		case s.str != nil:
			fs.StringVar(s.str, name, *s.str, usage)
		case s.dur != nil:
			fs.DurationVar(s.dur, name, *s.dur, usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	byFlag := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { byFlag[f.Name] = true })
	for _, s := range settings {
		v := getenv(s.env)
		if v == "" || byFlag[FlagName(s.env)] {
			continue
		}
		switch {
		case s.str != nil:
			*s.str = v
		case s.dur != nil:
			d, err := time.ParseDuration(v)
			if err != nil {
				return Config{}, fmt.Errorf("%s: %q is not a duration such as 5s", s.env, v)
			}
			*s.dur = d
		}
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, nil
}

// keyFile is a key of the dispatch API given either in its variable or in
// a file named by a second one.
type keyFile struct {
	env, fileEnv string
	value        *string // the key, where read puts the file's
	file         string  // the file's path; "" = none
}

// keyFiles lists the keys of the dispatch API that may be given as files.
func (c *Config) keyFiles() []keyFile {
	return []keyFile{
		{"HANDLERS_API_KEY", "HANDLERS_API_KEY_FILE", &c.APIKey, c.APIKeyFile},
		{"HANDLERS_API_KEY_PREVIOUS", "HANDLERS_API_KEY_PREVIOUS_FILE", &c.APIKeyPrevious, c.APIKeyPreviousFile},
	}
}

// read reads the key's file, when one is set, into its value; it never
// shows the key.
func (k keyFile) read() error {
	if k.file == "" {
		return nil
	}
	if *k.value != "" {
		return fmt.Errorf("%s and %s are both set: set one", k.env, k.fileEnv)
	}
	b, err := os.ReadFile(k.file)
	if err != nil {
		return fmt.Errorf("%s: %w", k.fileEnv, err)
	}
	// A file written by echo or an editor ends with a line break that is
	// no part of the key; any other white space is left for Validate to
	// refuse, as in the variable.
	*k.value = strings.TrimRight(string(b), "\r\n")
	if *k.value == "" {
		return fmt.Errorf("%s: %s is empty", k.fileEnv, k.file)
	}
	return nil
}

// Validate reports every invalid value, naming its environment variable.
func (c Config) Validate() error {
	var errs []error
	if err := serverurl.NATS(c.NATSURL); err != nil {
		errs = append(errs, fmt.Errorf("NATS_URL: %w", err))
	}
	if c.NATSCreds != "" {
		if err := serverurl.NATSCreds(c.NATSCreds); err != nil {
			errs = append(errs, fmt.Errorf("NATS_CREDS: %w", err))
		}
	}
	if err := serverurl.Redis(c.RedisURL); err != nil {
		errs = append(errs, fmt.Errorf("REDIS_URL: %w", err))
	}
	if err := httpserver.CheckAddr(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("HANDLERS_ADDR: %w", err))
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("HANDLERS_TIMEOUT: must be positive, got %s", c.Timeout))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HANDLERS_SHUTDOWN_TIMEOUT: must be positive, got %s", c.ShutdownTimeout))
	}
	if c.RevokeTTL <= 0 {
		errs = append(errs, fmt.Errorf("HANDLERS_REVOKE_TTL must be positive, got %s", c.RevokeTTL))
	}
	if err := proto.CheckHistoryWindow(c.HistoryWindow); err != nil {
		errs = append(errs, fmt.Errorf("HISTORY_WINDOW: %w", err))
	}
	if _, err := proto.ParseFanoutMode(c.FanoutMode); err != nil {
		errs = append(errs, fmt.Errorf("FANOUT_MODE: %w", err))
	}
	if c.APIKey != "" {
		errs = append(errs, checkAPIKey("HANDLERS_API_KEY", c.APIKey))
	}
	if c.APIKeyPrevious != "" {
		errs = append(errs, checkAPIKey("HANDLERS_API_KEY_PREVIOUS", c.APIKeyPrevious))
		if c.APIKey == "" {
			// The API is off without a key: a previous key alone would
			// open nothing, and say nothing of it.
			errs = append(errs, errors.New("HANDLERS_API_KEY_PREVIOUS is set without HANDLERS_API_KEY (or HANDLERS_API_KEY_FILE): set the new key too, or unset both to turn the dispatch API off"))
		} else if c.APIKeyPrevious == c.APIKey {
			errs = append(errs, errors.New("HANDLERS_API_KEY_PREVIOUS is the same as HANDLERS_API_KEY: set the new key as HANDLERS_API_KEY and the one it replaces as the previous"))
		}
	}
	return errors.Join(errs...)
}

// checkAPIKey refuses a key of the dispatch API, named env, that is too
// short or that no caller can send; it never shows the key.
func checkAPIKey(env, key string) error {
	var errs []error
	if len(key) < MinAPIKeyLen {
		errs = append(errs, fmt.Errorf("%s: must be at least %d bytes, got %d", env, MinAPIKeyLen, len(key)))
	}
	// The API trims the bearer token it is sent, and no header carries a
	// control character: such a key would be refused to every caller,
	// with nothing said at start-up (a newline left by a secrets file).
	if strings.TrimSpace(key) != key || strings.ContainsFunc(key, unicode.IsControl) {
		errs = append(errs, fmt.Errorf("%s: has white space at an end or a control character (a newline from a file?), which no caller can send", env))
	}
	return errors.Join(errs...)
}
