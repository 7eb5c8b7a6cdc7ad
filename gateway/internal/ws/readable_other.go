//go:build !unix

package ws

import "syscall"

// peekReadable cannot peek here: the read loop then waits inside gorilla's
// read, which costs a deeper goroutine stack per idle socket but is
// otherwise the same.
func peekReadable(uintptr) bool { return true }

// takeControl leaves every frame to gorilla here.
func takeControl(syscall.RawConn) (int, []byte, bool) { return 0, nil, false }
