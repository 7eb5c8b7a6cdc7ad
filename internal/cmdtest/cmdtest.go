// Package cmdtest builds a command of this repository and runs it as a
// process, for tests of what only the real binary shows: its exit status
// and every line it writes, such as the JSON line of a refusal to start.
package cmdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/logging"
)

// Build builds the command in dir (a package path, or "." for the test's
// own package) into a temporary directory and returns the binary's path.
// It skips the test when no go command is on PATH.
func Build(t testing.TB, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the binary with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cmd")
	if out, err := exec.Command(goBin, "build", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// Result is what a finished process left.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status
}

// RunLimit is how long Run waits for a process to exit: a binary that
// starts serving instead of refusing fails its test then, not at go
// test's timeout.
const RunLimit = time.Minute

// Run runs bin with args and an environment of PATH and env only, so that
// nothing in the test's own environment changes what it does, and waits
// for it to exit, killing it and failing the test after RunLimit.
func Run(t testing.TB, bin string, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), RunLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Past RunLimit the whole group goes: a gateway that serves has
	// workers, which hold the output pipes (so Wait would wait for them)
	// and would outlive the test. WaitDelay bounds the wait for pipes that
	// a child still holds after the process itself exited.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if cmd.Process != nil { // started
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // nothing it started outlives the test
	}
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not exit within %s; stderr:\n%s", bin, args, RunLimit, r.Stderr)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", bin, err)
	}
	return r
}

// JSONLines decodes every line of s, failing the test at the first that
// is not a JSON object.
func JSONLines(t testing.TB, s string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// Line returns the first of lines whose "msg" is msg, or nil.
func Line(lines []map[string]any, msg string) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

// Refusal is what a process that refuses to start must have done: exit
// with Code, write nothing to stdout and only JSON lines to stderr, one of
// them logging.RefusalMessage at error level from logger Logger, its error
// naming Names, and Hides (a secret, when not "") nowhere.
type Refusal struct {
	Code          int
	Logger, Names string
	Hides         string
}

// Check fails the test unless r is such a refusal.
func (want Refusal) Check(t testing.TB, r Result) {
	t.Helper()
	if r.Code != want.Code {
		t.Fatalf("exit status %d, want %d; stderr:\n%s", r.Code, want.Code, r.Stderr)
	}
	line := Line(JSONLines(t, r.Stderr), logging.RefusalMessage)
	msg, _ := line["error"].(string)
	if line["level"] != "error" || line["logger"] != want.Logger || !strings.Contains(msg, want.Names) {
		t.Errorf("refusal %v, want an error line of %s naming %s; stderr:\n%s", line, want.Logger, want.Names, r.Stderr)
	}
	if want.Hides != "" && strings.Contains(r.Stderr+r.Stdout, want.Hides) {
		t.Errorf("the output shows %q:\n%s", want.Hides, r.Stderr)
	}
	if r.Stdout != "" {
		t.Errorf("stdout %q, want nothing", r.Stdout)
	}
}
