package testkit

import (
	"fmt"
	"strings"
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

// Subscriptions returns how many subscriptions the server's accounts hold
// now. A client that goes away leaves Clients first and its subscriptions
// a moment later: a test that must know the server routes nothing more to
// it waits for both.
func (n *NATS) Subscriptions() int {
	if n.srv == nil {
		return 0
	}
	return int(n.srv.NumSubscriptions())
}

// StartNATSCluster starts size NATS servers routed into one cluster, each
// on a client port and a cluster port of its own that it keeps across Stop
// and Start, and waits until every server has a route to every other. They
// stop when the test ends.
func StartNATSCluster(t testing.TB, size int) []*NATS {
	t.Helper()
	cports := make([]int, size)
	routes := make([]string, size)
	for i := range cports {
		cports[i] = RestartablePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", cports[i])
	}
	ns := make([]*NATS, size)
	for i := range ns {
		n := &NATS{t: t, Port: RestartablePort(t)}
		n.opts = func(o *server.Options) {
			o.ServerName = fmt.Sprintf("n%d", i)
			o.Cluster = server.ClusterOpts{Name: "switchboard-test", Host: "127.0.0.1", Port: cports[i]}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		t.Cleanup(n.Stop)
		n.Start()
		ns[i] = n
	}
	for _, n := range ns {
		n.AwaitRoutes(size - 1)
	}
	return ns
}

// AwaitRoutes waits until the server is routed to peers other servers.
func (n *NATS) AwaitRoutes(peers int) {
	n.t.Helper()
	Eventually(n.t, 10*time.Second, fmt.Sprintf("nats on port %d routed to %d servers", n.Port, peers), func() bool {
		return n.srv != nil && n.srv.NumRemotes() >= peers
	})
}

// ClusterURL returns the URLs of ns, comma-separated: a NATS_URL that
// names every server of a cluster.
func ClusterURL(ns []*NATS) string {
	urls := make([]string, len(ns))
	for i, n := range ns {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}
