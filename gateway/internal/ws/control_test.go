package ws

import (
	"bytes"
	"testing"

	"github.com/gorilla/websocket"
)

// clientFrame encodes a masked client frame with first byte b0.
func clientFrame(b0 byte, mask [4]byte, payload []byte) []byte {
	f := []byte{b0, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i, p := range payload {
		f = append(f, p^mask[i&3])
	}
	return f
}

func TestParseClientControl(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	ping := clientFrame(0x89, mask, []byte("hello"))
	pong := clientFrame(0x8a, mask, nil)
	long := clientFrame(0x89, mask, bytes.Repeat([]byte{'x'}, 125))
	text := clientFrame(0x81, mask, []byte(`{"event":"x"}`))
	for _, tc := range []struct {
		name    string
		in      []byte
		op      int
		payload string
		size    int
		ok      bool
	}{
		{"ping", ping, websocket.PingMessage, "hello", len(ping), true},
		{"pong, empty", pong, websocket.PongMessage, "", 6, true},
		{"ping of 125 bytes", long, websocket.PingMessage, string(bytes.Repeat([]byte{'x'}, 125)), 131, true},
		{"ping then a text frame", append(append([]byte{}, ping...), text...), websocket.PingMessage, "hello", len(ping), true},
		{"ping not wholly arrived", ping[:len(ping)-1], 0, "", 0, false},
		{"header only", ping[:2], 0, "", 0, false},
		{"text frame", text, 0, "", 0, false},
		{"close frame", clientFrame(0x88, mask, []byte{3, 232}), 0, "", 0, false},
		{"ping without FIN", clientFrame(0x09, mask, nil), 0, "", 0, false},
		{"ping with an RSV bit", clientFrame(0xc9, mask, nil), 0, "", 0, false},
		{"unmasked ping", []byte{0x89, 0x00, 0, 0, 0, 0}, 0, "", 0, false},
		{"ping of 126 bytes (extended length)", []byte{0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4}, 0, "", 0, false},
		{"empty", nil, 0, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, payload, size, ok := parseClientControl(tc.in)
			if ok != tc.ok || op != tc.op || string(payload) != tc.payload || size != tc.size {
				t.Fatalf("got op %d payload %q size %d ok %v, want op %d payload %q size %d ok %v",
					op, payload, size, ok, tc.op, tc.payload, tc.size, tc.ok)
			}
		})
	}
}

// FuzzParseClientControl checks the parser on any bytes a client may send:
// it never panics, what it takes is exactly one whole valid ping or pong,
// and every valid ping or pong, whatever follows it, is taken whole.
func FuzzParseClientControl(f *testing.F) {
	f.Add(clientFrame(0x89, [4]byte{1, 2, 3, 4}, []byte("hi")))
	f.Add(clientFrame(0x8a, [4]byte{}, nil))
	f.Add(clientFrame(0x81, [4]byte{9, 9, 9, 9}, []byte(`{"event":"sendMessage"}`)))
	f.Add([]byte{0x89, 0xfe, 0, 200})
	f.Fuzz(func(t *testing.T, data []byte) {
		op, payload, size, ok := parseClientControl(data)
		if ok {
			if op != websocket.PingMessage && op != websocket.PongMessage {
				t.Fatalf("took opcode %d", op)
			}
			if len(payload) > 125 || size != 6+len(payload) || size > len(data) {
				t.Fatalf("size %d, payload %d bytes, input %d bytes", size, len(payload), len(data))
			}
			var mask [4]byte
			copy(mask[:], data[2:6])
			if want := clientFrame(0x80|byte(op), mask, payload); !bytes.Equal(want, data[:size]) {
				t.Fatalf("frame %x does not encode op %d payload %q", data[:size], op, payload)
			}
		}
		// The same bytes read as a mask, a payload and a tail, framed as
		// a valid control frame, must be taken whole.
		if len(data) < 5 {
			return
		}
		wantOp := websocket.PingMessage
		if data[0]&1 == 1 {
			wantOp = websocket.PongMessage
		}
		var mask [4]byte
		copy(mask[:], data[1:5])
		rest := data[5:]
		n := min(len(rest), int(data[0]>>1)%126)
		frame := clientFrame(0x80|byte(wantOp), mask, rest[:n])
		in := append(frame, rest[n:]...)
		op, payload, size, ok = parseClientControl(in)
		if !ok || op != wantOp || size != len(frame) || !bytes.Equal(payload, rest[:n]) {
			t.Fatalf("valid frame %x: got op %d payload %q size %d ok %v", frame, op, payload, size, ok)
		}
	})
}
