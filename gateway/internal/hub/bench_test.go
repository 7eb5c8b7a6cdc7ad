package hub_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/proto"
)

// sink is a socket that counts what it is sent and keeps nothing.
type sink struct {
	id, user string
	n        int
}

func (s *sink) ID() string                          { return s.id }
func (s *sink) User() string                        { return s.user }
func (s *sink) Offer(bool, *proto.Pos, []byte) bool { s.n++; return true }
func (s *sink) Skip(bool, *proto.Pos)               {}

// benchHub returns a hub of users users with devices sockets each.
func benchHub(users, devices int) *hub.Hub[*sink] {
	h := hub.New[*sink]()
	for u := range users {
		for d := range devices {
			h.Add(&sink{id: fmt.Sprintf("c%d-%d", u, d), user: fmt.Sprintf("u%d", u)})
		}
	}
	return h
}

var benchArgs = json.RawMessage(`{"from":"u0","to":"u1","text":"hello there","ts":1764072000123,"msg_id":"0123456789abcdef"}`)

// BenchmarkDeliverOneUser is the common case: a message to one user with 2
// devices, among 10,000 local sockets.
func BenchmarkDeliverOneUser(b *testing.B) {
	h := benchHub(5000, 2)
	d := &proto.Dispatch{Event: "message", Args: benchArgs, Users: []string{"u42"}}
	b.ReportAllocs()
	for b.Loop() {
		if h.Deliver(d) != 2 {
			b.Fatal("not delivered to 2 sockets")
		}
	}
}

// BenchmarkDeliverManyUsers is a mention of 100 users, 2 devices each.
func BenchmarkDeliverManyUsers(b *testing.B) {
	h := benchHub(5000, 2)
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i*7)
	}
	d := &proto.Dispatch{Event: "post_updated_notification", Args: benchArgs, Users: users}
	b.ReportAllocs()
	for b.Loop() {
		if h.Deliver(d) != 200 {
			b.Fatal("not delivered to 200 sockets")
		}
	}
}

// BenchmarkDeliverToN delivers one user's frame to N sockets of that user:
// the frame is encoded once and shared.
func BenchmarkDeliverToN(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) {
			h := benchHub(1, n)
			d := &proto.Dispatch{Event: "message", Args: benchArgs, Users: []string{"u0"}}
			b.ReportAllocs()
			for b.Loop() {
				h.Deliver(d)
			}
		})
	}
}

// BenchmarkBroadcast sends to every one of 1,000 sockets of 500 users.
func BenchmarkBroadcast(b *testing.B) {
	h := benchHub(500, 2)
	d := &proto.Dispatch{Event: "announcement", Args: benchArgs, Broadcast: true}
	b.ReportAllocs()
	for b.Loop() {
		h.Deliver(d)
	}
}
