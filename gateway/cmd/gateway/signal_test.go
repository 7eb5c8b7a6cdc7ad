package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/cmdtest"
	"github.com/switchboard/switchboard/internal/testkit"
)

// TestSecondSignalStopsAtOnce: main's signal.NotifyContext stayed
// registered until run returned, so once the gateway was stopping every
// further SIGINT or SIGTERM was swallowed, and a person pressing Ctrl-C again waits out
// the whole stop (GATEWAY_SHUTDOWN_TIMEOUT + 5 s, then up to 5 s more
// after SIGKILL). handlers-svc stops at once on a second signal
// (service.Main: "After the first signal, a second one stops the process
// at once"); the gateway should too. A stopped worker stands for one slow
// to drain (a slow handler in flight); the watchdog is off so that only
// the signals decide.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	bin := cmdtest.Build(t, ".")
	p := testkit.StartProc(t, "gateway", bin, []string{
		"GATEWAY_JWT_SECRET=signal-test-secret-of-32-bytes-or-more", "GATEWAY_METRICS_ADDR=off",
		"GATEWAY_ADDR=127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)), "GATEWAY_WORKERS=1",
		"GATEWAY_WORKER_HANG_TIMEOUT=0", "GATEWAY_SHUTDOWN_TIMEOUT=20s",
		"NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
		"REDIS_URL=redis://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)),
	})
	var worker int
	testkit.Eventually(t, 30*time.Second, "the worker runs", func() bool {
		if c := p.Children(); len(c) == 1 && strings.Contains(p.Logs(), "worker serving") {
			worker = c[0]
			return true
		}
		return false
	})
	if err := syscall.Kill(worker, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Stopped before the supervisor passes SIGTERM on: a worker not yet
	// scheduled to stop would take SIGTERM (15) first, as the kernel hands
	// a thread its pending signals lowest first, and none would be left
	// pending.
	testkit.Eventually(t, 10*time.Second, "the worker is stopped", func() bool { return stopped(worker) })
	p.Signal(syscall.SIGTERM)
	// The supervisor has handled the first signal once it has passed
	// SIGTERM on to the worker, which holds it pending while stopped.
	testkit.Eventually(t, 10*time.Second, "the worker has SIGTERM pending", func() bool {
		return pending(worker, syscall.SIGTERM)
	})
	p.Signal(syscall.SIGINT) // Ctrl-C, again
	start := time.Now()
	_ = p.Wait(40 * time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the gateway exited %s after a second signal, want at once", took.Round(time.Second))
	}
	// Its stopped worker was killed, not left behind.
	testkit.Eventually(t, 10*time.Second, "the worker is gone", func() bool {
		return syscall.Kill(worker, 0) != nil
	})
}

// pending reports whether pid has sig pending (its own or its process's).
func pending(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err == nil && mask&(1<<(uint(sig)-1)) != 0 {
			return true
		}
	}
	return false
}

// stopped reports whether pid is stopped by a signal (state T in
// /proc/<pid>/stat).
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "T")
}
