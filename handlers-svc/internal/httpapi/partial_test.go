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
	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
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

// TestClusterTransientPartlyDeliveredBody: in per_user
// mode, a transient dispatch (recorded nowhere, so with no positions) to alice and bob, on a
// Redis Cluster where Redis fails the call of alice's partition (its run
// key overwritten: WRONGTYPE), is published to bob and fails for alice:
// 500 handler_error, partly delivered (a 504 when a master is
// unreachable, the same body). Found: the body is
// {"error":{...,"message":"dispatch partly delivered: ...: the users in
// \"pos\" ... have it; the others did not get it, ..."},"pos":{}}: "pos"
// names nobody, so the message says that bob, who got it, did not, and a
// caller that follows docs/protocol.md section 7's recipe ("send the
// message to the users \"pos\" does not name") sends it to bob again.
// protocol.md says a transient dispatch has no positions; the answer
// must not say its "pos" names who has it. Now a partly delivered answer
// whose positions name nobody says the dispatch has none and that which
// targets got it is not known.
func TestClusterTransientPartlyDeliveredBody(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := testkit.StartRedisCluster(t, 3)
	rdb := c.Client(&redis.ClusterOptions{OnConnect: dispatch.OnConnect, MaxRetries: -1})
	// Per user (FANOUT_MODE=per_user): a transient dispatch to users is
	// published in each user's partition (SPUBLISH), one call per
	// partition; on the shared channel it would be one call anywhere.
	perUser := dispatch.New(rdb, dispatch.Options{Window: time.Minute, PerUser: true})
	url, _ := idemServer(t, rdb, rdb, func(httpapi.Dispatcher) httpapi.Dispatcher { return perUser })

	full := c.NodeOf(proto.UserStreamKey("alice"))
	bob := ""
	for i := 0; bob == ""; i++ {
		if u := fmt.Sprintf("bob%d", i); c.NodeOf(proto.UserStreamKey(u)).Addr() != full.Addr() {
			bob = u
		}
	}
	if a := postIdem(t, url, `{"event":"warm","users":["alice","`+bob+`"]}`); a.status != http.StatusOK {
		t.Fatalf("warm-up: %+v", a)
	}
	sub := rdb.SSubscribe(ctx, proto.UserChannel(bob))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	// Alice's partition's run key overwritten with a list: the script
	// fails on its first line there (WRONGTYPE), and runs in bob's.
	runKey := proto.RunKey(proto.PartitionOf("alice"))
	if err := rdb.Del(ctx, runKey).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.RPush(ctx, runKey, "not a run").Err(); err != nil {
		t.Fatal(err)
	}

	a := postIdem(t, url, `{"event":"volatile","users":["alice","`+bob+`"],"transient":true}`)
	t.Logf("answer %+v", a)
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		msg, err := sub.ReceiveMessage(rctx)
		rcancel()
		if err != nil {
			t.Fatalf("bob's part was not published (%v): the fault did not reproduce", err)
		}
		t.Logf("published %s", msg.Payload)
		if strings.Contains(msg.Payload, `"volatile"`) && strings.Contains(msg.Payload, bob) {
			break
		}
	}
	var reply proto.Reply
	_ = json.Unmarshal([]byte(a.body), &reply)
	if reply.Error == nil || !strings.Contains(reply.Error.Message, "partly delivered") {
		t.Fatalf("%+v, want partly delivered", a)
	}
	var got dispatch.Positions
	_ = json.Unmarshal([]byte(a.body), &got)
	if len(got.Users) == 0 && strings.Contains(reply.Error.Message, "the others did not get it") {
		t.Errorf("transient, partly delivered: body %s: its \"pos\" names nobody and its message says the others did not get it, though %s did", a.body, bob)
	}
}
