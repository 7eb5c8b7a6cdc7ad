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

// TestClusterTransientPartlyDeliveredBody (review, failing): in per_user
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
// must not say its "pos" names who has it.
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
