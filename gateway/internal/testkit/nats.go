package testkit

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an embedded NATS server owned by a test.
type NATS struct {
	t    testing.TB
	Port int
	srv  *server.Server
}

// StartNATS starts a NATS server on a free port and stops it when the test
// ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{t: t, Port: RestartablePort(t)}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// URL returns the nats:// URL of the server.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// Start (re)starts the server on its port.
func (n *NATS) Start() {
	n.t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.Port, NoLog: true, NoSigs: true})
	if err != nil {
		n.t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats server not ready")
	}
	n.srv = srv
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
