package httpapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/proto"
)

// TestDispatchAPIExcept: the body's except_conns is published with the
// dispatch; a list too long, an id that is none, or a list that is not
// one of strings is a 400 naming it, and nothing is published.
func TestDispatchAPIExcept(t *testing.T) {
	url, _, rdb := server(t)
	ps := rdb.Subscribe(t.Context(), proto.Channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	many := make([]string, dispatch.MaxConns+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"c%d"`, i)
	}
	for name, list := range map[string]string{
		"too many":   "[" + strings.Join(many, ",") + "]",
		"empty id":   `[""]`,
		"space":      `["a b"]`,
		"too long":   `["` + strings.Repeat("c", dispatch.MaxConnLen+1) + `"]`,
		"not a list": `"c1"`,
		"numbers":    `[1]`,
	} {
		status, body := post(t, url, "Bearer "+key, `{"event":"m","users":["bob"],"except_conns":`+list+`}`)
		if status != http.StatusBadRequest || !strings.Contains(body, "except_conns") {
			t.Errorf("%s: %d %s, want 400 naming except_conns", name, status, body)
		}
	}
	status, body := post(t, url, "Bearer "+key, `{"event":"m","users":["bob"],"except_conns":["w0-1","w1-2"]}`)
	if status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	msg, err := ps.ReceiveMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d, err := proto.DecodeDispatch([]byte(msg.Payload))
	if err != nil {
		t.Fatal(err)
	}
	if d.Event != "m" || !slices.Equal(d.Except, []string{"w0-1", "w1-2"}) {
		t.Fatalf("published %s, want m leaving out w0-1 and w1-2 (nothing before it)", msg.Payload)
	}
}
