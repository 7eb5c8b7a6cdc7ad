package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

func TestAppendSend(t *testing.T) {
	send := string(appendSend(nil, 7, 12345, 43, 1764072000123456789))
	const want = `{"event":"sendMessage","args":{"to":"u43","text":"r7s12345t1764072000123456789"},"ref":"7.12345"}`
	if send != want {
		t.Fatalf("send frame\n got %s\nwant %s", send, want)
	}
	if w := stringAfterNumber([]byte(`{"event":"connected","id":"u1","args":{"conn":"c","worker":12}}`), []byte(`"worker":`)); w != 12 {
		t.Errorf("worker = %d", w)
	}
}

func TestParseFrame(t *testing.T) {
	cases := []struct {
		frame string
		want  parsed
	}{
		// What the gateway delivers for a send (handlers-svc's message, in a frame).
		{`{"event":"message","id":"u43","args":{"from":"u42","to":"u43","text":"r7s12345t1764072000123456789","ts":1764072000124,"msg_id":"ab"}}`,
			parsed{kind: Message, run: 7, seq: 12345, at: 1764072000123456789, valid: true}},
		{`{"event":"message_sent","id":"u42","args":{"from":"u42","to":"u43","text":"r7s1t5","ts":1,"msg_id":"ab"}}`,
			parsed{kind: MessageSent, run: 7, seq: 1, at: 5, valid: true}},
		{`{"event":"ack","id":"u42","ref":"7.12345"}`, parsed{kind: Ack, run: 7, seq: 12345, valid: true}},
		{`{"event":"error","id":"u42","ref":"7.9","args":{"code":"rate_limited","message":"slow down"}}`,
			parsed{kind: kindError, run: 7, seq: 9, valid: true, code: []byte("rate_limited")}},
		{`{"event":"error","id":"u42","args":{"code":"bad_request","message":"x"}}`, parsed{kind: kindError, code: []byte("bad_request")}},
		{`{"event":"connected","id":"u42","args":{"conn":"c1","worker":1}}`, parsed{kind: kindOther}},
		// A recoverable event carries its position, last; the connected
		// frame's is in its args, which parseFrame does not read.
		{`{"event":"message","id":"u43","args":{"text":"r7s1t5"},"pos":"e1.1764072000124-42"}`,
			parsed{kind: Message, run: 7, seq: 1, at: 5, valid: true, pos: []byte("e1.1764072000124-42")}},
		{`{"event":"news","id":"u43","bpos":"b.1-1","pos":"e.2-2"}`, parsed{kind: kindOther, pos: []byte("e.2-2")}},
		{`{"event":"connected","id":"u42","args":{"conn":"c1","worker":1,"pos":"e.1-1","recovered":true,"missed":0}}`, parsed{kind: kindOther}},
		{`{"event":"message","pos":7}`, parsed{kind: Message}},
		// A heartbeat that tells a socket left out of events its place.
		{`{"event":"$ping","id":"u43","pos":"e1.1764072000124-43"}`, parsed{kind: kindOther, pos: []byte("e1.1764072000124-43")}},
		{`{"event":"$ping","id":"u43","bpos":"b.1-1"}`, parsed{kind: kindOther}},
		// Any order, spacing and escapes; the last of repeated keys.
		{" {\"args\" : {\"text\":\"r1s2t3\", \"x\":[1,{\"a\":null},-2.5e3]} ,\n\"event\":\"mess\\u0061ge\" } ",
			parsed{kind: Message, run: 1, seq: 2, at: 3, valid: true}},
		{`{"event":"ack","ref":"1.1","ref":"2.2"}`, parsed{kind: Ack, run: 2, seq: 2, valid: true}},
		{`{"event":"ack","ref":"1.1","ref":7}`, parsed{kind: Ack}},
		{`{"event":"message","args":{"text":"r1s2t3"},"args":null}`, parsed{kind: Message}},
		// Ours in shape, but no send in it.
		{`{"event":"message","id":"u43","args":{"text":"hello"}}`, parsed{kind: Message}},
		{`{"event":"message","args":{"text":"r1s2t"}}`, parsed{kind: Message}},
		{`{"event":"message","args":{"text":"r1s99999999999999999999t3"}}`, parsed{kind: Message}},
		{`{"event":"message","args":{"text":"r1t2s3"}}`, parsed{kind: Message}},
		{`{"event":"message","args":{"text":"r-1s2t3"}}`, parsed{kind: Message}},
		{`{"event":"ack","ref":"12"}`, parsed{kind: Ack}},
		{`{"event":"ack","ref":"1.2.3"}`, parsed{kind: Ack}},
		{`{"event":"ack"}`, parsed{kind: Ack}},
		// Not JSON, not an object, or no string event.
		{``, parsed{kind: kindBad}},
		{`[]`, parsed{kind: kindBad}},
		{`null`, parsed{kind: kindBad}},
		{`{"id":"u1"}`, parsed{kind: kindBad}},
		{`{"event":1}`, parsed{kind: kindBad}},
		{`{"event":"ack","ref":"1.2"`, parsed{kind: kindBad}},
		{`{"event":"ack","ref":"1.2"}x`, parsed{kind: kindBad}},
		{`{"event":"ack","ref":"1.2",}`, parsed{kind: kindBad}},
		{`{"event":"ack","ref":"1.2\q"}`, parsed{kind: kindBad}},
		{`{"event":"ack","n":01}`, parsed{kind: kindBad}},
		{`{"event":"ack","n":1.}`, parsed{kind: kindBad}},
		{`{"event":"ack","n":tru}`, parsed{kind: kindBad}},
		{"{\"event\":\"ack\",\"ref\":\"1.\t2\"}", parsed{kind: kindBad}},
		{`{"event":"ack","x":` + string(bytes.Repeat([]byte("["), maxDepth)) + string(bytes.Repeat([]byte("]"), maxDepth)) + `}`, parsed{kind: kindBad}},
	}
	for _, c := range cases {
		if got := parseFrame([]byte(c.frame)); !sameParse(got, c.want) {
			t.Errorf("parseFrame(%s)\n got %+v\nwant %+v", c.frame, got, c.want)
		}
	}
}

