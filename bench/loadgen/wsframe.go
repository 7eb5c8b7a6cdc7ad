package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The load generator speaks the client side of RFC 6455 itself instead of
// through gorilla/websocket: it shares two cores with the server it
// measures, and a CPU profile of it under load was mostly system calls and
// goroutine switches per frame (a read that finds the frame, a second read
// that finds nothing, and a writer goroutine woken per send). Owning the
// framing lets a socket read until a short read and then wait, and lets a
// send be written by the goroutine that schedules it. What the gateway
// sends is outside input: frameReader checks what it parses and reports a
// stream that breaks the protocol instead of trusting it.

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxMessage is the largest message a socket accepts, fragments included.
// The gateway's frames are a few hundred bytes.
const maxMessage = 1 << 20

// keptBufCap is the largest carry-over buffer a socket keeps once it is
// empty again, so that an idle socket holds little memory.
const keptBufCap = 4096

// errProtocol is the cause of every error frameReader reports.
var errProtocol = errors.New("websocket protocol error")

func protocolError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, a...))
}

// frameReader splits the byte stream of one socket into messages and
// control frames. It is used by one goroutine at a time.
type frameReader struct {
	rest  []byte // the start of a frame that was incomplete at the end of the last feed
	msg   []byte // the fragments so far of a message not yet complete
	msgOp byte   // that message's opcode; 0 when none is open
}

// frameHandler receives one complete message (opText or opBinary, its
// fragments joined) or control frame; payload is valid only during the
// call. A non-nil error stops feed, which returns it.
type frameHandler func(op byte, payload []byte) error

// feed parses the frames completed by data, after what the previous calls
// left over, and hands each message and control frame to h in order. It
// keeps an incomplete frame for the next call. It stops at the first error,
// of h or of the stream; after h's error the frames that follow are kept,
// so a later feed (with nil data) hands them on.
func (r *frameReader) feed(data []byte, h frameHandler) error {
	buf := data
	carried := len(r.rest) > 0
	if carried {
		r.rest = append(r.rest, data...)
		buf = r.rest
	}
	n, err := r.parse(buf, h)
	tail := buf[n:]
	switch {
	case len(tail) == 0:
		r.rest = r.rest[:0]
		if cap(r.rest) > keptBufCap {
			r.rest = nil
		}
	case carried:
		r.rest = r.rest[:copy(r.rest, tail)]
	default:
		r.rest = append(r.rest[:0], tail...)
	}
	return err
}

// buffered reports whether bytes of the stream are waiting in r.
func (r *frameReader) buffered() bool { return len(r.rest) > 0 }

// parse hands the complete frames at the start of buf to h and returns how
// many bytes they took.
func (r *frameReader) parse(buf []byte, h frameHandler) (int, error) {
	off := 0
	for {
		b := buf[off:]
		if len(b) < 2 {
			return off, nil
		}
		fin := b[0]&0x80 != 0
		op := b[0] & 0x0f
		if b[0]&0x70 != 0 {
			return off, protocolError("reserved bits set without an extension")
		}
		if b[1]&0x80 != 0 {
			return off, protocolError("masked frame from the server")
		}
		size, hdr := uint64(b[1]&0x7f), 2
		switch size {
		case 126:
			if len(b) < 4 {
				return off, nil
			}
			size, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return off, nil
			}
			size, hdr = binary.BigEndian.Uint64(b[2:]), 10
		}
		switch op {
		case opClose, opPing, opPong:
			if !fin || size > 125 {
				return off, protocolError("control frame fragmented or over 125 bytes")
			}
		case opText, opBinary, opContinuation:
			if size > maxMessage || uint64(len(r.msg))+size > maxMessage {
				return off, protocolError("message over %d bytes", maxMessage)
			}
		default:
			return off, protocolError("unknown opcode %d", op)
		}
		if uint64(len(b)-hdr) < size {
			return off, nil
		}
		payload := b[hdr : hdr+int(size)]
		next := off + hdr + int(size)
		var err error
		switch op {
		case opText, opBinary:
			if r.msgOp != 0 {
				return off, protocolError("a new message inside a fragmented one")
			}
			if fin {
				err = h(op, payload)
			} else {
				r.msgOp = op
				r.msg = append(r.msg[:0], payload...)
			}
		case opContinuation:
			if r.msgOp == 0 {
				return off, protocolError("continuation frame without a message")
			}
			r.msg = append(r.msg, payload...)
			if fin {
				op := r.msgOp
				r.msgOp = 0
				err = h(op, r.msg)
				r.msg = r.msg[:0]
				if cap(r.msg) > keptBufCap {
					r.msg = nil
				}
			}
		default:
			err = h(op, payload)
		}
		if err != nil {
			return next, err
		}
		off = next
	}
}

// appendClientFrame appends a final frame with opcode op and payload,
// masked with key as RFC 6455 section 5.3 requires of every client frame.
func appendClientFrame(dst []byte, op byte, payload []byte, key uint32) []byte {
	n := len(payload)
	switch {
	case n <= 125:
		dst = append(dst, 0x80|op, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|op, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|op, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	binary.BigEndian.PutUint32(mask[:], key)
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range dst[start:] {
		dst[start+i] ^= mask[i&3]
	}
	return dst
}

// closeFrame is a close frame from the server: its status code (1005 when
// it has none) and reason.
type closeFrame struct {
	code   int
	reason string
}

func (c *closeFrame) Error() string {
	return fmt.Sprintf("closed by the server: %d %s", c.code, c.reason)
}

// parseClose reads the payload of a close frame.
func parseClose(payload []byte) *closeFrame {
	if len(payload) < 2 {
		return &closeFrame{code: 1005}
	}
	return &closeFrame{code: int(binary.BigEndian.Uint16(payload)), reason: string(payload[2:])}
}
