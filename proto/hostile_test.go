package proto_test

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// Review of ee9cdd0 (the depth answer, JSONStringReplaced in
// DecodeEnvelope and Peek): what DecodeEnvelope and Peek cost on the
// most hostile frames a client can send under the default
// GATEWAY_MAX_FRAME (64 KiB).

const hostileSize = 64 << 10

// hostileFill is prefix, then unit as often as fits in hostileSize,
// then suffix.
func hostileFill(prefix, unit, suffix string) []byte {
	n := (hostileSize - len(prefix) - len(suffix)) / len(unit)
	return []byte(prefix + strings.Repeat(unit, n) + suffix)
}

func hostileFrames() map[string][]byte {
	deep := (hostileSize - 40) / 2
	return map[string][]byte{
		// Valid JSON but for its last byte, never nested past 2 levels.
		"late garbage": hostileFill(`{"event":"e","ref":"r","args":[`, `1,`, `1]}x`),
		// Args as deep as a frame can nest them: the depth answer.
		"deep args": []byte(`{"event":"e","ref":"r","args":` + strings.Repeat("[", deep) + strings.Repeat("]", deep) + `}`),
		// As deep, and broken at the end: not JSON.
		"deep broken": []byte(`{"event":"e","ref":"r","args":` + strings.Repeat("[", deep) + strings.Repeat("]", deep-1) + `}`),
		// A ref of escapes.
		"escaped ref": hostileFill(`{"event":"e","ref":"`, `\u0041`, `"}`),
		// Every key escaped.
		"escaped keys": hostileFill(`{"event":"e"`, `,"\u0061":0`, `}`),
		// Every key an escaped "ref".
		"escaped ref keys": hostileFill(`{"event":"e"`, `,"\u0072ef":"r"`, `}`),
	}
}

// TestNotJSONNotRescanned: a frame that is not JSON, and never comes near
// the depth limit, is refused by one scan, allocating nothing: the second
// scan that tells a frame too deep from garbage (validUnbounded, len/8
// bytes) runs only when the first stopped at the limit. (A review found it
// run for all garbage over 20,000 bytes.)
func TestNotJSONNotRescanned(t *testing.T) {
	data := hostileFrames()["late garbage"]
	if _, err := proto.DecodeEnvelope(data); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("DecodeEnvelope = %v, want not valid JSON", err)
	}
	if n := testing.AllocsPerRun(20, func() { _, _ = proto.DecodeEnvelope(data) }); n != 0 {
		t.Errorf("DecodeEnvelope of a %d-byte frame that is not JSON, nested 2 deep: %v allocations, want 0 "+
			"(the depth rescan should run only when the first scan stopped at the depth limit)", len(data), n)
	}
}

// TestPeekAllocs: Peek is the cheap answer to a frame over a rate limit
// (forward.Session.refuse), so that an abusive client cannot buy decodes
// by the thousand: a frame of thousands of escaped keys costs it no
// garbage (asciiKey). A review found every escaped key unmarshaled:
// 64 KiB bought ~17,900 allocations and 1 MiB of garbage.
func TestPeekAllocs(t *testing.T) {
	for _, name := range []string{"escaped keys", "escaped ref keys"} {
		data := hostileFrames()[name]
		if n := testing.AllocsPerRun(5, func() { _, _, _ = proto.Peek(data) }); n > 2 {
			t.Errorf("Peek(%s, %d bytes): %v allocations, want at most 2", name, len(data), n)
		}
	}
}

// TestDecodeEnvelopeEscapedKeyAllocs: likewise DecodeEnvelope, which
// decoded every escaped key with json.Unmarshal only to compare it with
// four names.
func TestDecodeEnvelopeEscapedKeyAllocs(t *testing.T) {
	for _, name := range []string{"escaped keys", "escaped ref keys"} {
		data := hostileFrames()[name]
		if n := testing.AllocsPerRun(5, func() { _, _ = proto.DecodeEnvelope(data) }); n > 4 {
			t.Errorf("DecodeEnvelope(%s, %d bytes): %v allocations, want a few", name, len(data), n)
		}
	}
}

func BenchmarkHostileDecodeEnvelope(b *testing.B) {
	for name, data := range hostileFrames() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = proto.DecodeEnvelope(data)
			}
		})
	}
}

func BenchmarkHostilePeek(b *testing.B) {
	for name, data := range hostileFrames() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = proto.Peek(data)
			}
		})
	}
}
