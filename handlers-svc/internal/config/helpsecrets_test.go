package config_test

import (
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/internal/config"
)

// TestHelpShowsNoSecret: "handlers-svc -h" prints the usage, which Main
// writes to stderr (the container's log stream). Each flag's default
// there must be the built-in default, not the value the environment set:
// else the dispatch API key and the passwords in NATS_URL and REDIS_URL
// are printed for anyone who asks for the usage, where docs/operations.md
// promises that neither service logs a credential.
func TestHelpShowsNoSecret(t *testing.T) {
	secrets := map[string]string{
		"HANDLERS_API_KEY":          "api-key-s3cr3t-0123456789",
		"HANDLERS_API_KEY_PREVIOUS": "old-key-s3cr3t-0123456789",
		"NATS_URL":                  "nats://svc:nats-s3cr3t@nats:4222",
		"REDIS_URL":                 "redis://default:redis-s3cr3t@redis:6379/0",
	}
	var usage strings.Builder
	_, err := config.Load([]string{"-h"}, env(secrets), &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load(-h) = %v, want flag.ErrHelp", err)
	}
	for line := range strings.Lines(usage.String()) {
		if strings.Contains(line, "s3cr3t") {
			t.Errorf("-h prints a secret from the environment as a flag's default: %s", strings.TrimSpace(line))
		}
	}
}
