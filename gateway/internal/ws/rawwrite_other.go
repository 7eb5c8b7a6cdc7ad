//go:build !linux

package ws

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
)

// writeFrames is not used where raw sends are not implemented: Conn writes
// through net.Conn there (see Conn.writeBatch).
func writeFrames(syscall.RawConn, net.Conn, []byte, []byte, *atomic.Bool) (int, error) {
	return 0, errors.ErrUnsupported
}

const rawWrites = false
