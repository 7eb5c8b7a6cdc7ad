package metrics

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestMakeDirRemovesStaleDirs: MakeDir removes the directories of
// supervisors that are gone (and one named after this very process, left
// by a predecessor with the same pid), keeps those of running ones, and
// makes a private directory of its own.
func TestMakeDirRemovesStaleDirs(t *testing.T) {
	parent := t.TempDir()
	// A pid that no process has: one that ran and was reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid
	mk := func(pid int) string {
		path := filepath.Join(parent, dirPrefix+strconv.Itoa(pid)+"-123")
		if err := os.MkdirAll(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(path, "worker-0.sock"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	stale, mine, live := mk(gone), mk(os.Getpid()), mk(os.Getppid())
	other := filepath.Join(parent, "something-else")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}

	dir, err := MakeDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{stale: false, mine: false, live: true, other: true, dir: true} {
		_, err := os.Stat(path)
		if exists := err == nil; exists != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(path), exists, want)
		}
	}
	if st, err := os.Stat(dir); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o700 {
		t.Errorf("new directory %s has mode %v, want 0700", dir, st.Mode().Perm())
	}
}
