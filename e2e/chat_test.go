package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

const wait = 10 * time.Second

type messageArgs struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Text  string `json:"text"`
	TS    int64  `json:"ts"`
	MsgID string `json:"msg_id"`
}

func decodeMessage(t *testing.T, f proto.Frame) messageArgs {
	t.Helper()
	var m messageArgs
	if err := json.Unmarshal(f.Args, &m); err != nil {
		t.Fatalf("%s args %s: %v", f.Event, f.Args, err)
	}
	return m
}

// TestSendMessageReachesEveryDevice is the product's promise: alice has a
// socket on each worker, bob too; one message from one of alice's devices
// reaches every device of both, with one msg_id, and the sender gets its ack.
func TestSendMessageReachesEveryDevice(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	alice := []*testkit.Client{s.DialOn("alice", 0), s.DialOn("alice", 1), s.Dial("alice")}
	bob := []*testkit.Client{s.DialOn("bob", 1), s.DialOn("bob", 0)}

	alice[0].Send("sendMessage", map[string]any{"to": "bob", "text": "hi bob ✓"}, "r1")

	ack := alice[0].ExpectRef(wait, "r1")
	if ack.Event != proto.EventAck || ack.ID != "alice" {
		t.Fatalf("sender got %+v, want an ack for r1 with id alice", ack)
	}
	// The ack carries sendMessage's result: the message's id and time.
	var result struct {
		MsgID string `json:"msg_id"`
		TS    int64  `json:"ts"`
	}
	if err := json.Unmarshal(ack.Args, &result); err != nil || result.MsgID == "" || result.TS == 0 {
		t.Fatalf("ack args %s, want {msg_id, ts}", ack.Args)
	}
	var msgID string
	for i, c := range bob {
		f := c.ExpectEvent(wait, "message")
		m := decodeMessage(t, f)
		if f.ID != "bob" || m.From != "alice" || m.To != "bob" || m.Text != "hi bob ✓" || m.TS == 0 || m.MsgID == "" {
			t.Fatalf("bob device %d got %s %s", i, f.ID, f.Args)
		}
		if msgID == "" {
			msgID = m.MsgID
			if msgID != result.MsgID || m.TS != result.TS {
				t.Fatalf("bob got msg_id %s ts %d, the ack said %+v", m.MsgID, m.TS, result)
			}
		} else if m.MsgID != msgID {
			t.Fatalf("bob device %d msg_id %q, want %q", i, m.MsgID, msgID)
		}
	}
	for i, c := range alice {
		f := c.ExpectEvent(wait, "message_sent")
		m := decodeMessage(t, f)
		if f.ID != "alice" || m.From != "alice" || m.To != "bob" || m.Text != "hi bob ✓" || m.MsgID != msgID {
			t.Fatalf("alice device %d got %s %s, want msg_id %s", i, f.ID, f.Args, msgID)
		}
	}
	// Nobody got the other side's event.
	for _, c := range alice {
		for _, f := range c.Frames() {
			if f.Event == "message" {
				t.Fatalf("alice got bob's message frame: %s", f.Args)
			}
		}
	}
}

// TestSendMessageWithoutTo echoes only message_sent to the sender's devices.
func TestSendMessageWithoutTo(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	a0, a1 := s.DialOn("alice", 0), s.DialOn("alice", 1)
	a0.Send("sendMessage", map[string]any{"text": "note to self"}, "n1")
	if f := a0.ExpectRef(wait, "n1"); f.Event != proto.EventAck {
		t.Fatalf("got %+v, want ack", f)
	}
	for _, c := range []*testkit.Client{a0, a1} {
		f := c.ExpectEvent(wait, "message_sent")
		var raw map[string]any
		if err := json.Unmarshal(f.Args, &raw); err != nil {
			t.Fatal(err)
		}
		if _, has := raw["to"]; has || raw["text"] != "note to self" {
			t.Fatalf("message_sent args %s: want no to field", f.Args)
		}
	}
}

// TestPostUpdatedReachesMentionedOnly: every device of each mentioned user
// gets the notification and nobody else does.
func TestPostUpdatedReachesMentionedOnly(t *testing.T) {
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2})
	author := s.Dial("author")
	carol := []*testkit.Client{s.DialOn("carol", 0), s.DialOn("carol", 1)}
	dave := []*testkit.Client{s.DialOn("dave", 1)}
	eve := []*testkit.Client{s.DialOn("eve", 0), s.DialOn("eve", 1)}

	author.Send("postUpdated", map[string]any{"post": "p42", "mentions": []string{"carol", "dave", "carol"}}, "u1")
	if f := author.ExpectRef(wait, "u1"); f.Event != proto.EventAck {
		t.Fatalf("got %+v, want ack", f)
	}
	for _, c := range append(carol, dave...) {
		f := c.ExpectEvent(wait, "post_updated_notification")
		var args struct{ Post, Message string }
		if err := json.Unmarshal(f.Args, &args); err != nil {
			t.Fatal(err)
		}
		if f.ID != c.User || args.Post != "p42" || args.Message != "A post you have been mentioned in has been updated" {
			t.Fatalf("%s got %s %s", c.User, f.ID, f.Args)
		}
	}
	// The dispatch channel is ordered per worker: once a later message to
	// eve (sent after the ack) has arrived, an earlier notification would
	// have arrived before it. carol, mentioned twice, must have one each.
	author.Send("sendMessage", map[string]any{"to": "eve", "text": "marker"}, "m1")
	author.ExpectRef(wait, "m1")
	for _, c := range eve {
		c.ExpectEvent(wait, "message")
		for _, f := range c.Frames() {
			if f.Event == "post_updated_notification" {
				t.Fatalf("eve was not mentioned but got %s", f.Args)
			}
		}
	}
	author.Send("sendMessage", map[string]any{"to": "carol", "text": "marker"}, "m2")
	author.ExpectRef(wait, "m2")
	for _, c := range carol {
		c.ExpectEvent(wait, "message")
		for _, f := range c.Frames() {
			if f.Event == "post_updated_notification" {
				t.Fatalf("carol got a second notification: %s", f.Args)
			}
		}
	}
}
