package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

const apiKey = "e2e-dispatch-key-0123456789"

// postDispatch POSTs body to the dispatch API of s with the bearer key
// (none when key is ""), and returns the status and body.
func postDispatch(t *testing.T, s *testkit.Stack, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.HandlersAddr+"/v1/dispatch", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDispatchAPI: a REST backend's POST /v1/dispatch reaches every device
// of the named users, on every worker, recorded at the positions it
// answers (so a device that was away recovers it), and rooms resolve to
// their members; nobody else gets it, and without the key it is refused.
func TestDispatchAPI(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}})
	bob := []*testkit.Client{s.DialOn("bob", 0), s.DialOn("bob", 1)}
	carol := []*testkit.Client{s.DialOn("carol", 0), s.DialOn("carol", 1)}
	eve := []*testkit.Client{s.DialOn("eve", 0), s.DialOn("eve", 1)}

	status, body := postDispatch(t, s, apiKey, `{"event":"post_updated","args":{"post":"p7"},"users":["bob","carol"]}`)
	if status != http.StatusOK {
		t.Fatalf("POST /v1/dispatch: %d %s", status, body)
	}
	var got struct {
		Pos map[string]string `json:"pos"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Pos["bob"] == "" || got.Pos["carol"] == "" {
		t.Fatalf("body %s, want a position for bob and carol", body)
	}
	for _, c := range append(bob, carol...) {
		f := c.ExpectEvent(wait, "post_updated")
		if f.ID != c.User || string(f.Args) != `{"post":"p7"}` || f.Pos != got.Pos[c.User] {
			t.Fatalf("%s (worker %d) got %+v, want post_updated at %s", c.User, c.Worker, f, got.Pos[c.User])
		}
	}

	// Rooms: carol joins, and a dispatch to the room reaches her devices.
	carol[0].Send("joinRoom", map[string]string{"room": "ops"}, "j1")
	if f := carol[0].ExpectRef(wait, "j1"); f.Event != proto.EventAck {
		t.Fatalf("join: %+v", f)
	}
	status, body = postDispatch(t, s, apiKey, `{"event":"deploy","args":{"v":2},"rooms":["ops"]}`)
	if status != http.StatusOK || !strings.Contains(body, `"carol":"`) {
		t.Fatalf("dispatch to a room: %d %s", status, body)
	}
	for _, c := range carol {
		if f := c.ExpectEvent(wait, "deploy"); string(f.Args) != `{"v":2}` {
			t.Fatalf("carol got %s", f.Args)
		}
	}

	// Refused: no key, a wrong key, a bad body; none of it is delivered.
	for _, tt := range []struct {
		key, body string
		status    int
		code      string
	}{
		{"", `{"event":"leak","users":["eve"]}`, http.StatusUnauthorized, "unauthorized"},
		{apiKey + "x", `{"event":"leak","users":["eve"]}`, http.StatusUnauthorized, "unauthorized"},
		{apiKey, `{"event":"leak","users":"eve"}`, http.StatusBadRequest, "bad_request"},
		{apiKey, `{"event":"error","users":["eve"]}`, http.StatusBadRequest, "bad_request"},
	} {
		status, body := postDispatch(t, s, tt.key, tt.body)
		if status != tt.status || !strings.Contains(body, `"code":"`+tt.code+`"`) {
			t.Errorf("key %q body %s: %d %s, want %d %s", tt.key, tt.body, status, body, tt.status, tt.code)
		}
	}
	// The channel is ordered: once a later dispatch to eve has arrived,
	// a refused one would have arrived before it.
	if status, body := postDispatch(t, s, apiKey, `{"event":"marker","users":["eve"]}`); status != http.StatusOK {
		t.Fatalf("marker: %d %s", status, body)
	}
	for _, c := range eve {
		c.ExpectEvent(wait, "marker")
		for _, f := range c.Frames() {
			if f.Event == "leak" || f.Event == "post_updated" || f.Event == "deploy" {
				t.Fatalf("eve got %s %s", f.Event, f.Args)
			}
		}
	}
}

// TestDispatchAPIConnOnceAcrossMessages: a dispatch to more users than one
// Redis message holds (130) and to connections is published as several
// messages, only one of which names the connections (docs/protocol.md
// section 4). A socket named as a connection whose user is in another of
// those messages gets the event once, with its user's position; a socket
// whose user the dispatch does not name gets it once, transient.
func TestDispatchAPIConnOnceAcrossMessages(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}})
	users := make([]string, 129, 130)
	for i := range users {
		users[i] = fmt.Sprintf("crowd-%03d", i)
	}
	// The 130th user is in a later message than the connections on one
	// Redis (messages hold 128 users); on a Redis Cluster the dispatch is
	// split by partition first, and the connections go with the first
	// user's, so this user is of another partition.
	for i := 0; len(users) < 130; i++ {
		if u := fmt.Sprintf("late-%d", i); proto.PartitionOf(u) != proto.PartitionOf(users[0]) {
			users = append(users, u)
		}
	}
	last := s.DialOn(users[129], 1)
	zed := s.DialOn("zed", 0) // named only as a connection

	body, err := json.Marshal(map[string]any{"event": "crowd_news", "args": map[string]int{"n": 1},
		"users": users, "conns": []string{last.Conn, zed.Conn}})
	if err != nil {
		t.Fatal(err)
	}
	status, resp := postDispatch(t, s, apiKey, string(body))
	if status != http.StatusOK {
		t.Fatalf("POST /v1/dispatch: %d %s", status, resp)
	}
	var got struct {
		Pos map[string]string `json:"pos"`
	}
	if err := json.Unmarshal([]byte(resp), &got); err != nil || len(got.Pos) != len(users) || got.Pos[last.User] == "" {
		t.Fatalf("body %s, want a position for each of %d users", resp, len(users))
	}
	if f := last.ExpectEvent(wait, "crowd_news"); f.ID != last.User || f.Pos != got.Pos[last.User] || string(f.Args) != `{"n":1}` {
		t.Fatalf("%s got %+v, want crowd_news at %s", last.User, f, got.Pos[last.User])
	}
	if f := zed.ExpectEvent(wait, "crowd_news"); f.ID != "zed" || f.Pos != "" {
		t.Fatalf("zed got %+v, want crowd_news, transient", f)
	}

	// A second copy would come by the message that names the connections:
	// on the shared channel, published by the first user's Redis (its
	// partition's master on a cluster). A marker that goes the same way,
	// to the first user and to both connections, arrives after it.
	body, err = json.Marshal(map[string]any{"event": "marker", "users": users[:1], "conns": []string{last.Conn, zed.Conn}})
	if err != nil {
		t.Fatal(err)
	}
	if status, resp := postDispatch(t, s, apiKey, string(body)); status != http.StatusOK {
		t.Fatalf("marker: %d %s", status, resp)
	}
	for _, c := range []*testkit.Client{last, zed} {
		c.ExpectEvent(wait, "marker")
		for _, f := range c.Frames() {
			if f.Event == "crowd_news" {
				t.Fatalf("%s got crowd_news twice: %+v", c.User, f)
			}
		}
	}
}

// TestDispatchAPIOffWithoutKey: without HANDLERS_API_KEY there is no
// dispatch API at all.
func TestDispatchAPIOffWithoutKey(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 1})
	for _, key := range []string{"", apiKey} {
		if status, body := postDispatch(t, s, key, `{"event":"e","users":["bob"]}`); status != http.StatusNotFound {
			t.Fatalf("key %q: %d %s, want 404", key, status, body)
		}
	}
}
