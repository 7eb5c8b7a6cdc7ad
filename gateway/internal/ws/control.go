package ws

import "github.com/gorilla/websocket"

// maxClientControl is the longest control frame a client may send: a 2-byte
// header, the 4-byte mask and at most 125 bytes of payload (RFC 6455
// section 5.5).
const maxClientControl = 2 + 4 + 125

// parseClientControl reads the frame at the start of b when it is a whole,
// valid ping or pong of a client: FIN set, no RSV bits, masked, a payload of
// at most 125 bytes. It returns the opcode (websocket.PingMessage or
// PongMessage), the unmasked payload in a new slice, and the frame's length.
// Anything else (another frame, one not wholly in b, an invalid one) is
// not ok and is left to gorilla, which reads it or fails the connection as
// the RFC says.
func parseClientControl(b []byte) (op int, payload []byte, size int, ok bool) {
	if len(b) < 6 {
		return 0, nil, 0, false
	}
	switch b[0] {
	case 0x80 | websocket.PingMessage, 0x80 | websocket.PongMessage:
		op = int(b[0] & 0x0f)
	default:
		return 0, nil, 0, false
	}
	if b[1]&0x80 == 0 { // unmasked: a protocol error gorilla reports
		return 0, nil, 0, false
	}
	n := int(b[1] & 0x7f)
	if n > 125 {
		return 0, nil, 0, false
	}
	size = 6 + n
	if len(b) < size {
		return 0, nil, 0, false
	}
	mask := b[2:6]
	payload = make([]byte, n)
	for i := range payload {
		payload[i] = b[6+i] ^ mask[i&3]
	}
	return op, payload, size, true
}
