package testkit

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an embedded NATS server owned by a test, on a port of its own
// that it keeps across Stop and Start.
type NATS struct {
	t    testing.TB
	Port int
	srv  *server.Server
	opts func(*server.Options) // changes the server's options before each start; nil: none
}

// StartNATS starts a NATS server on a free port and stops it when the test
// ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return StartNATSOn(t, RestartablePort(t))
}

// StartNATSOn is StartNATS on the given port.
func StartNATSOn(t testing.TB, port int) *NATS {
	t.Helper()
	n := &NATS{t: t, Port: port}
	t.Cleanup(n.Stop)
	n.Start()
	return n
}

// URL returns the nats:// URL of the server.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// Start (re)starts the server on its port and waits until it accepts
// connections.
func (n *NATS) Start() {
	n.t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: n.Port, NoLog: true, NoSigs: true}
	if n.opts != nil {
		n.opts(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		n.t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	n.srv = srv
	if !srv.ReadyForConnections(10 * time.Second) {
		n.t.Fatalf("nats server on port %d not ready", n.Port)
	}
}

// Stop shuts the server down; calling it twice is harmless.
func (n *NATS) Stop() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// Clients returns how many client connections the server holds now.
func (n *NATS) Clients() int {
	if n.srv == nil {
		return 0
	}
	return n.srv.NumClients()
}
