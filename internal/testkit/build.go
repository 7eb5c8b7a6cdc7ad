package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
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
		b.dir, b.err = os.MkdirTemp("", "switchboard-bin-")
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
