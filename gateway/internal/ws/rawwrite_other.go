//go:build !linux

package ws

import (
	"errors"
	"net"
	"syscall"
)

// writeFrames is not used where raw sends are not implemented: Conn writes
// through net.Conn there (see Conn.writeBatch).
func writeFrames(syscall.RawConn, net.Conn, []byte) error { return errors.ErrUnsupported }

const rawWrites = false
