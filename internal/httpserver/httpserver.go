// Package httpserver builds the http.Server behind every HTTP port of
// switchboard (the gateway's client port, its admin port and the workers'
// private admin sockets, and handlers-svc's port), so that each has the
// same bounds on what a client that never finishes a request can hold:
// request headers must arrive within ReadHeaderTimeout and be at most
// MaxHeaderBytes, a whole request, its body included, within ReadTimeout,
// and an idle keep-alive connection is closed after IdleTimeout
// (docs/security.md). A WebSocket upgrade is not cut off by ReadTimeout:
// gorilla clears the connection's deadlines when it takes it over.
package httpserver

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

const (
	// ReadHeaderTimeout is how long a client has to send its request line
	// and headers: a slowloris client that trickles them is cut off here.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout is how long a client has to send a whole request, its
	// body included: one that announces a body and sends it slowly, or
	// never, is cut off here. Without it net/http waits for a body it
	// discards (after a handler that did not read it) with no deadline.
	ReadTimeout = 10 * time.Second
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request.
	IdleTimeout = 60 * time.Second
	// MaxHeaderBytes bounds the request line and headers (net/http allows
	// 4 KiB of buffering beyond it). A token is at most 4 KiB, so 16 KiB
	// leaves room for cookies and proxies' headers.
	MaxHeaderBytes = 16 << 10
)

// New returns a server of h with the package's bounds, logging its own
// errors (a failed accept, a bad TLS handshake) to log. The caller may set
// more fields (ConnState, ConnContext) before serving.
func New(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log),
	}
}

// CheckAddr checks a listen address, host:port, as net.Listen takes it:
// the port a number from 0 to 65535 or a service name the system knows
// (http). A port that would fail only at listen time is refused with the
// configuration, where the error names the setting.
func CheckAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	return nil
}
