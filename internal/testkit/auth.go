package testkit

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// StartNATSWith is StartNATS with the server's options changed by opts
// before each start: users, a token, permissions, TLS. opts must keep the
// host and port it is given.
func StartNATSWith(t testing.TB, opts func(*server.Options)) *NATS {
	t.Helper()
	n := &NATS{t: t, Port: RestartablePort(t), opts: opts}
	t.Cleanup(n.Stop)
	n.Start()
	return n
}

// StartRedisWithPassword is StartRedis with requirepass set to password:
// a client must AUTH (as the default user, or as an ACL user added
// later) before any other command.
func StartRedisWithPassword(t testing.TB, password string) *Redis {
	t.Helper()
	r := newRedis(t, RestartablePort(t))
	r.password = password
	if err := r.start(); err != nil {
		t.Fatalf("redis-server did not start: %v", err)
	}
	return r
}
