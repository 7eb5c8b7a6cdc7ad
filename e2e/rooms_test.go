package e2e

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

// roomReply waits for the ack of ref and decodes its result (the ack's
// args) into v.
func roomReply(t *testing.T, c *testkit.Client, ref string, v any) {
	t.Helper()
	f := c.ExpectRef(wait, ref)
	if f.Event != proto.EventAck {
		t.Fatalf("%s: reply to %s is %s %s, want an ack", c.User, ref, f.Event, f.Args)
	}
	if err := json.Unmarshal(f.Args, v); err != nil {
		t.Fatalf("%s: ack of %s carries %s: %v", c.User, ref, f.Args, err)
	}
}

type roomResult struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
}

type sentResult struct {
	MsgID string `json:"msg_id"`
	TS    int64  `json:"ts"`
}

type roomMessage struct {
	Room  string `json:"room"`
	From  string `json:"from"`
	Text  string `json:"text"`
	TS    int64  `json:"ts"`
	MsgID string `json:"msg_id"`
}

// expectRoomMessage waits for the room_message with msgID on c.
func expectRoomMessage(t *testing.T, c *testkit.Client, msgID string) roomMessage {
	t.Helper()
	var m roomMessage
	c.Expect(wait, "room_message "+msgID, func(f proto.Frame) bool {
		if f.Event != "room_message" || json.Unmarshal(f.Args, &m) != nil {
			return false
		}
		return m.MsgID == msgID
	})
	return m
}

// noRoomMessage checks that c got no room_message, after a direct message
// sent to c's user later has arrived: the channel is ordered, so an earlier
// room_message would have come first.
func noRoomMessage(t *testing.T, from *testkit.Client, cs []*testkit.Client, ref string) {
	t.Helper()
	from.Send("sendMessage", map[string]any{"to": cs[0].User, "text": "marker " + ref}, ref)
	from.ExpectRef(wait, ref)
	for _, c := range cs {
		c.Expect(wait, "marker "+ref, func(f proto.Frame) bool {
			var m messageArgs
			return f.Event == "message" && json.Unmarshal(f.Args, &m) == nil && m.Text == "marker "+ref
		})
		for _, f := range c.Frames() {
			if f.Event == "room_message" {
				t.Fatalf("%s (worker %d) got a room_message it should not: %s", c.User, c.Worker, f.Args)
			}
		}
	}
}

// TestRoomsAcrossWorkers: alice, bob and carol in one room, each with a
// device on each worker; a room_message reaches every device of every
// member and no one else's, a non-member is forbidden, and membership,
// kept in Redis, survives a member's worker being killed with SIGKILL.
func TestRoomsAcrossWorkers(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	devices := map[string][]*testkit.Client{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		devices[u] = []*testkit.Client{s.DialOn(u, 0), s.DialOn(u, 1)}
	}
	members := []string{"alice", "bob", "carol"}
	for i, u := range members {
		ref := "join-" + u
		devices[u][i%2].Send("joinRoom", map[string]string{"room": "team.eng"}, ref)
		var res roomResult
		roomReply(t, devices[u][i%2], ref, &res)
		if res != (roomResult{Room: "team.eng", Members: i + 1}) {
			t.Fatalf("%s joined: result %+v, want %d members", u, res, i+1)
		}
		// room_joined reaches every device of every member so far.
		for _, m := range members[:i+1] {
			for _, c := range devices[m] {
				c.Expect(wait, "room_joined of "+u, func(f proto.Frame) bool {
					return f.Event == "room_joined" && string(f.Args) == fmt.Sprintf(`{"room":"team.eng","user":%q}`, u)
				})
			}
		}
	}

	send := func(from *testkit.Client, text, ref string) sentResult {
		t.Helper()
		from.Send("sendToRoom", map[string]string{"room": "team.eng", "text": text}, ref)
		var res sentResult
		roomReply(t, from, ref, &res)
		if len(res.MsgID) != 32 || res.TS == 0 {
			t.Fatalf("sendToRoom result %+v", res)
		}
		return res
	}
	res := send(devices["carol"][1], "hello team", "r1")
	for _, u := range members {
		for _, c := range devices[u] {
			m := expectRoomMessage(t, c, res.MsgID)
			if m != (roomMessage{Room: "team.eng", From: "carol", Text: "hello team", TS: res.TS, MsgID: res.MsgID}) {
				t.Fatalf("%s (worker %d) got %+v", u, c.Worker, m)
			}
		}
	}
	noRoomMessage(t, devices["alice"][0], devices["dave"], "m1")

	// A non-member may not send, and nothing reaches the members.
	devices["dave"][0].Send("sendToRoom", map[string]string{"room": "team.eng", "text": "let me in"}, "d1")
	if f := devices["dave"][0].ExpectRef(wait, "d1"); f.Event != proto.EventError || !json.Valid(f.Args) ||
		string(f.Args) != `{"code":"forbidden","message":"you are not a member of room team.eng"}` {
		t.Fatalf("non-member got %s %s, want forbidden", f.Event, f.Args)
	}

	// SIGKILL the worker under one of bob's devices; bob's device on it
	// reconnects (to any worker); bob is still a member, and so still
	// gets the room's messages, on every device.
	dead := devices["bob"][0]
	pid, ok := s.WorkerPids()[dead.Worker]
	if !ok {
		t.Fatalf("no pid for worker %d", dead.Worker)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = dead.WaitClosed(wait) // fails the test if it stays open
	testkit.Eventually(t, 30*time.Second, "the killed worker is back", func() bool {
		p, ok := s.WorkerPids()[dead.Worker]
		return ok && p != pid
	})
	s.WaitReady()
	devices["bob"][0] = s.DialOn("bob", dead.Worker)
	// alice's and carol's devices on the killed worker (device i of each
	// user is on worker i) are gone too: each is awaited closed and
	// replaced. Replacing only those whose reader had already seen the
	// close would keep a dead socket that is expected to get the next
	// message.
	for _, u := range []string{"alice", "carol"} {
		_ = devices[u][dead.Worker].WaitClosed(wait) // fails the test if it stays open
		devices[u][dead.Worker] = s.DialOn(u, dead.Worker)
	}
	devices["alice"][1].Send("sendToRoom", map[string]string{"room": "team.eng", "text": "still here?"}, "r2")
	var res2 sentResult
	roomReply(t, devices["alice"][1], "r2", &res2)
	for _, u := range members {
		for _, c := range devices[u] {
			expectRoomMessage(t, c, res2.MsgID)
		}
	}

	// bob leaves: he and the others hear it, and the next message is not his.
	devices["bob"][1].Send("leaveRoom", map[string]string{"room": "team.eng"}, "l1")
	var left roomResult
	roomReply(t, devices["bob"][1], "l1", &left)
	if left.Members != 2 {
		t.Fatalf("leave result %+v, want 2 members", left)
	}
	for _, u := range members {
		for _, c := range devices[u] {
			c.Expect(wait, "room_left of bob", func(f proto.Frame) bool {
				return f.Event == "room_left" && string(f.Args) == `{"room":"team.eng","user":"bob"}`
			})
		}
	}
	res3 := send(devices["carol"][0], "bye bob", "r3")
	for _, u := range []string{"alice", "carol"} {
		for _, c := range devices[u] {
			expectRoomMessage(t, c, res3.MsgID)
		}
	}
	noRoomMessage(t, devices["alice"][0], devices["bob"], "m2")
}
