package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/event/eventtest"
	"github.com/switchboard/switchboard/handlers-svc/handlers"
	"github.com/switchboard/switchboard/proto"
)

var msgIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// decodeMessage decodes the args of a dispatch into a map, to check the exact
// set of fields on the wire.
func decodeMessage(t *testing.T, d proto.Dispatch) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(d.Args, &m); err != nil {
		t.Fatalf("args %s: %v", d.Args, err)
	}
	return m
}

func TestSendMessage(t *testing.T) {
	rec := eventtest.NewRecorder()
	chat := handlers.NewChat(rec)
	before := time.Now().UnixMilli()

	req := eventtest.NewRequest("sendMessage", "alice", map[string]any{"to": "bob", "text": "hi <b>"})
	err := chat.SendMessage(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()
	// The client's ack carries the message's id and time.
	sent, err := eventtest.Result[handlers.Sent](req)
	if err != nil {
		t.Fatal(err)
	}

	got := rec.Dispatches()
	if len(got) != 2 {
		t.Fatalf("dispatched %d, want 2: %+v", len(got), got)
	}
	if got[0].Event != "message" || !slices.Equal(got[0].Users, []string{"bob"}) {
		t.Fatalf("first dispatch %+v, want message to bob", got[0])
	}
	if got[1].Event != "message_sent" || !slices.Equal(got[1].Users, []string{"alice"}) {
		t.Fatalf("second dispatch %+v, want message_sent to alice", got[1])
	}
	if string(got[0].Args) != string(got[1].Args) {
		t.Fatalf("args differ:\n%s\n%s", got[0].Args, got[1].Args)
	}
	m := decodeMessage(t, got[0])
	if len(m) != 5 || m["from"] != "alice" || m["to"] != "bob" || m["text"] != "hi <b>" {
		t.Fatalf("args %v", m)
	}
	if ts, _ := m["ts"].(float64); int64(ts) < before || int64(ts) > after {
		t.Fatalf("ts %v not within [%d, %d] (Unix ms)", m["ts"], before, after)
	}
	if id, _ := m["msg_id"].(string); !msgIDPattern.MatchString(id) {
		t.Fatalf("msg_id %q", m["msg_id"])
	}
	if sent.MsgID != m["msg_id"] || float64(sent.TS) != m["ts"] {
		t.Fatalf("result %+v, want the dispatched msg_id %v and ts %v", sent, m["msg_id"], m["ts"])
	}
	if want := `{"msg_id":"` + sent.MsgID + `","ts":` + strconv.FormatInt(sent.TS, 10) + `}`; string(req.Result()) != want {
		t.Fatalf("result on the wire %s, want %s", req.Result(), want)
	}
}

func TestSendMessageWithoutTo(t *testing.T) {
	for _, args := range []string{`{"text":"note"}`, `{"text":"note","to":null}`} {
		rec := eventtest.NewRecorder()
		err := handlers.NewChat(rec).SendMessage(context.Background(), eventtest.NewRequest("sendMessage", "alice", json.RawMessage(args)))
		if err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		got := rec.Dispatches()
		if len(got) != 1 || got[0].Event != "message_sent" || !slices.Equal(got[0].Users, []string{"alice"}) {
			t.Fatalf("%s: dispatched %+v, want one message_sent to alice", args, got)
		}
		m := decodeMessage(t, got[0])
		if _, has := m["to"]; has || len(m) != 4 || m["text"] != "note" {
			t.Fatalf("%s: args %v, want from, text, ts, msg_id and no to", args, m)
		}
	}
}

func TestSendMessageToSelf(t *testing.T) {
	rec := eventtest.NewRecorder()
	err := handlers.NewChat(rec).SendMessage(context.Background(), eventtest.NewRequest("sendMessage", "alice", map[string]any{"to": "alice", "text": "me"}))
	if err != nil {
		t.Fatal(err)
	}
	got := rec.Dispatches()
	if len(got) != 2 || got[0].Event != "message" || got[1].Event != "message_sent" ||
		!slices.Equal(got[0].Users, []string{"alice"}) || !slices.Equal(got[1].Users, []string{"alice"}) {
		t.Fatalf("dispatched %+v, want message and message_sent to alice", got)
	}
}

func TestSendMessageUniqueIDs(t *testing.T) {
	rec := eventtest.NewRecorder()
	chat := handlers.NewChat(rec)
	seen := map[string]bool{}
	for range 100 {
		if err := chat.SendMessage(context.Background(), eventtest.NewRequest("sendMessage", "a", map[string]any{"text": "x"})); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range rec.Dispatches() {
		id := decodeMessage(t, d)["msg_id"].(string)
		if seen[id] {
			t.Fatalf("msg_id %s repeated", id)
		}
		seen[id] = true
	}
}

// TestSendMessageBadArgs: every invalid args is refused with bad_request
// naming the field, and nothing is dispatched.
func TestSendMessageBadArgs(t *testing.T) {
	tests := []struct {
		name, args, want string
	}{
		{"absent args", ``, "args.text is required"},
		{"no text", `{"to":"bob"}`, "args.text is required"},
		{"null text", `{"text":null}`, "args.text is required"},
		{"empty text", `{"text":""}`, "args.text must be 1 to 4000 characters"},
		{"long text", `{"text":"` + strings.Repeat("é", 4001) + `"}`, "args.text must be 1 to 4000 characters"},
		{"text number", `{"text":5}`, "args.text must be a string"},
		{"to number", `{"to":5,"text":"x"}`, "args.to must be a string"},
		{"to empty", `{"to":"","text":"x"}`, "args.to must be a user id of 1 to 256 bytes of printable UTF-8"},
		// No token carries it: its events would fill a stream no device reads.
		{"to with a control character", `{"to":"bob\u0000","text":"x"}`, "args.to must be a user id of 1 to 256 bytes of printable UTF-8"},
		// The bounds of docs/protocol.md section 5.
		{"to of 257 bytes", `{"to":"` + strings.Repeat("a", 257) + `","text":"x"}`, "args.to must be a user id of 1 to 256 bytes of printable UTF-8"},
		{"args array", `["x"]`, "args must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := eventtest.NewRecorder()
			r := eventtest.NewRequest("sendMessage", "alice", nil)
			if tt.args != "" {
				r.Args = json.RawMessage(tt.args)
			}
			err := handlers.NewChat(rec).SendMessage(context.Background(), r)
			if w := event.WireError(err); w == nil || w.Code != proto.CodeBadRequest || w.Message != tt.want {
				t.Fatalf("got %+v, want bad_request %q", w, tt.want)
			}
			if n := len(rec.Dispatches()); n != 0 {
				t.Fatalf("dispatched %d on bad args", n)
			}
		})
	}
}

func TestSendMessageTextLimitCountsCodePoints(t *testing.T) {
	rec := eventtest.NewRecorder()
	text := strings.Repeat("😀", handlers.MaxTextLen) // 4 bytes each, 4000 code points
	err := handlers.NewChat(rec).SendMessage(context.Background(), eventtest.NewRequest("sendMessage", "a", map[string]any{"text": text}))
	if err != nil {
		t.Fatalf("4000 code points rejected: %v", err)
	}
}

func TestSendMessageDispatchFailure(t *testing.T) {
	rec := eventtest.NewRecorder()
	down := &event.Error{Code: proto.CodeUnavailable, Message: "dispatch unavailable", Err: errors.New("redis down")}
	rec.FailWith(down)
	req := eventtest.NewRequest("sendMessage", "a", map[string]any{"to": "b", "text": "x"})
	err := handlers.NewChat(rec).SendMessage(context.Background(), req)
	if w := event.WireError(err); w == nil || w.Code != proto.CodeUnavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
	if d := rec.Dispatches(); len(d) != 0 {
		t.Fatalf("a failed sendMessage dispatched %d events, want none (all or nothing)", len(d))
	}
	if _, err := eventtest.Result[handlers.Sent](req); err == nil {
		t.Fatal("a failed sendMessage answered with a result")
	}
}
