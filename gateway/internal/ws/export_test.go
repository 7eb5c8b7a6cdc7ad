package ws

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// SetPongWait makes the read deadline d instead of PongWait until the
// test ends; call it before the test's sockets are made.
func SetPongWait(t *testing.T, d time.Duration) {
	t.Cleanup(func() { pongWait.Store(int64(PongWait)) })
	pongWait.Store(int64(d))
}

// ClientFrame lets the external tests write raw client frames.
var ClientFrame = clientFrame

// MeterSource is what c's meter reads the network through; nil when c has
// no meter.
func MeterSource(c *Conn) any {
	if c.meter == nil {
		return nil
	}
	return c.meter.net
}

// RawConn is the RawConn c waits for data on; nil: none.
func RawConn(c *Conn) syscall.RawConn { return c.rc }

// NetConn is c's network socket (under the gate).
func NetConn(c *Conn) net.Conn { return c.netConn() }

// UpgradedNetConn is u's network socket (under the gate), before NewConn.
func UpgradedNetConn(u Upgraded) net.Conn {
	if u.g != nil {
		return u.g.Conn
	}
	return u.WS.NetConn()
}
