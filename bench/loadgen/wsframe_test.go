package loadgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// serverFrame encodes a frame the way a server sends it: unmasked, with
// the shortest length encoding unless long forces the 64-bit one.
func serverFrame(fin bool, op byte, payload []byte, long bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	n := len(payload)
	var out []byte
	switch {
	case long:
		out = binary.BigEndian.AppendUint64([]byte{b0, 127}, uint64(n))
	case n <= 125:
		out = []byte{b0, byte(n)}
	case n <= 0xffff:
		out = []byte{b0, 126, byte(n >> 8), byte(n)}
	default:
		out = binary.BigEndian.AppendUint64([]byte{b0, 127}, uint64(n))
	}
	return append(out, payload...)
}

// event is what a frameHandler was handed.
type event struct {
	op      byte
	payload string
}

func (e event) String() string {
	if len(e.payload) > 40 {
		return fmt.Sprintf("op%d:%q...(%d bytes)", e.op, e.payload[:40], len(e.payload))
	}
	return fmt.Sprintf("op%d:%q", e.op, e.payload)
}

// collect feeds stream to a fresh frameReader in chunks of size chunk (0:
// all at once) and returns what it handed on, and the first error.
func collect(stream []byte, chunk int) ([]event, error) {
	var r frameReader
	var got []event
	h := func(op byte, p []byte) error {
		got = append(got, event{op, string(p)})
		return nil
	}
	if chunk <= 0 {
		chunk = len(stream) + 1
	}
	for len(stream) > 0 {
		n := min(chunk, len(stream))
		if err := r.feed(stream[:n], h); err != nil {
			return got, err
		}
		stream = stream[n:]
	}
	return got, nil
}

func TestFrameReaderSplitsAStreamAtAnyBoundary(t *testing.T) {
	long := strings.Repeat("x", 300)
	huge := strings.Repeat("y", 70000)
	var stream []byte
	stream = append(stream, serverFrame(true, opText, []byte(`{"event":"ack","id":"u1","ref":"1.2"}`), false)...)
	stream = append(stream, serverFrame(true, opPing, []byte("p"), false)...)
	stream = append(stream, serverFrame(true, opText, []byte(long), false)...)
	stream = append(stream, serverFrame(true, opBinary, []byte(huge), false)...)
	stream = append(stream, serverFrame(true, opText, []byte("sixty-four"), true)...)
	// A message in three fragments with a ping between them.
	stream = append(stream, serverFrame(false, opText, []byte("frag-"), false)...)
	stream = append(stream, serverFrame(false, opContinuation, []byte("ment"), false)...)
	stream = append(stream, serverFrame(true, opPing, nil, false)...)
	stream = append(stream, serverFrame(true, opContinuation, []byte("ed"), false)...)
	stream = append(stream, serverFrame(true, opText, nil, false)...)
	stream = append(stream, serverFrame(true, opClose, []byte{0x03, 0xf0, 'b', 'y', 'e'}, false)...)
	want := []event{
		{opText, `{"event":"ack","id":"u1","ref":"1.2"}`},
		{opPing, "p"},
		{opText, long},
		{opBinary, huge},
		{opText, "sixty-four"},
		{opPing, ""},
		{opText, "frag-mented"},
		{opText, ""},
		{opClose, "\x03\xf0bye"},
	}
	for _, chunk := range []int{0, 1, 2, 3, 7, 100, 4096} {
		got, err := collect(stream, chunk)
		if err != nil {
			t.Fatalf("chunks of %d: %v", chunk, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("chunks of %d:\n got %v\nwant %v", chunk, got, want)
		}
	}
	if cf := parseClose([]byte{0x03, 0xf0, 'b', 'y', 'e'}); cf.code != 1008 || cf.reason != "bye" {
		t.Errorf("close frame = %+v", cf)
	}
	if cf := parseClose(nil); cf.code != 1005 || cf.reason != "" {
		t.Errorf("empty close frame = %+v", cf)
	}
}

func TestFrameReaderRefusesWhatBreaksTheProtocol(t *testing.T) {
	cases := []struct {
		name   string
		stream []byte
	}{
		{"masked", []byte{0x81, 0x81, 1, 2, 3, 4, 'x'}},
		{"reserved bits", []byte{0xc1, 0x01, 'x'}},
		{"unknown opcode", []byte{0x83, 0x00}},
		{"fragmented ping", serverFrame(false, opPing, nil, false)},
		{"long ping", serverFrame(true, opPing, bytes.Repeat([]byte{'p'}, 126), false)},
		{"continuation first", serverFrame(true, opContinuation, []byte("x"), false)},
		{"message inside a message", append(serverFrame(false, opText, []byte("a"), false), serverFrame(true, opText, []byte("b"), false)...)},
		{"too big", []byte{0x81, 127, 0, 0, 0, 0, 0, 0x20, 0, 0}},
		{"length over 2^63", []byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}},
		{"fragments too big together", append(serverFrame(false, opBinary, make([]byte, maxMessage), false), serverFrame(true, opContinuation, []byte("x"), false)...)},
	}
	for _, c := range cases {
		_, err := collect(c.stream, 0)
		if !errors.Is(err, errProtocol) {
			t.Errorf("%s: error %v, want a protocol error", c.name, err)
		}
	}
}

