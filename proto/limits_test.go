package proto

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestMaxEventFrame: the frame of the largest event the gateway can be
// asked to deliver, built as the gateway builds it, is MaxEventFrame
// bytes: every part at its longest, the user id made only of a character
// AppendString escapes. And no byte of a valid user id escapes to more
// than maxEscape bytes, so no user id makes a longer frame.
func TestMaxEventFrame(t *testing.T) {
	event := "e" + strings.Repeat("x", MaxEventLen-1)
	user := strings.Repeat("<", MaxUserLen)
	args := json.RawMessage(`"` + strings.Repeat("a", MaxDispatchArgs-2) + `"`)
	pos := []byte(strings.Repeat("0", MaxPosLen))
	if !ValidEventName(event) || !ValidUser(user) || !json.Valid(args) || len(args) != MaxDispatchArgs {
		t.Fatal("the test's worst case is not a valid dispatch")
	}
	for _, key := range []string{KeyPos, KeyBPos} {
		f := AppendEventAt(nil, event, user, args, key, pos)
		if !json.Valid(f) {
			t.Fatalf("frame under %s is not JSON", key)
		}
		if len(f) > MaxEventFrame {
			t.Errorf("frame under %s: %d bytes, over MaxEventFrame (%d)", key, len(f), MaxEventFrame)
		}
		if key == KeyBPos && len(f) != MaxEventFrame {
			t.Errorf("the longest frame is %d bytes, MaxEventFrame says %d", len(f), MaxEventFrame)
		}
	}
	for c := 0; c < utf8.RuneSelf; c++ {
		if s := string(rune(c)); ValidUser(s) && len(AppendString(nil, s))-2 > maxEscape {
			t.Errorf("%q is written in %d bytes, more than maxEscape", s, len(AppendString(nil, s))-2)
		}
	}
	// Beyond ASCII, a valid user id's characters are written as they are.
	for _, s := range []string{"é", "€", "😀"} {
		if got := len(AppendString(nil, s)) - 2; got != len(s) {
			t.Errorf("%q is written in %d bytes, want its own %d", s, got, len(s))
		}
	}
}

// TestMaxAckFrame: the largest ack, every part at its longest and made of
// characters AppendString escapes, is MaxAckFrame bytes, and a ref can
// make no longer one: a character of it is written in at most maxEscape
// bytes (\u2028 and \u2029 are escaped too, from three).
func TestMaxAckFrame(t *testing.T) {
	user := strings.Repeat("<", MaxUserLen)
	ref := strings.Repeat("\x01", MaxRefLen)
	result := json.RawMessage(`"` + strings.Repeat("a", MaxResult-2) + `"`)
	f := AppendAckResult(nil, user, ref, result)
	if !json.Valid(f) {
		t.Fatal("the ack is not JSON")
	}
	if len(f) != MaxAckFrame {
		t.Errorf("the longest ack is %d bytes, MaxAckFrame says %d", len(f), MaxAckFrame)
	}
	for _, r := range []rune{0, '"', '\\', 0x7f, 0x2028, 0x2029, 0xfffd, 0x10ffff} {
		if got := len(AppendString(nil, string(r))) - 2; got > maxEscape {
			t.Errorf("%U is written in %d bytes, more than maxEscape", r, got)
		}
	}
}

// TestMaxResyncAndHeartbeatFrames: the largest resync and heartbeat
// frames, for a user id made only of a character AppendString escapes, are
// MaxResyncFrame and MaxHeartbeatFrame bytes.
func TestMaxResyncAndHeartbeatFrames(t *testing.T) {
	user := strings.Repeat("<", MaxUserLen)
	pos := strings.Repeat("0", MaxPosLen)
	r := AppendResync(nil, user, &Resync{Pos: pos, BPos: pos, Reason: strings.Repeat("r", MaxResyncReason)})
	if !json.Valid(r) || len(r) != MaxResyncFrame {
		t.Errorf("the longest resync is %d bytes (valid JSON: %v), MaxResyncFrame says %d", len(r), json.Valid(r), MaxResyncFrame)
	}
	h := AppendHeartbeatAt(nil, user, []byte(pos), []byte(pos))
	if !json.Valid(h) || len(h) != MaxHeartbeatFrame {
		t.Errorf("the longest heartbeat is %d bytes (valid JSON: %v), MaxHeartbeatFrame says %d", len(h), json.Valid(h), MaxHeartbeatFrame)
	}
}
