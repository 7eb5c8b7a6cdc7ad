package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// TestDispatchAPITransient: a dispatch with "transient": true reaches the
// live sockets of its users on both workers without a position, and the
// dispatch API answers no position for it. A device that drops and
// resumes from its last position gets the recorded event sent while it
// was away, and not the transient one sent meanwhile (a stale "typing…"),
// which its user's other, connected device got.
func TestDispatchAPITransient(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2, HandlersEnv: []string{"HANDLERS_API_KEY=" + apiKey}})
	away, stays := s.DialOn("bob", 0), s.DialOn("bob", 1)

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

	pos := dispatch(`{"event":"post","args":{"n":1},"users":["bob"]}`)
	if pos["bob"] == "" {
		t.Fatalf("recorded dispatch answered positions %v, want bob's", pos)
	}
	if pos := dispatch(`{"event":"typing","args":{"n":1},"users":["bob"],"transient":true}`); len(pos) != 0 {
		t.Fatalf("transient dispatch answered positions %v, want none", pos)
	}
	for _, c := range []*testkit.Client{away, stays} {
		if f := c.ExpectEvent(wait, "post"); f.Pos != pos["bob"] {
			t.Fatalf("worker %d: post at %q, want %s", c.Worker, f.Pos, pos["bob"])
		}
		if f := c.ExpectEvent(wait, "typing"); f.Pos != "" || string(f.Args) != `{"n":1}` {
			t.Fatalf("worker %d: typing %+v, want it without a position", c.Worker, f)
		}
	}
	last := pos["bob"]

	// bob's device on worker 0 drops; a transient and a recorded event
	// are sent while it is away, which the other device gets.
	away.Close()
	_ = away.WaitClosed(wait) // its reader's error: the socket was closed here
	dispatch(`{"event":"typing","args":{"n":2},"users":["bob"],"transient":true}`)
	pos2 := dispatch(`{"event":"post","args":{"n":2},"users":["bob"]}`)
	stays.Expect(wait, "typing 2 and post 2", func(f proto.Frame) bool { return f.Event == "post" && f.Pos == pos2["bob"] })

	// It resumes, on either worker: post 2 is replayed, typing 2 is not.
	// A dispatch sent after the resume marks the end of the replay.
	back := testkit.Dial(t, s.URL()+"?resume="+url.QueryEscape(last), s.Token("bob"))
	if r := back.Connected.Recovered; r == nil || !*r {
		t.Fatalf("resume from %s: connected %+v, want recovered", last, back.Connected)
	}
	if f := back.ExpectEvent(wait, "post"); f.Pos != pos2["bob"] || string(f.Args) != `{"n":2}` {
		t.Fatalf("replayed %+v, want post 2 at %s", f, pos2["bob"])
	}
	dispatch(`{"event":"marker","users":["bob"]}`)
	back.ExpectEvent(wait, "marker")
	for _, f := range back.Frames() {
		if f.Event == "typing" {
			t.Fatalf("the resumed socket got %s %s at %q: a transient event was replayed", f.Event, f.Args, f.Pos)
		}
	}
	// The body says transient: no worker took the missing positions for
	// a publisher that records nothing (which counts, logs and alerts).
	if n := s.Metrics().Sum("switchboard_gateway_dispatches_unrecorded_total"); n != 0 {
		t.Errorf("dispatches_unrecorded_total %v after transient dispatches, want 0", n)
	}
	if n := testkit.CountLogs(s.Gateway.Logs(), "a dispatch came without a position", nil); n != 0 {
		t.Errorf("%d workers logged a dispatch without a position, want none", n)
	}
}