func TestFrameReaderKeepsFramesAfterAStop(t *testing.T) {
	stream := append(serverFrame(true, opText, []byte("connected"), false), serverFrame(true, opText, []byte("next"), false)...)
	stream = append(stream, 0x81) // the start of a third
	var r frameReader
	stop := errors.New("stop")
	var got []string
	err := r.feed(stream, func(_ byte, p []byte) error {
		got = append(got, string(p))
		return stop
	})
	if err != stop || fmt.Sprint(got) != "[connected]" || !r.buffered() {
		t.Fatalf("first feed: %v, %q, buffered %v", err, got, r.buffered())
	}
	h := func(_ byte, p []byte) error {
		got = append(got, string(p))
		return nil
	}
	if err := r.feed(nil, h); err != nil || fmt.Sprint(got) != "[connected next]" {
		t.Fatalf("second feed: %v, %q", err, got)
	}
	if err := r.feed([]byte{0x01, 'z'}, h); err != nil || fmt.Sprint(got) != "[connected next z]" || r.buffered() {
		t.Fatalf("third feed: %v, %q, buffered %v", err, got, r.buffered())
	}
}

func TestAppendClientFrameMasksEveryLength(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 0xffff, 0x10000} {
		payload := bytes.Repeat([]byte{'a', 'b', 'c'}, n/3+1)[:n]
		f := appendClientFrame([]byte("prefix"), opText, payload, 0xdeadbeef)
		f = f[len("prefix"):]
		if f[0] != 0x81 || f[1]&0x80 == 0 {
			t.Fatalf("%d bytes: header % x", n, f[:2])
		}
		size, hdr := int(f[1]&0x7f), 2
		switch size {
		case 126:
			size, hdr = int(binary.BigEndian.Uint16(f[2:])), 4
		case 127:
			size, hdr = int(binary.BigEndian.Uint64(f[2:])), 10
		}
		if size != n || len(f) != hdr+4+n {
			t.Fatalf("%d bytes: length %d, frame %d bytes", n, size, len(f))
		}
		mask, body := f[hdr:hdr+4], f[hdr+4:]
		if binary.BigEndian.Uint32(mask) != 0xdeadbeef {
			t.Fatalf("%d bytes: mask % x", n, mask)
		}
		for i := range body {
			body[i] ^= mask[i%4]
		}
		if !bytes.Equal(body, payload) {
			t.Fatalf("%d bytes: payload does not unmask", n)
		}
	}
}

// FuzzFrameReader feeds arbitrary streams: the reader must not panic, and
// where the stream is cut must not change what it hands on or whether it
// fails.
func FuzzFrameReader(f *testing.F) {
	f.Add(serverFrame(true, opText, []byte(`{"event":"ack","id":"u1","ref":"1.2"}`), false), 3)
	f.Add(append(serverFrame(false, opText, []byte("ab"), false), serverFrame(true, opContinuation, []byte("cd"), false)...), 1)
	f.Add(serverFrame(true, opText, make([]byte, 200), false), 5)
	f.Add(serverFrame(true, opText, []byte("x"), true), 2)
	f.Add([]byte{0x88, 0x02, 0x03, 0xe8}, 1)
	f.Fuzz(func(t *testing.T, stream []byte, chunk int) {
		whole, errWhole := collect(stream, 0)
		parts, errParts := collect(stream, chunk%64+1)
		if (errWhole == nil) != (errParts == nil) {
			t.Fatalf("whole: %v; in chunks of %d: %v", errWhole, chunk%64+1, errParts)
		}
		if !slices.Equal(whole, parts) {
			t.Fatalf("whole: %v; in chunks of %d: %v", whole, chunk%64+1, parts)
		}
	})
}
