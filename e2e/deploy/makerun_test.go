package deploy

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestMakeRunOnOtherAddresses runs the script of `make run` with the
// addresses docs/operations.md says it takes: handlers-svc on an address
// without a host (":PORT", as compose sets it) and the admin address off.
// It must come up and print URLs that work. It used to wait for
// handlers-svc at http://:PORT/readyz, which curl cannot fetch, and give
// up with "handlers-svc did not come up" while it was up; and print
// http://off/readyz for the admin address.
func TestMakeRunOnOtherAddresses(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is missing; .ci/deps.sh run installs it")
	}
	gw, hs := testkit.PlainBinaries(t)
	// The script runs ./bin/gateway and ./bin/handlers-svc from the
	// directory above its own: a copy of it beside the built binaries.
	dir := t.TempDir()
	for _, d := range []string{".ci", "bin"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile(filepath.Join(root(t), ".ci", "run-stack.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".ci", "run-stack.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, bin := range map[string]string{"gateway": gw, "handlers-svc": hs} {
		if err := os.Symlink(bin, filepath.Join(dir, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}

	// NATS and Redis already answering: the script uses them.
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	hport, gport := testkit.FreePort(t), testkit.FreePort(t)
	cmd := exec.Command("bash", filepath.Join(dir, ".ci", "run-stack.sh"))
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("NATS_PORT=%d", n.Port), fmt.Sprintf("REDIS_PORT=%d", rd.Port),
		"NATS_URL="+n.URL(), "REDIS_URL="+rd.URL(),
		fmt.Sprintf("HANDLERS_ADDR=:%d", hport),
		fmt.Sprintf("GATEWAY_ADDR=127.0.0.1:%d", gport),
		"GATEWAY_METRICS_ADDR=off", "GATEWAY_WORKERS=1", "HANDLERS_API_KEY=",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM) // the script stops what it started
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Error("make run's script did not stop within 30s of SIGTERM")
		}
	}
	t.Cleanup(stop)

	var out []string
	deadline := time.After(60 * time.Second)
	up := false
	for !up {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("make run's script ended before it was up:\n%s", strings.Join(out, "\n"))
			}
			out = append(out, l)
			if strings.Contains(l, "Ctrl-C stops everything.") && strings.Contains(strings.Join(out, "\n"), "switchboard is up") {
				up = true
			}
		case <-deadline:
			t.Fatalf("make run's script not up after 60s:\n%s", strings.Join(out, "\n"))
		}
	}
	go func() { // the stack logs on: keep its pipe from filling
		for range lines {
		}
	}()
	banner := strings.Join(out, "\n")
	for _, want := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/metrics (handlers-svc)", hport),
		"GATEWAY_METRICS_ADDR=off",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner does not say %q:\n%s", want, banner)
		}
	}
	for _, bad := range []string{"http://:", "http://off"} {
		if strings.Contains(banner, bad) {
			t.Errorf("the banner holds a URL that cannot be fetched, %q...:\n%s", bad, banner)
		}
	}
	for _, url := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/readyz", hport),
		fmt.Sprintf("http://127.0.0.1:%d/readyz", gport),
	} {
		if code := getStatus(url); code != 200 {
			t.Errorf("GET %s: %d, want 200", url, code)
		}
	}
	stop()
}

// getStatus is the status of GET url, or 0 when it cannot be fetched.
func getStatus(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
