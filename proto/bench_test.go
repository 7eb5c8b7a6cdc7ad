package proto_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// sendMessageFrame is a typical client envelope, about 100 bytes.
const sendMessageFrame = `{"event":"sendMessage","args":{"to":"bob","text":"are we still on for lunch today?"},"ref":"c42"}`

// messageArgs are the args of a typical "message" delivery.
var messageArgs = json.RawMessage(`{"from":"alice","to":"bob","text":"are we still on for lunch today?","ts":1764072000123,"msg_id":"01JDQ8Z6V4M3K2T9X7R5N1B0CE"}`)

func BenchmarkDecodeEnvelope(b *testing.B) {
	data := []byte(sendMessageFrame)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := proto.DecodeEnvelope(data)
		if err != nil || env.Event != "sendMessage" {
			b.Fatalf("DecodeEnvelope = %+v, %v", env, err)
		}
	}
}

// BenchmarkDecodeEnvelopeEscapedRef is an envelope whose ref holds
// escapes (an accented letter and an emoji as a surrogate pair, as
// JSON.stringify may write them): the path that decodes the ref.
func BenchmarkDecodeEnvelopeEscapedRef(b *testing.B) {
	data := []byte(`{"event":"sendMessage","args":{"to":"bob","text":"hi"},"ref":"caf\u00e9-\ud83d\ude00-42"}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := proto.DecodeEnvelope(data)
		if err != nil || env.Ref != "café-\U0001F600-42" {
			b.Fatalf("DecodeEnvelope = %+v, %v", env, err)
		}
	}
}

func BenchmarkDecodeEnvelopeLargeArgs(b *testing.B) {
	args, err := json.Marshal(map[string]any{
		"to":       "bob",
		"text":     strings.Repeat(`lunch? "soon" \ é `, 180),
		"mentions": []string{"carol", "dave", "erin"},
		"meta":     map[string]any{"client": "web", "version": 3, "draft": false},
	})
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"event":"sendMessage","args":` + string(args) + `,"ref":"c42"}`)
	if len(args) < 3500 || len(args) > 4500 {
		b.Fatalf("args are %d bytes, want about 4 KB", len(args))
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := proto.DecodeEnvelope(data)
		if err != nil || len(env.Args) != len(args) {
			b.Fatalf("DecodeEnvelope: %d bytes of args, %v", len(env.Args), err)
		}
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = proto.AppendEvent(buf[:0], "message", "bob", messageArgs)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendRequest(b *testing.B) {
	req := &proto.Request{
		Event: "sendMessage",
		Args:  json.RawMessage(`{"to":"bob","text":"are we still on for lunch today?"}`),
		User:  "alice",
		Conn:  "01JDQ8Z6V4M3K2T9X7R5N1B0CE",
		Ref:   "c42",
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = proto.AppendRequest(buf[:0], req)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeRequest(b *testing.B) {
	data := proto.AppendRequest(nil, &proto.Request{
		Event: "sendMessage",
		Args:  json.RawMessage(`{"to":"bob","text":"are we still on for lunch today?"}`),
		User:  "alice",
		Conn:  "01JDQ8Z6V4M3K2T9X7R5N1B0CE",
		Ref:   "c42",
	})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := proto.DecodeRequest(data)
		if err != nil || r.User != "alice" {
			b.Fatalf("DecodeRequest = %+v, %v", r, err)
		}
	}
}

func BenchmarkDecodeDispatch(b *testing.B) {
	data := proto.AppendDispatch(nil, &proto.Dispatch{Event: "message", Args: messageArgs, Users: []string{"alice", "bob"}})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		d, err := proto.DecodeDispatch(data)
		if err != nil || len(d.Users) != 2 {
			b.Fatalf("DecodeDispatch = %+v, %v", d, err)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := `are we still on for "lunch" today? <3 é 😀` + "\n"
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		buf = proto.AppendString(buf[:0], s)
	}
}
