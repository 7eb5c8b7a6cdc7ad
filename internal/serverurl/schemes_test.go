package serverurl_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/serverurl"
)

// TestUnixSocketWithDBParameter: checkDB (c77c506) refused every
// unix:// REDIS_URL that selects a database: on a unix URL the path is the
// socket's, not a database, and the db parameter is the only way to name
// one (go-redis reads it so, and the docs ask both services to name one
// database). "unix:///run/redis.sock?db=2" is refused at start with "the
// path names database run/redis.sock and the db parameter 2", where the
// release before accepted it and go-redis selects database 2.
func TestUnixSocketWithDBParameter(t *testing.T) {
	for _, s := range []string{
		"unix:///run/redis.sock?db=2",
		"unix://:pw@/run/redis.sock?db=1",
	} {
		opt, err := redis.ParseURL(s)
		if err != nil || opt.DB == 0 {
			t.Fatalf("go-redis reads %q as db %v, %v", s, opt, err)
		}
		if err := serverurl.Redis(s); err != nil {
			t.Errorf("Redis(%q) = %v; go-redis selects database %d on that socket: want it accepted", s, err, opt.DB)
		}
	}
}

// TestNATSMixedListUpperCaseScheme: the mixed-list refusal (c77c506)
// looked for a lower-case "ws://" or "wss://" prefix only, while
// natsServer accepts a scheme in any case (url.Parse lowers it) and
// nats.go, which compares the parsed scheme, refuses the mix: a list such
// as "WS://h:1,nats://h:2" passes the check at start and every connect
// then fails (a worker crash loop), as the fix meant to rule out.
func TestNATSMixedListUpperCaseScheme(t *testing.T) {
	for _, s := range []string{"WS://127.0.0.1:1,nats://127.0.0.1:2", "nats://127.0.0.1:1,Wss://127.0.0.1:2"} {
		if serverurl.NATS(s) != nil {
			continue // refused at start: fine
		}
		nc, err := nats.Connect(s, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
		if err != nil {
			t.Errorf("NATS(%q) accepted it, but nats.Connect refuses it: %v", s, err)
			continue
		}
		nc.Close()
	}
}
