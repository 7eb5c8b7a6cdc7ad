package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSweepBinaries: the directories of binaries of processes that are
// gone are removed, those of live ones kept, and of the earlier naming
// only the old ones go; other directories are not touched.
func TestSweepBinaries(t *testing.T) {
	tmp := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	dirs := map[string]bool{ // name: kept
		fmt.Sprintf("%s%d-123", binPrefix, os.Getpid()):      true,
		fmt.Sprintf("%s%d-456", binPrefix, dead.Process.Pid): false,
		"switchboard-bin-987654":                             true,  // earlier naming, new
		"switchboard-bin-111111":                             false, // earlier naming, old
		"switchboard-other":                                  true,
		fmt.Sprintf("%sx-1", binPrefix):                      true, // no pid
	}
	for name := range dirs {
		if err := os.Mkdir(filepath.Join(tmp, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-oldBinAge - time.Minute)
	if err := os.Chtimes(filepath.Join(tmp, "switchboard-bin-111111"), old, old); err != nil {
		t.Fatal(err)
	}
	sweepBinaries(tmp, now)
	for name, kept := range dirs {
		_, err := os.Stat(filepath.Join(tmp, name))
		if got := err == nil; got != kept {
			t.Errorf("%s: kept %v, want %v", name, got, kept)
		}
	}
}
