package supervisor

import (
	"os"

	"golang.org/x/sys/unix"
)

// announcePipeSize is the buffer asked for an announce pipe: Linux's
// default of 64 KiB holds about 2,000 records, 1 MiB (the most an
// unprivileged process may ask, by default) some 30,000, so a supervisor
// descheduled for a moment never makes a worker keep records back.
const announcePipeSize = 1 << 20

// growPipe asks the kernel for a larger buffer for the pipe of f; if it
// refuses, the default serves.
func growPipe(f *os.File) {
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, announcePipeSize)
}
