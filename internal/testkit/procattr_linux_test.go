package testkit_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestServersDieWithTheTestBinary runs a test binary that starts a
// redis-server and a process, then kills it with SIGKILL, as `go test
// -timeout` or a crash ends one without its cleanups: both must go with
// it, not hold their ports.
func TestServersDieWithTheTestBinary(t *testing.T) {
	if os.Getenv("TESTKIT_ORPHAN_CHILD") == "1" {
		r := testkit.StartRedis(t)
		p := testkit.StartProc(t, "sleep", "sleep", nil, "600")
		fmt.Printf("redis %s proc %d\n", r.Addr(), p.Pid())
		select {} // until killed
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServersDieWithTheTestBinary$", "-test.count=1")
	// The child dies without its cleanups: its temporary directories go
	// in one of this test's, removed by this test's.
	cmd.Env = append(os.Environ(), "TESTKIT_ORPHAN_CHILD=1", "TMPDIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var addr string
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "redis %s proc %d", &addr, &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("the child test printed no servers (%v)", sc.Err())
	}
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Fatalf("the child's redis-server at %s is not up: %v", addr, err)
	} else {
		c.Close()
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testkit.Eventually(t, 10*time.Second, "the orphaned redis-server to go", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	testkit.Eventually(t, 10*time.Second, "the orphaned process to go", func() bool { return gone(pid) })
}

// gone reports whether pid no longer runs: it does not exist, or it is a
// zombie waiting for whoever adopted it to reap it.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command's closing parenthesis.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}
