// Package httpserver builds the http.Server behind every HTTP port of
// switchboard (the gateway's client port, its admin port and the workers'
// private admin sockets, and handlers-svc's port), so that each has the
// same bounds on what a client that never finishes a request can hold:
// request headers must arrive within ReadHeaderTimeout and be at most
// MaxHeaderBytes, and an idle keep-alive connection is closed after
// IdleTimeout (docs/security.md).
package httpserver

import (
	"net/http"
	"time"

	"go.uber.org/zap"
)

const (
	// ReadHeaderTimeout is how long a client has to send its request line
	// and headers: a slowloris client that trickles them is cut off here.
	ReadHeaderTimeout = 5 * time.Second
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
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log),
	}
}
