package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/internal/readiness"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestGatewayReadyzWhenNATSRefusesItsInbox: the gateway's NATS user may
// publish the requests but its subscribe permission leaves out the inbox
// its replies come to (operations.md suggests narrowing the gateway's
// subscribe to "its inbox prefix"; a prefix that does not match is this).
// NATS takes the connection and the publishes, and refuses the reply
// subscription after the fact (an async permissions violation, which the
// gateway logs). From then on every request runs in handlers-svc, its
// events are delivered, and its client is answered timeout: the gateway
// serves nothing, so /readyz must say so, as handlers-svc's does since
// 9a287a8 for its own refused subscriptions. It stayed 200; then, since
// nats.go subscribes the inbox at the first request, it said so only
// after a request had been lost: it must say so from the start, before
// any request.
func TestGatewayReadyzWhenNATSRefusesItsInbox(t *testing.T) {
	n := testkit.StartNATSWith(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "gateway", Password: "gw-pw", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"handlers.>", "switchboard.lifecycle.>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.gateway-a.>"}}, // not the inbox nats.go makes
			}},
			{Username: "handlers", Password: "hs-pw"},
		}
	})
	url := func(user, pass string) string { return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, pass, n.Port) }
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1, NATS: n,
		Env:         []string{"NATS_URL=" + url("gateway", "gw-pw"), "GATEWAY_HANDLER_TIMEOUT=2s"},
		HandlersEnv: []string{"NATS_URL=" + url("handlers", "hs-pw"), "HANDLERS_TIMEOUT=1s"},
		Unready:     true})

	// No request yet: the worker subscribed its inbox at start.
	ready := "http://" + s.MetricsAddr + "/readyz"
	var body readiness.Body
	testkit.Eventually(t, 20*time.Second, "the gateway's /readyz is 503 naming the refused inbox, before any request", func() bool {
		body = readyzBody(ready)
		return !body.Ready() && len(body.Workers) == 1 && slices.ContainsFunc(body.Workers[0].Reasons, func(r string) bool {
			return strings.HasPrefix(r, "nats refuses the subscription to _INBOX.")
		})
	})
	if got := testkit.CountLogs(s.Gateway.Logs(), "nats async error", nil); got == 0 {
		t.Fatal("/readyz names the refusal, and the gateway did not log it")
	}

	alice := s.Dial("alice")
	alice.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "r1")
	f := alice.ExpectRef(wait, "r1")
	if code := errorCode(f); code != proto.CodeTimeout {
		t.Fatalf("reply %s %s, want error timeout: the reply cannot reach the gateway", f.Event, f.Args)
	}
	if code, _ := get(ready); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d after the request, want 503 while NATS refuses the inbox", code)
	}
}

// readyzBody reads the /readyz answer at url (not ready when there is
// none).
func readyzBody(url string) readiness.Body {
	resp, err := plain.Get(url)
	if err != nil {
		return readiness.New(err.Error())
	}
	defer resp.Body.Close()
	return readiness.Read(resp)
}
