package fanout

import (
	"encoding/json"
	"fmt"
	"testing"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/proto"
)

// sink is a socket that counts what it is sent and keeps nothing.
type sink struct {
	id, user string
	n        int
}

func (s *sink) ID() string         { return s.id }
func (s *sink) User() string       { return s.user }
func (s *sink) Send(_ []byte) bool { s.n++; return true }

// BenchmarkDeliverDispatch is what a worker does with each message from
// Redis: decode the dispatch, look up the target users among 10,000 local
// sockets, encode one frame per user and queue it on their sockets. The
// payloads are those of sendMessage: "message" to the partner, then
// "message_sent" to the sender, 2 devices each.
func BenchmarkDeliverDispatch(b *testing.B) {
	h := hub.New[*sink]()
	for u := range 5000 {
		for d := range 2 {
			h.Add(&sink{id: fmt.Sprintf("c%d-%d", u, d), user: fmt.Sprintf("u%d", u)})
		}
	}
	s := New(nil, h, 0, zap.NewNop())
	args := json.RawMessage(`{"from":"u42","to":"u43","text":"r1s123456t1764072000123456789","ts":1764072000124,"msg_id":"0123456789abcdef0123456789abcdef"}`)
	payloads := []string{
		string(proto.AppendDispatch(nil, &proto.Dispatch{Event: "message", Args: args, Users: []string{"u43"}})),
		string(proto.AppendDispatch(nil, &proto.Dispatch{Event: "message_sent", Args: args, Users: []string{"u42"}})),
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.deliver(payloads[i&1])
		i++
	}
}
