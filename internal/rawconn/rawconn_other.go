//go:build !linux

package rawconn

import "net"

func wrap(c net.Conn) net.Conn { return c }

func newReader(c net.Conn) Reader { return Reader{c: c, rc: rawConn(c)} }

// readRaw is not reached: no Reader reads raw here (newReader).
func (r *Reader) readRaw(p []byte) (int, error) { return r.c.Read(p) }
