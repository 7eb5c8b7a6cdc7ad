package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSweepBinaries: the directories of binaries whose lock is free (their
// process is gone) are removed, one locked by a live process is kept, and
// of those without a lock only the old ones go; other directories are not
// touched.
func TestSweepBinaries(t *testing.T) {
	tmp := t.TempDir()
	now := time.Now()
	mk := func(name string) string {
		dir := filepath.Join(tmp, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// A live process holds the lock: another one, so that its lock is
	// another open file description than any this process opens.
	live := mk(binPrefix + "live")
	holder := exec.Command("flock", filepath.Join(live, lockFile), "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Skipf("flock(1): %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	Eventually(t, 10*time.Second, "flock(1) holds the lock", func() bool {
		_, err := os.Stat(filepath.Join(live, lockFile))
		return err == nil
	})
	mine := mk(binPrefix + "mine")
	if err := lockDir(mine); err != nil {
		t.Fatal(err)
	}
	gone := mk(binPrefix + "gone")
	if err := os.WriteFile(filepath.Join(gone, lockFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mk("switchboard-bin-987654") // earlier naming, new
	old := mk("switchboard-bin-111111")
	oldTime := now.Add(-oldBinAge - time.Minute)
	if err := os.Chtimes(old, oldTime, oldTime); err != nil {
		t.Fatal(err)
	}
	mk("switchboard-other")

	sweepBinaries(tmp, now)
	for name, kept := range map[string]bool{
		binPrefix + "live": true, binPrefix + "mine": true, binPrefix + "gone": false,
		"switchboard-bin-987654": true, "switchboard-bin-111111": false, "switchboard-other": true,
	} {
		_, err := os.Stat(filepath.Join(tmp, name))
		if got := err == nil; got != kept {
			t.Errorf("%s: kept %v, want %v", name, got, kept)
		}
	}
}