func sameParse(a, b parsed) bool {
	return a.kind == b.kind && a.run == b.run && a.seq == b.seq && a.at == b.at && a.valid == b.valid &&
		bytes.Equal(a.code, b.code) && bytes.Equal(a.pos, b.pos)
}

// referenceParse is parseFrame written with encoding/json, to check it
// against.
func referenceParse(data []byte) parsed {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil || obj == nil {
		return parsed{kind: kindBad}
	}
	str := func(raw json.RawMessage) ([]byte, bool) {
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return []byte(s), true
	}
	event, ok := str(obj["event"])
	if !ok {
		return parsed{kind: kindBad}
	}
	var args map[string]json.RawMessage
	if raw := obj["args"]; len(raw) > 0 && raw[0] == '{' {
		_ = json.Unmarshal(raw, &args)
	}
	p := parsed{kind: eventKind(event)}
	p.code, _ = str(args["code"])
	p.pos, _ = str(obj["pos"])
	if p.kind == kindOther {
		return p
	}
	if p.kind == Ack || p.kind == kindError {
		if ref, ok := str(obj["ref"]); ok {
			p.run, p.seq, p.valid = parseRef(ref)
		}
	} else if text, ok := str(args["text"]); ok {
		p.run, p.seq, p.at, p.valid = parseText(text)
	}
	return p
}

// FuzzParseFrame checks parseFrame against encoding/json on any input.
func FuzzParseFrame(f *testing.F) {
	msg := []byte(`{"from":"u42","to":"u43","text":"r7s12345t1764072000123456789","ts":1764072000124,"msg_id":"ab"}`)
	f.Add(proto.AppendEvent(nil, "message", "u43", msg))
	f.Add(proto.AppendEvent(nil, "message_sent", "u42", msg))
	f.Add(proto.AppendAck(nil, "u42", "7.12345"))
	f.Add(proto.AppendError(nil, "u42", "7.9", true, proto.NewError("rate_limited", "<slow> \"down\"")))
	f.Add(proto.AppendError(nil, "u42", "", false, proto.NewError("bad_request", "x")))
	f.Add(proto.AppendConnected(nil, "u42", "c1", 1))
	f.Add(proto.AppendEventAt(nil, "message", "u43", msg, proto.KeyPos, []byte("e1.1764072000124-42")))
	f.Add(proto.AppendHeartbeat(nil, "u43"))
	f.Add(proto.AppendHeartbeatAt(nil, "u43", []byte("e1.1764072000124-43"), []byte("b.1-1")))
	f.Add([]byte(` {"args":{"text":"r1s2t3","x":[1,{"a":null},-2.5e3,true,false]},"event":"mess\u0061ge"}`))
	f.Add([]byte(`{"event":"ack","ref":"1.1","ref":"2.2","args":{"code":"\u00e9\n"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := parseFrame(data), referenceParse(data)
		if got.kind == kindBad && want.kind != kindBad && bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) > maxDepth {
			return // deeper than parseFrame follows
		}
		if !utf8.Valid(got.code) { // encoding/json replaces invalid UTF-8; the code is only a label
			got.code, want.code = nil, nil
		}
		if !utf8.Valid(got.pos) { // the same for a position, which the gateway writes in ASCII
			got.pos, want.pos = nil, nil
		}
		if !sameParse(got, want) {
			t.Fatalf("parseFrame(%q)\n got %+v\nwant %+v (encoding/json)", data, got, want)
		}
	})
}

var benchFrames = []struct {
	name  string
	frame []byte
}{
	{"message", proto.AppendEvent(nil, "message", "u43", []byte(`{"from":"u42","to":"u43","text":"r7s12345t1764072000123456789","ts":1764072000124,"msg_id":"0123456789abcdef0123456789abcdef"}`))},
	{"ack", proto.AppendAck(nil, "u42", "7.12345")},
	{"error", proto.AppendError(nil, "u42", "7.9", true, proto.NewError("unavailable", "the service is unavailable"))},
}

func BenchmarkParseFrame(b *testing.B) {
	for _, bf := range benchFrames {
		b.Run(bf.name, func(b *testing.B) {
			b.SetBytes(int64(len(bf.frame)))
			b.ReportAllocs()
			for b.Loop() {
				if p := parseFrame(bf.frame); p.kind == kindBad {
					b.Fatal(fmt.Sprintf("%s did not parse", bf.frame))
				}
			}
		})
	}
}

// BenchmarkReceive is what one read of the gateway's frames costs the
// reader: two frames in one read, split and parsed.
func BenchmarkReceive(b *testing.B) {
	var stream []byte
	stream = append(stream, serverFrame(true, opText, benchFrames[0].frame, false)...)
	stream = append(stream, serverFrame(true, opText, benchFrames[1].frame, false)...)
	var r frameReader
	n := 0
	h := func(op byte, payload []byte) error {
		if parseFrame(payload).valid {
			n++
		}
		return nil
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.feed(stream, h); err != nil {
			b.Fatal(err)
		}
	}
	if n == 0 {
		b.Fatal("nothing parsed")
	}
}
