package testserver

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartNATS runs an embedded NATS server on 127.0.0.1:port until the test
// ends; port 0 or -1 picks a random free port (ns.ClientURL() tells which).
func StartNATS(t testing.TB, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT // for nats-server, 0 means its default port 4222
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatalf("nats server on port %d not ready", port)
	}
	return ns
}
