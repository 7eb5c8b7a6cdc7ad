//go:build !linux

package ws

import (
	"errors"
	"syscall"
)

// writeAll is not used where raw sends are not implemented: Conn writes
// through net.Conn there (see Conn.write).
func writeAll(syscall.RawConn, []byte) error { return errors.ErrUnsupported }

func trySend(_ syscall.RawConn, p []byte) ([]byte, error) { return p, errors.ErrUnsupported }

const rawWrites = false
