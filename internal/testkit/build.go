package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
		b.dir, b.err = os.MkdirTemp("", binPrefix)
		if b.err != nil {
			return
		}
		if b.err = lockDir(b.dir); b.err != nil {
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

// binPrefix begins the name of a directory of built binaries. A test
// process cannot remove its directory when it ends (a package has no hook
// for that, and one killed runs none), so it holds a lock on the
// directory's lockFile for as long as it lives, and each one sweeps the
// directories whose lock it can take: their process is gone, whatever its
// PID namespace. Before, every test process left its ~50 MB in the
// temporary directory, 18 GB of them on a shared box, until a build failed
// for want of space.
const binPrefix = "switchboard-bin-p"

// lockFile is the file of a directory of binaries that its process keeps
// locked (flock) while it lives.
const lockFile = ".lock"

// oldBinAge is the age past which a directory with no lock to take (of the
// earlier naming, or one whose process has not locked it yet) is taken as
// abandoned: longer than any test process runs.
const oldBinAge = 3 * time.Hour

// held keeps the lock of this process's directories: never closed.
var held []*os.File

// lockDir locks dir's lockFile for the life of this process. The file is
// locked under another name and then renamed into place (the lock goes
// with the file): created as lockFile and locked after, another process's
// sweep could open it in between, take the lock, and remove the directory
// this process was about to build into.
func lockDir(dir string) error {
	f, err := os.CreateTemp(dir, lockFile+"-new-")
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, lockFile)); err != nil {
		f.Close()
		return err
	}
	held = append(held, f)
	return nil
}

// sweepBinaries removes the directories of binaries in tmp whose lock it
// can take (their process is gone), and those without a lock older than
// oldBinAge. Errors are ignored: a directory left is only space.
func sweepBinaries(tmp string, now time.Time) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "switchboard-bin-") {
			continue
		}
		path := filepath.Join(tmp, e.Name())
		if f, err := os.OpenFile(filepath.Join(path, lockFile), os.O_RDWR, 0); err == nil {
			free := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
			f.Close() // and with it the lock just taken
			if free {
				_ = os.RemoveAll(path)
			}
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > oldBinAge {
			_ = os.RemoveAll(path)
		}
	}
}
