package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestDevSecretIsTheGateways: devSecret, a copy, is still the secret the
// real gateway signs with in dev mode, so the default -secret works against
// `make run` and bench/run.sh.
func TestDevSecretIsTheGateways(t *testing.T) {
	gw, _ := testkit.Binaries(t)
	cmd := exec.Command(gw, "token", "-ttl", "1h", "alice")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEWAY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GATEWAY_DEV=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("GATEWAY_DEV=1 gateway token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	var claims jwt.RegisteredClaims
	if _, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte(devSecret), nil },
		jwt.WithValidMethods([]string{"HS256"})); err != nil || claims.Subject != "alice" {
		t.Fatalf("the dev-mode gateway's token %q does not verify with devSecret: %v (sub %q)", tok, err, claims.Subject)
	}
}

func TestParseRates(t *testing.T) {
	if r, err := parseRates(" 10, 15 ,"); err != nil || len(r) != 2 || r[0] != 10 || r[1] != 15 {
		t.Errorf("parseRates: %v, %v", r, err)
	}
	if r, err := parseRates(""); err != nil || len(r) != 0 {
		t.Errorf("none: %v, %v", r, err)
	}
	for _, bad := range []string{"x", "0", "-5"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("parseRates(%q): no error", bad)
		}
	}
}
