package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries builds the gateway and handlers-svc once per test process (with
// the race detector when the tests have it) and returns their paths. The
// gateway is built with the faultinject tag: the fault injection the
// end-to-end tests use (SWITCHBOARD_TEST_PANIC_EVENT) is only in such a
// build, never in a production binary.
func Binaries(t testing.TB) (gateway, handlers string) {
	t.Helper()
	return raced.get(t, raceEnabled)
}

// PlainBinaries is Binaries without the race detector: for the few tests
// that measure how the servers hold up under load (an attack), which the
// race detector's several-fold cost in CPU would decide instead. Every
// other test runs the same code with it.
func PlainBinaries(t testing.TB) (gateway, handlers string) {
	t.Helper()
	return plain.get(t, false)
}

// builds are the binaries of one build mode, built once per process.
type builds struct {
	once    sync.Once
	dir, gw string
	hs      string
	err     error
}

var raced, plain builds

func (b *builds) get(t testing.TB, race bool) (gateway, handlers string) {
	t.Helper()
	b.once.Do(func() {
		sweepBinaries(os.TempDir(), time.Now())
		b.dir, b.err = os.MkdirTemp("", fmt.Sprintf("%s%d-", binPrefix, os.Getpid()))
		if b.err != nil {
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			b.err = err
			return
		}
		for pkg, tags := range map[string]string{
			"github.com/switchboard/switchboard/gateway/cmd/gateway":           "faultinject",
			"github.com/switchboard/switchboard/handlers-svc/cmd/handlers-svc": "",
		} {
			args := []string{"build", "-tags", tags}
			if race {
				args = append(args, "-race")
			}
			args = append(args, "-o", filepath.Join(b.dir, filepath.Base(pkg)), pkg)
			out, err := exec.Command(goBin, args...).CombinedOutput()
			if err != nil {
				b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
		b.gw, b.hs = filepath.Join(b.dir, "gateway"), filepath.Join(b.dir, "handlers-svc")
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.gw, b.hs
}

// binPrefix begins the name of a directory of built binaries, followed by
// the pid of the test process that built them. A test process cannot
// remove its directory when it ends (a package has no hook for that, and
// one killed runs none), so each sweeps those of processes that are gone:
// before, every test process left its ~50 MB in the temporary directory,
// 18 GB of them on a shared box, until a build failed for want of space.
const binPrefix = "switchboard-bin-p"

// oldBinAge is the age past which a directory of the earlier naming,
// which names no process, is taken as abandoned: longer than any test
// process runs.
const oldBinAge = 3 * time.Hour

// sweepBinaries removes the directories of binaries in tmp whose process
// is gone, and those of the earlier naming older than oldBinAge. Errors
// are ignored: a directory left is only space.
func sweepBinaries(tmp string, now time.Time) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "switchboard-bin-") {
			continue
		}
		path := filepath.Join(tmp, name)
		if rest, ok := strings.CutPrefix(name, binPrefix); ok {
			pid, _, _ := strings.Cut(rest, "-")
			if n, err := strconv.Atoi(pid); err == nil && n > 0 && !processAlive(n) {
				_ = os.RemoveAll(path)
			}
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > oldBinAge {
			_ = os.RemoveAll(path)
		}
	}
}

// processAlive reports whether a process pid exists (a zombie included).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
