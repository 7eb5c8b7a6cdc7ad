package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds the gateway and handlers-svc once per test process (with
// the race detector when the tests have it) and returns their paths. The
// gateway is built with the faultinject tag: the fault injection the
// end-to-end tests use (SWITCHBOARD_TEST_PANIC_EVENT) is only in such a
// build, never in a production binary.
func Binaries(t testing.TB) (gateway, handlers string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "switchboard-bin-")
		if buildErr != nil {
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		for pkg, tags := range map[string]string{
			"github.com/switchboard/switchboard/gateway/cmd/gateway":           "faultinject",
			"github.com/switchboard/switchboard/handlers-svc/cmd/handlers-svc": "",
		} {
			args := []string{"build", "-tags", tags}
			if raceEnabled {
				args = append(args, "-race")
			}
			args = append(args, "-o", filepath.Join(buildDir, filepath.Base(pkg)), pkg)
			out, err := exec.Command(goBin, args...).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "gateway"), filepath.Join(buildDir, "handlers-svc")
}
