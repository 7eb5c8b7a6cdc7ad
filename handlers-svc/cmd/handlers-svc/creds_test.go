package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/cmdtest"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestRefusesNATSCredsThatCannotWork: NATS_CREDS naming something that
// holds no credentials (a file of something else) is a
// setting that cannot work, which docs/operations.md says stops the
// service at start with a message naming it, as a REDIS_URL database the
// Redis lacks does. Validate only checks that the path exists, and nats.go
// retries the failed reads forever (RetryOnFailedConnect): handlers-svc
// waits for NATS for good, /readyz 503 "nats not connected", a "waiting
// for NATS" line every 30 s that never names NATS_CREDS.
func TestRefusesNATSCredsThatCannotWork(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	ns := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	notCreds := filepath.Join(t.TempDir(), "nats.creds")
	if err := os.WriteFile(notCreds, []byte("password=hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string]string{"not a credentials file": notCreds} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = []string{
				"PATH=" + os.Getenv("PATH"),
				"HANDLERS_ADDR=127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
				"NATS_URL=" + ns.URL(),
				"REDIS_URL=" + rd.URL(),
				"NATS_CREDS=" + creds,
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("still running after 20 s with NATS_CREDS=%s (%s): waiting for NATS forever; stderr:\n%s", creds, name, stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(stderr.String(), "NATS_CREDS") {
				t.Fatalf("exit %v, want a failure naming NATS_CREDS; stderr:\n%s", err, stderr.String())
			}
		})
	}
}
