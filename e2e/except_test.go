package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestDispatchAPIExcept: a dispatch that leaves alice's first device out
// (except_conns) reaches bob and alice's second device, on the other
// worker, and not the first, which carries on at the next event with no
// resync. That device drops and resumes from before the event, naming
// its old connection (prev): recovered, the event not replayed, missed
// counting what is. A third device of alice resuming from the same place
// without prev gets it. In both fan-out modes.
func TestDispatchAPIExcept(t *testing.T) {
	t.Run("shared", func(t *testing.T) {
		testDispatchAPIExcept(t, testkit.StartStack(t, testkit.StackOptions{Workers: 2, HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}}))
	})
	t.Run("per_user", func(t *testing.T) { testDispatchAPIExcept(t, perUserStack(t)) })
}

func testDispatchAPIExcept(t *testing.T, s *testkit.Stack) {
	first, second, bob := s.DialOn("alice", 0), s.DialOn("alice", 1), s.DialOn("bob", 1)
	dispatch := func(body string) map[string]string {
		t.Helper()
		status, answer := postDispatch(t, s, apiKey, body)
		var got struct {
			Pos map[string]string `json:"pos"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil {
			t.Fatalf("POST %s: %d %s", body, status, answer)
		}
		return got.Pos
	}
	before := first.Connected.Pos
	pos := dispatch(`{"event":"news","args":{"n":1},"users":["alice","bob"],"except_conns":["` + first.Conn + `"]}`)
	for _, c := range []*testkit.Client{second, bob} {
		if f := c.ExpectEvent(wait, "news"); f.Pos != pos[c.User] {
			t.Fatalf("%s on worker %d: news at %q, want %s", c.User, c.Worker, f.Pos, pos[c.User])
		}
	}
	marker := dispatch(`{"event":"marker","users":["alice"]}`)
	if f := first.ExpectEvent(wait, "marker"); f.Pos != marker["alice"] {
		t.Fatalf("marker at %q, want %s", f.Pos, marker["alice"])
	}
	for _, f := range first.Frames() {
		if f.Event == "news" || f.Event == proto.EventResync {
			t.Fatalf("the device left out got %s %s at %q", f.Event, f.Args, f.Pos)
		}
	}

	first.Close()
	_ = first.WaitClosed(wait)
	q := "?resume=" + url.QueryEscape(before)
	back := testkit.Dial(t, s.URL()+q+"&prev="+url.QueryEscape("bad id,"+first.Conn), s.Token("alice")) // malformed: ignored
	checkResumed(t, back, 2, "news", "marker")
	back.Close()
	back = testkit.Dial(t, s.URL()+q+"&prev="+url.QueryEscape("w9-0,"+first.Conn), s.Token("alice"))
	checkResumed(t, back, 1, "marker")
	third := testkit.Dial(t, s.URL()+q, s.Token("alice"))
	checkResumed(t, third, 2, "news", "marker")

	// Live after the resume: the next event follows at once.
	next := dispatch(`{"event":"after","users":["alice"]}`)
	if f := back.ExpectEvent(wait, "after"); f.Pos != next["alice"] {
		t.Fatalf("after at %q, want %s", f.Pos, next["alice"])
	}
	for _, f := range back.Frames() {
		if f.Event == proto.EventResync {
			t.Fatalf("the resumed device got a resync %s", f.Args)
		}
	}
}

// checkResumed fails unless c recovered with missed events, and got
// events, in order, as its first frames after connected.
func checkResumed(t *testing.T, c *testkit.Client, missed int, events ...string) {
	t.Helper()
	if r, m := c.Connected.Recovered, c.Connected.Missed; r == nil || !*r || m == nil || *m != missed {
		t.Fatalf("connected %+v, want recovered with %d missed", c.Connected, missed)
	}
	for i, want := range events {
		f := c.Expect(wait, "replayed "+want, func(f proto.Frame) bool { return f.Event != proto.EventConnected })
		if f.Event != want {
			t.Fatalf("replayed event %d: %s, want %s (of %v)", i, f.Event, want, events)
		}
	}
}
