package metrics

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dirPrefix begins the name of a supervisor's sockets directory, followed
// by the supervisor's pid and a random suffix.
const dirPrefix = "switchboard-gateway-"

// MakeDir creates the supervisor's private (0700) directory for the
// workers' metrics sockets in parent (os.TempDir() when ""), named after
// this process. It first removes the directories that supervisors which
// are gone left in parent: one killed with SIGKILL never runs its
// deferred removal, and a container restarted with the same filesystem
// gets the same pid again. Call it once per process: a directory named
// after this process is taken for a predecessor's.
func MakeDir(parent string) (string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	removeStaleDirs(parent)
	return os.MkdirTemp(parent, dirPrefix+strconv.Itoa(os.Getpid())+"-")
}

// removeStaleDirs removes the sockets directories in parent whose
// supervisor no longer runs. It is best effort: what cannot be removed (a
// directory of another user) is left.
func removeStaleDirs(parent string) {
	paths, _ := filepath.Glob(filepath.Join(parent, dirPrefix+"*-*"))
	for _, path := range paths {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(path), dirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 {
			continue
		}
		if pid == os.Getpid() || !running(pid) {
			_ = os.RemoveAll(path)
		}
	}
}

// running reports whether a process with pid exists (it may belong to
// another user).
func running(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
