package fanout

import (
	"encoding/json"
	"fmt"
	"testing"

	"go.uber.org/zap"

	"github.com/switchboard/switchboard/gateway/internal/hub"
	"github.com/switchboard/switchboard/proto"
)

// sink is a socket that counts what it is offered and keeps nothing.
type sink struct {
	id, user string
	n        int
}

func (s *sink) ID() string                          { return s.id }
func (s *sink) User() string                        { return s.user }
func (s *sink) Offer(bool, *proto.Pos, []byte) bool { s.n++; return true }
func (s *sink) Skip(bool, *proto.Pos)               {}

// BenchmarkDeliverDispatch is what a worker does with each message from
// Redis: decode the dispatch, look up the target users among 10,000 local
// sockets, encode one frame per user and queue it on their sockets. The
// payloads are those of sendMessage: "message" to the partner, then
// "message_sent" to the sender, 2 devices each; recoverable ones carry the
// users' positions, as with recovery on (the default).
func BenchmarkDeliverDispatch(b *testing.B) {
	for _, recoverable := range []bool{false, true} {
		name := "transient"
		var opts []hub.Option
		if recoverable {
			name, opts = "recoverable", []hub.Option{hub.WithPositions()}
		}
		b.Run(name, func(b *testing.B) {
			h := hub.New[*sink](opts...)
			for u := range 5000 {
				for d := range 2 {
					h.Add(&sink{id: fmt.Sprintf("c%d-%d", u, d), user: fmt.Sprintf("u%d", u)})
				}
			}
			s := New(nil, h, 0, zap.NewNop())
			args := json.RawMessage(`{"from":"u42","to":"u43","text":"r1s123456t1764072000123456789","ts":1764072000124,"msg_id":"0123456789abcdef0123456789abcdef"}`)
			m := proto.Dispatch{Event: "message", Args: args, Users: []string{"u43"}}
			ms := proto.Dispatch{Event: "message_sent", Args: args, Users: []string{"u42"}}
			if recoverable {
				m.Pos = map[string]string{"u43": "k2j3h4g5f6d7.1764072000124-1234"}
				ms.Pos = map[string]string{"u42": "a9s8d7f6g5h4.1764072000124-987"}
			}
			payloads := []string{string(proto.AppendDispatch(nil, &m)), string(proto.AppendDispatch(nil, &ms))}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.deliver(payloads[i&1])
				i++
			}
		})
	}
}

// BenchmarkDeliverRoomDispatch is a message to a 1,000-member room in
// FANOUT_MODE=shared, as a worker holding 10 of the members (2 devices
// each, among 10,000 local sockets) takes it: decode every body and
// deliver to the local members only. "split" is the room as handlers-svc
// publishes it, 8 bodies of at most 128 users (maxUnitUsers); "whole" is
// one body naming all 1,000, as another publisher may write it. Every body
// carries each user's position (recovery on, the default).
func BenchmarkDeliverRoomDispatch(b *testing.B) {
	const members, local, perBody = 1000, 10, 128
	for _, split := range []bool{true, false} {
		name := "whole"
		if split {
			name = "split"
		}
		b.Run(name, func(b *testing.B) {
			h := hub.New[*sink](hub.WithPositions())
			var sinks []*sink
			for u := range 5000 {
				for d := range 2 {
					c := &sink{id: fmt.Sprintf("c%d-%d", u, d), user: fmt.Sprintf("u%d", u)}
					sinks = append(sinks, c)
					h.Add(c)
				}
			}
			s := New(nil, h, 0, zap.NewNop())
			args := json.RawMessage(`{"room":"r1","from":"m0","text":"r1s123456t1764072000123456789","ts":1764072000124,"msg_id":"0123456789abcdef0123456789abcdef"}`)
			users := make([]string, members)
			for i := range users {
				users[i] = fmt.Sprintf("m%d", i) // members this worker does not hold
				if i%(members/local) == 0 {
					users[i] = fmt.Sprintf("u%d", i) // one of its 10
				}
			}
			n := members
			if split {
				n = perBody
			}
			var payloads []string
			for start := 0; start < len(users); start += n {
				part := users[start:min(start+n, len(users))]
				d := proto.Dispatch{Event: "room_message", Args: args, Users: part, Pos: map[string]string{}}
				for i, u := range part {
					d.Pos[u] = fmt.Sprintf("k2j3h4g5f6d7.1764072000124-%d", 1000+start+i)
				}
				payloads = append(payloads, string(proto.AppendDispatch(nil, &d)))
			}
			b.ReportAllocs()
			rounds := 0
			for b.Loop() {
				for _, p := range payloads {
					s.deliver(p)
				}
				rounds++
			}
			offered := 0
			for _, c := range sinks {
				offered += c.n
			}
			if s.Malformed() != 0 || offered != 2*local*rounds {
				b.Fatalf("%d malformed, %d offers in %d rounds, want %d each", s.Malformed(), offered, rounds, 2*local)
			}
		})
	}
}
