package fanout_test

import (
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestDispatchArgsNotUTF8Dropped: 30465b6 made handlers-svc refuse
// dispatch args that are not UTF-8 (proto.ValidArgs), since the gateway
// copies args into a text frame that a client must fail the connection
// for (RFC 6455 8.1, 1007). The gateway itself still takes such a body
// from any publisher (an earlier handlers-svc during a rolling update,
// another language's publisher; docs/protocol.md section 4 says a worker
// drops a body that is not a valid dispatch): DecodeDispatchLazy's fast
// path refuses a body that is not UTF-8, but its encoding/json fallback
// keeps the args' bytes as they are, and the worker delivers them, as it
// does not do for a handler's result (proto.DecodeResult refuses one that
// is not UTF-8). The check costs nothing on the hot path: the fast path
// already runs utf8.Valid on every body.
//
// Expected: such a body is dropped as malformed, as a result is.
func TestDispatchArgsNotUTF8Dropped(t *testing.T) {
	r := testkit.StartRedis(t)
	pub := client(t, r)
	in := make(inbox, 16)
	s := run(t, r, in)
	waitLive(t, s, true)

	publish(t, pub, "{\"event\":\"note\",\"args\":{\"text\":\"caf\xe9\"},\"users\":[\"bob\"]}")
	publish(t, pub, `{"event":"marker","users":["bob"]}`)
	for {
		d := in.next(t)
		if d.Event == "marker" {
			break
		}
		if !utf8.Valid(d.Args) {
			t.Errorf("dispatch %s delivered with args %q, which are not UTF-8: every socket of bob is failed (1007)", d.Event, d.Args)
		}
	}
}
