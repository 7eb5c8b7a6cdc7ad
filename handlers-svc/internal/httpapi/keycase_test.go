package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// TestDispatchAPIKeysMatchExactly: the body's keys are those of
// docs/protocol.md section 7, matched exactly as the gateway matches an
// envelope's (section 2: "Event" is an unknown field, not event). A key
// in other case must not override or add to what the body's fields say:
// a caller (or a policy layer in front of the API) that reads
// "event":"e" and no "broadcast" must not see switchboard dispatch
// another event, or to every socket.
func TestDispatchAPIKeysMatchExactly(t *testing.T) {
	url, _, rdb := server(t)
	auth := "Bearer " + key

	status, body := post(t, url, auth, `{"event":"e","users":["bob"],"EVENT":"f"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	xs, err := rdb.XRange(context.Background(), proto.UserStreamKey("bob"), "-", "+").Result()
	if err != nil || len(xs) != 1 {
		t.Fatalf("bob's stream: %v %v", xs, err)
	}
	if got := xs[0].Values["e"]; got != "e" {
		t.Errorf(`body {"event":"e",...,"EVENT":"f"} dispatched event %q, want "e"`, got)
	}

	status, body = post(t, url, auth, `{"event":"e","users":["carol"],"Broadcast":true}`)
	if status != http.StatusOK || strings.Contains(body, `"bpos"`) {
		t.Errorf(`body {"users":["carol"],"Broadcast":true} answered %d %s: broadcast to every socket, want to carol only`, status, body)
	}
}
