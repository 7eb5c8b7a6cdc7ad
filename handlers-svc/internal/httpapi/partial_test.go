package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestClusterPartlyDeliveredAnswerSaysSo: on a Redis Cluster, a dispatch
// one master refuses at once (OOM: Redis answered, nothing ran there)
// while another recorded and published it is answered 504 timeout, as
// docs/protocol.md section 4 says. Found by review: its message said
// "dispatch timed out or got no answer from Redis: it may or may not have
// been delivered", though Redis answered every call at once and some
// users surely had it, and with an Idempotency-Key it promised an outcome
// that never comes. The message says the dispatch was partly delivered,
// and the body names in "pos" the users who have it.
func TestClusterPartlyDeliveredAnswerSaysSo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: dispatch.OnConnect, MaxRetries: -1})
	url, _ := idemServer(t, rdb, rdb, nil)

	full := c.NodeOf(proto.UserStreamKey("alice"))
	bob := ""
	for i := 0; bob == ""; i++ {
		if u := fmt.Sprintf("bob%d", i); c.NodeOf(proto.UserStreamKey(u)).Addr() != full.Addr() {
			bob = u
		}
	}
	k := "" // a key whose record is on a master that takes writes
	for i := 0; k == ""; i++ {
		if s := fmt.Sprintf("partly-%d", i); c.NodeOf(proto.IdempotencyKey(s)).Addr() != full.Addr() {
			k = s
		}
	}
	body := `{"event":"e","users":["alice","` + bob + `"]}`
	if a := postIdem(t, url, body); a.status != http.StatusOK {
		t.Fatalf("warm-up: %+v", a)
	}
	node := redis.NewClient(&redis.Options{Addr: full.Addr()})
	defer node.Close()
	if err := node.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := node.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer node.ConfigSet(context.Background(), "maxmemory", "0")

	for _, tt := range []struct {
		name string
		idem []string
	}{{"no key", nil}, {"key", []string{k}}} {
		before := xlen(t, rdb, bob)
		a := postIdem(t, url, body, tt.idem...)
		if n := xlen(t, rdb, bob); n != before+1 {
			t.Fatalf("%s: %s's stream %d from %d, want one more (the fault did not reproduce)", tt.name, bob, n, before)
		}
		var reply proto.Reply
		_ = json.Unmarshal([]byte(a.body), &reply)
		if a.status != http.StatusGatewayTimeout || reply.Error == nil || reply.Error.Code != proto.CodeTimeout {
			t.Fatalf("%s: %+v, want 504 timeout", tt.name, a)
		}
		if !strings.Contains(reply.Error.Message, "partly delivered") {
			t.Errorf("%s: 504 message %q: want it to say the dispatch was partly delivered (docs/protocol.md section 4), not that Redis did not answer", tt.name, reply.Error.Message)
		}
		var got dispatch.Positions
		if err := json.Unmarshal([]byte(a.body), &got); err != nil {
			t.Fatalf("%s: body %s: %v", tt.name, a.body, err)
		}
		if p, ok := got.Users[bob]; !ok || p == "" || len(got.Users) != 1 {
			t.Errorf("%s: 504 body %s: want \"pos\" to name %s, who has it, and only him (not alice, who does not)", tt.name, a.body, bob)
		}
	}
}
