package ws_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/gateway/internal/ratelimit"
	"github.com/switchboard/switchboard/proto"
)

// refusals records what Limits.Refused is told.
type refusals struct {
	mu  sync.Mutex
	got []string
}

func (r *refusals) add(event string, code proto.Code) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, event+"/"+string(code))
}

func (r *refusals) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestRefusedFramesAreReported: every frame the read loop answers itself
// (over the rate limit, binary, and the one that closes an abusive socket)
// reaches Limits.Refused with its event and the code sent, and only those
// frames: the ones handed to the FrameHandler do not.
func TestRefusedFramesAreReported(t *testing.T) {
	var r refusals
	limits := defaultLimits
	limits.Rate = ratelimit.Policy{Rate: 0.001, Burst: 2, CloseAfter: 3, Window: time.Minute}
	limits.Refused = r.add
	s := startServer(t, limits, 65536)
	cl, c := s.dial(t, nil)

	frames := []struct {
		mt   int
		data string
	}{
		{websocket.TextMessage, `{"event":"a","ref":"1"}`}, // handled
		{websocket.BinaryMessage, `{"event":"b"}`},         // bad_request (within the burst)
		{websocket.TextMessage, `{"event":"c","ref":"3"}`}, // rate_limited
		{websocket.BinaryMessage, `{"event":"d"}`},         // rate_limited, not an envelope
		{websocket.TextMessage, `{"event":"e","ref":"5"}`}, // rate_limited: abusive, closes
	}
	for _, f := range frames {
		if err := cl.WriteMessage(f.mt, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if ce := readClose(t, cl); ce.Code != proto.ClosePolicy {
		t.Fatalf("closed with %d, want 1008", ce.Code)
	}
	waitDone(t, c, wait)
	bad, limited := string(proto.CodeBadRequest), string(proto.CodeRateLimited)
	want := []string{"/" + bad, "c/" + limited, "/" + limited, "e/" + limited}
	if got := r.list(); !slices.Equal(got, want) {
		t.Errorf("Refused told %q, want %q", got, want)
	}
	select {
	case data := <-s.rec.frames:
		if string(data) != frames[0].data {
			t.Errorf("handler got %s, want only the first frame", data)
		}
	default:
		t.Error("the handler did not get the first frame")
	}
}
