package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// clusterStack starts two workers and handlers-svc in FANOUT_MODE=per_user
// on a 3-master Redis Cluster of the test's own, with the dispatch API on.
func clusterStack(t *testing.T) (*testkit.Stack, *testkit.RedisCluster) {
	t.Helper()
	c := testkit.StartRedisCluster(t, 3)
	s := testkit.StartStack(t, testkit.StackOptions{
		Workers: 2, RedisCluster: c,
		Env:         []string{"FANOUT_MODE=per_user"},
		HandlersEnv: []string{"FANOUT_MODE=per_user", "HANDLERS_API_KEY=" + apiKey},
	})
	return s, c
}

// usersPerMaster returns n users whose streams are on each master of c,
// masters in c.Nodes' order.
func usersPerMaster(t *testing.T, c *testkit.RedisCluster, n int) [][]string {
	t.Helper()
	out := make([][]string, len(c.Nodes))
	for i, full := 0, 0; full < len(c.Nodes); i++ {
		if i > 10000 {
			t.Fatal("no users found on every master")
		}
		u := fmt.Sprintf("cu%d", i)
		node := c.NodeOf(proto.UserMetaKey(u))
		for m, nd := range c.Nodes {
			if nd == node && len(out[m]) < n {
				out[m] = append(out[m], u)
				if len(out[m]) == n {
					full++
				}
			}
		}
	}
	return out
}

// TestRedisClusterAcrossMasters: per_user on a 3-master Redis Cluster, two
// workers, the real binaries. Users whose streams are on different
// masters get each other's messages and a room's; when one master drops
// every pub/sub connection (CLIENT KILL TYPE pubsub) during a stream of
// dispatches, each user still gets every one once, in order (the worker
// heals from the streams); and a device that was away resumes with
// recovered:true and exactly what it missed.
func TestRedisClusterAcrossMasters(t *testing.T) {
	s, c := clusterStack(t)
	byMaster := usersPerMaster(t, c, 2)
	var users []string
	clients := map[string]*testkit.Client{}
	for m, us := range byMaster {
		for i, u := range us {
			users = append(users, u)
			clients[u] = s.DialOn(u, (m+i)%2)
		}
	}

	// sendMessage from a user on one master to one on another.
	from, to := clients[byMaster[0][0]], clients[byMaster[2][1]]
	from.Send("sendMessage", map[string]string{"to": to.User, "text": "hi"}, "m1")
	from.ExpectRef(wait, "m1")
	to.ExpectEvent(wait, "message")
	from.ExpectEvent(wait, "message_sent")

	// A room of every user, one message from a user on the second master.
	for _, u := range users {
		clients[u].Send("joinRoom", map[string]string{"room": "everyone"}, "j-"+u)
		var r roomResult
		roomReply(t, clients[u], "j-"+u, &r)
	}
	sender := clients[byMaster[1][0]]
	sender.Send("sendToRoom", map[string]string{"room": "everyone", "text": "all"}, "r1")
	var sent sentResult
	roomReply(t, sender, "r1", &sent)
	for _, u := range users {
		expectRoomMessage(t, clients[u], sent.MsgID)
	}

	// A stream of dispatches to every user through a kill of one
	// master's pub/sub connections.
	node := redis.NewClient(&redis.Options{Addr: c.Nodes[1].Addr()})
	t.Cleanup(func() { _ = node.Close() })
	list := `"` + strings.Join(users, `","`) + `"`
	const ticks = 60
	for i := range ticks {
		if i == ticks/2 {
			n, err := node.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
			if err != nil || n < int64(s.Workers) {
				t.Fatalf("CLIENT KILL TYPE pubsub: %d, %v; want one per worker at least", n, err)
			}
		}
		body := fmt.Sprintf(`{"event":"tick","args":{"n":%d},"users":[%s]}`, i, list)
		if status, resp := postDispatch(t, s, apiKey, body); status != http.StatusOK {
			t.Fatalf("dispatch %d: %d %s", i, status, resp)
		}
	}
	last := map[string]string{}
	for _, u := range users {
		for i := range ticks {
			f := clients[u].ExpectEvent(wait, "tick")
			if string(f.Args) != fmt.Sprintf(`{"n":%d}`, i) {
				t.Fatalf("%s: tick %d is %s", u, i, f.Args)
			}
			last[u] = f.Pos
		}
	}
	for _, f := range clients[users[0]].Frames() {
		if f.Event == proto.EventResync {
			t.Fatalf("%s got a resync: %s", users[0], f.Args)
		}
	}

	// A device of a user on the third master goes away, misses three
	// dispatches and resumes on the other worker.
	away := byMaster[2][0]
	worker := clients[away].Worker
	clients[away].Close()
	for i := range 3 {
		body := fmt.Sprintf(`{"event":"missed","args":{"n":%d},"users":["%s"]}`, i, away)
		if status, resp := postDispatch(t, s, apiKey, body); status != http.StatusOK {
			t.Fatalf("dispatch: %d %s", status, resp)
		}
	}
	back := resumeOn(t, s, away, last[away], 1-worker)
	if m := back.Connected.Missed; m == nil || *m != 3 {
		t.Fatalf("resumed with %+v, want 3 missed", back.Connected)
	}
	for i := range 3 {
		if f := back.ExpectEvent(wait, "missed"); string(f.Args) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("missed %d is %s", i, f.Args)
		}
	}
}
