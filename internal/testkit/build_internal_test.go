package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
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
	// flock(1) creates the file and then locks it: wait for the lock, not
	// the file, or the sweep below can come between the two and take it.
	Eventually(t, 10*time.Second, "flock(1) holds the lock", func() bool { return locked(filepath.Join(live, lockFile)) })
	mine := mk(binPrefix + "mine")
	if err := lockDir(mine); err != nil {
		t.Fatal(err)
	}
	// lockDir's file is in place already locked, and alone.
	if !locked(filepath.Join(mine, lockFile)) {
		t.Fatalf("%s is not locked after lockDir", lockFile)
	}
	if entries, _ := os.ReadDir(mine); len(entries) != 1 {
		t.Fatalf("lockDir left %d files, want %s alone", len(entries), lockFile)
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

// locked reports whether another open file description holds path's flock.
func locked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == syscall.EWOULDBLOCK
}
