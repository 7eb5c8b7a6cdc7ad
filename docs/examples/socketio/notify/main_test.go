package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main in place of the tests when the test binary is run
// as the job (NOTIFY_TEST_MAIN=1), so a test can run the job with the
// arguments it chooses.
func TestMain(m *testing.M) {
	if os.Getenv("NOTIFY_TEST_MAIN") == "1" {
		os.Args = append([]string{"notify"}, strings.Fields(os.Getenv("NOTIFY_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestNoUserIsAUsageError checks that the job run without its user
// argument (a scheduler's template missing it) exits with a usage error,
// code 2, not a panic: nothing is sent to Redis either way, but a panic's
// stack trace is what the job's logs would show for a mistake of its
// caller.
func TestNoUserIsAUsageError(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// An address nothing listens on: the job must stop before Redis.
	cmd.Env = append(os.Environ(), "NOTIFY_TEST_MAIN=1", "NOTIFY_TEST_ARGS=", "REDIS_URL=redis://127.0.0.1:1/0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the job without a user: %v, want exit code 2\n%s", err, out)
	}
	if exit.ExitCode() != 2 || strings.Contains(string(out), "panic") {
		t.Fatalf("the job without a user exited %d:\n%s\nwant exit code 2 with a usage line, no panic", exit.ExitCode(), out)
	}
}

// TestRedisDownIsNotDelivered checks that the job that cannot reach
// Redis exits 3, which tells its scheduler that nothing was delivered and
// running it again is safe, not 1 (outcome unknown) or 2 (usage).
func TestRedisDownIsNotDelivered(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NOTIFY_TEST_MAIN=1", "NOTIFY_TEST_ARGS=bob inv-42", "REDIS_URL=redis://127.0.0.1:1/0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("the job with Redis down: %v, want exit code 3\n%s", err, out)
	}
}
