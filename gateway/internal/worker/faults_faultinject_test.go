//go:build faultinject

package worker

import (
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// handed records the frames handed on.
type handed []string

func (h *handed) HandleFrame(data []byte, _ bool) { *h = append(*h, string(data)) }

// TestPanickingFrames: text frames of the configured event panic; others,
// and binary frames of that event, are handed on.
func TestPanickingFrames(t *testing.T) {
	var next handed
	p := panicking{next: &next, event: "explode"}
	explode := []byte(`{"event":"explode","ref":"1"}`)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a text frame of the event did not panic")
			}
		}()
		p.HandleFrame(explode, false)
	}()
	p.HandleFrame([]byte(`{"event":"fine"}`), false)
	p.HandleFrame(explode, true)
	if len(next) != 2 || next[0] != `{"event":"fine"}` || next[1] != string(explode) {
		t.Errorf("handed on %q, want the other event's frame and the binary one", next)
	}
	if env, err := proto.DecodeEnvelope(explode); err != nil || env.Event != "explode" {
		t.Fatalf("test frame %s does not decode: %v", explode, err)
	}
}
