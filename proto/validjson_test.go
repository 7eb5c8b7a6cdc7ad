package proto_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// nest returns v inside depth arrays or objects, alternating, starting with
// an array when array is true.
func nest(depth int, array bool, v string) string {
	var open, close strings.Builder
	for d := 0; d < depth; d++ {
		if (d%2 == 0) == array {
			open.WriteString("[")
			close.WriteString("]")
		} else {
			open.WriteString(`{"k":`)
			close.WriteString("}")
		}
	}
	c := []byte(close.String())
	for i, j := 0, len(c)-1; i < j; i, j = i+1, j-1 {
		c[i], c[j] = c[j], c[i]
	}
	return open.String() + v + string(c)
}

// validJSONCases are inputs where a scanner is easy to get wrong, with
// what json.Valid says of each.
var validJSONCases = []struct {
	in   string
	want bool
}{
	// Empty input, whitespace, lone values, trailing garbage.
	{"", false},
	{" ", false},
	{" \t\r\n", false},
	{"\v1", false},
	{"\f1", false},
	{"\u00a01", false},
	{" \t\r\n1 \t\r\n", true},
	{"1 \v", false},
	{"null", true},
	{"nul", false},
	{"nulll", false},
	{"true", true},
	{"tru", false},
	{"True", false},
	{"false", true},
	{"fals", false},
	{"falsey", false},
	{"true false", false},
	{"{}", true},
	{"[]", true},
	{"{} {}", false},
	{"[] x", false},
	{`"x"`, true},
	{`"x" "y"`, false},
	{"1 2", false},
	{"[1]]", false},
	{"{}}", false},
	{"\x00", false},
	{"1\x00", false},
	// Numbers.
	{"0", true},
	{"-0", true},
	{"-0.0e-0", true},
	{"1e5", true},
	{"1E5", true},
	{"1e+5", true},
	{"1E-05", true},
	{"1.5", true},
	{"123456789012345678901234567890e999", true},
	{"1.e5", false},
	{"1.", false},
	{".5", false},
	{"01", false},
	{"-01", false},
	{"00", false},
	{"-", false},
	{"--1", false},
	{"+1", false},
	{"1E+", false},
	{"1e", false},
	{"1e-", false},
	{"1e+-5", false},
	{"1.5.5", false},
	{"0x10", false},
	{"1_000", false},
	{"Infinity", false},
	{"NaN", false},
	{"-Infinity", false},
	{"[1,-]", false},
	{"[01]", false},
	{"[1e5,1.5e-3,-0]", true},
	{"[1true]", false},
	{`{"a":1"b"}`, false},
	// Strings and escapes.
	{`""`, true},
	{`"`, false},
	{`"abc`, false},
	{`"\"`, false},
	{`"\\"`, true},
	{`"\/\b\f\n\r\t\"\\"`, true},
	{`"\u0041\u00e9\uD83D\uDE00"`, true},
	{`"\uD800"`, true}, // a lone surrogate is only a bad character, not bad JSON
	{`"\uABCDx\uabcd"`, true},
	{`"\u12"`, false},
	{`"\u12`, false},
	{`"\u"`, false},
	{`"\u123g"`, false},
	{`"\U0041"`, false},
	{`"\x41"`, false},
	{`"\a"`, false},
	{`"\'"`, false},
	{`"\0"`, false},
	{"\"\\\n\"", false},
	{"\"a\tb\"", false},
	{"\"a\nb\"", false},
	{"\"\x00\"", false},
	{"\"\x1f\"", false},
	{"\"\x7f\"", true},
	{"\"\xff\"", true},         // invalid UTF-8 is accepted inside strings
	{"\"\xc3\"", true},         // a truncated sequence too
	{"\"\xed\xa0\x80\"", true}, // and an encoded surrogate
	{"\"é€😀\"", true},
	{"\xff", false},
	{"[\"\xff\xfe\",1]", true},
	{`"` + strings.Repeat("a", 64) + `\n` + strings.Repeat("b", 7) + `"`, true},
	{`"` + strings.Repeat("a", 64) + "\x01" + `"`, false},
	{`"` + strings.Repeat("\x80", 15) + `"`, true},
	{`"` + strings.Repeat("a", 15) + `\`, false},
	{`"1234567"`, true},
	{`"12345678"`, true},
	{`"1234567\"`, false},
	// Objects and arrays.
	{`{"a":1}`, true},
	{` { "a" : [ 1 , { } , [ ] , "x" , null ] , "b" : { "c" : true } } `, true},
	{`{"a":1,}`, false},
	{`[1,]`, false},
	{`[,1]`, false},
	{`[1 2]`, false},
	{`{"a" 1}`, false},
	{`{"a"::1}`, false},
	{`{"a":}`, false},
	{`{a:1}`, false},
	{`{1:1}`, false},
	{`{"a":1,"a":2}`, true}, // duplicate keys are valid to json.Valid
	{`{"a",1}`, false},
	{`{"a":1]`, false},
	{`[1}`, false},
	{`[`, false},
	{`{`, false},
	{`{"a"`, false},
	{`{"a":`, false},
	{`{"a":1`, false},
	{`[1,`, false},
	{`{,}`, false},
	{`{"event":"sendMessage","args":{"to":"u123","text":"hi"},"ref":"r1"}`, true},
	// Nesting: the limit is 10000 levels, counted over arrays and objects
	// alike; the boundaries of ValidJSON's small stack are at 64 and 256.
	{nest(64, true, "1"), true},
	{nest(65, false, "1"), true},
	{nest(256, true, `"x"`), true},
	{nest(257, true, `"x"`), true},
	{nest(257, false, `"x"`), true},
	{nest(300, true, `"x"`) + "x", false},
	{nest(300, true, `"x`), false},
	{nest(9999, true, "[]"), true},
	{nest(9999, false, "{}"), true},
	{nest(10000, true, "0"), true},
	{nest(10000, false, "0"), true},
	{nest(10001, true, "0"), false},
	{nest(10001, false, "0"), false},
	{nest(10000, true, "[]"), false},
	{nest(10000, true, "{}"), false},
	{strings.Repeat("[", 10000), false},
	{strings.Repeat("[", 10001), false},
	{strings.Repeat("[", 20000) + strings.Repeat("]", 20000), false},
}

func TestValidJSON(t *testing.T) {
	for _, c := range validJSONCases {
		if std := json.Valid([]byte(c.in)); std != c.want {
			t.Errorf("json.Valid(%.60q) = %v; the table says %v", c.in, std, c.want)
		}
		if got := proto.ValidJSON([]byte(c.in)); got != c.want {
			t.Errorf("ValidJSON(%.60q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestValidJSONEveryPrefix checks each prefix and each one-byte change of a
// frame that uses every part of the grammar, against json.Valid.
func TestValidJSONEveryPrefix(t *testing.T) {
	doc := []byte(" {\"a\":[1,-0.5e+3,2E-1,true,false,null,\"x\\u00e9\\n\\\"\xff\"],\t\"b\":{},\"c\":[]}\r\n")
	for i := 0; i <= len(doc); i++ {
		if got, want := proto.ValidJSON(doc[:i]), json.Valid(doc[:i]); got != want {
			t.Errorf("ValidJSON(%q) = %v, json.Valid says %v", doc[:i], got, want)
		}
	}
	b := make([]byte, len(doc))
	for i := range doc {
		for _, c := range []byte(" \t\x00\x1f\"\\/{}[]:,.-+0159eEtfnu\x7f\x80\xff") {
			copy(b, doc)
			b[i] = c
			if got, want := proto.ValidJSON(b), json.Valid(b); got != want {
				t.Errorf("ValidJSON(%q) = %v, json.Valid says %v", b, got, want)
			}
		}
	}
}

func TestValidJSONAllocs(t *testing.T) {
	for _, in := range []string{envelopeFrame, nest(10000, true, "0"), nest(10001, true, "0")} {
		data := []byte(in)
		if n := testing.AllocsPerRun(100, func() { proto.ValidJSON(data) }); n != 0 {
			t.Errorf("ValidJSON(%.40q...) allocates %v times", in, n)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := proto.ValidJSON(data), json.Valid(data); got != want {
			t.Fatalf("ValidJSON(%q) = %v, json.Valid says %v", data, got, want)
		}
	})
}

// envelopeFrame is a client envelope as the gateway reads it.
const envelopeFrame = `{"event":"sendMessage","args":{"to":"u123","text":"hello there, how are you today?"},"ref":"r1"}`

// BenchmarkValidJSON compares ValidJSON with json.Valid on what they check
// on the hot paths: a client envelope, a dispatch with positions as
// AppendDispatch writes it, and a dispatch carrying a 4 KB text message.
func BenchmarkValidJSON(b *testing.B) {
	pos := func(off uint64) string {
		return proto.Pos{Epoch: "k3j9x2", MS: 1764072000123, Off: off}.String()
	}
	dispatch := proto.AppendDispatch(nil, &proto.Dispatch{
		Event: "message",
		Args:  messageArgs,
		Users: []string{"u123", "u456", "u789"},
		Pos:   map[string]string{"u123": pos(41), "u456": pos(7), "u789": pos(1203)},
	})
	text, err := json.Marshal(map[string]any{
		"from": "alice",
		"to":   "bob",
		"text": strings.Repeat(`lunch? "soon" \ é, are we still on for today at noon? `, 70),
		"ts":   1764072000123,
	})
	if err != nil {
		b.Fatal(err)
	}
	if len(text) < 3900 || len(text) > 4400 {
		b.Fatalf("text message is %d bytes, want about 4 KB", len(text))
	}
	inputs := []struct {
		name string
		data []byte
	}{
		{"envelope", []byte(envelopeFrame)},
		{"dispatch", dispatch},
		{"text4k", text},
	}
	funcs := []struct {
		name  string
		valid func([]byte) bool
	}{
		{"json.Valid", json.Valid},
		{"ValidJSON", proto.ValidJSON},
	}
	for _, in := range inputs {
		for _, fn := range funcs {
			b.Run(in.name+"/"+fn.name, func(b *testing.B) {
				b.SetBytes(int64(len(in.data)))
				b.ReportAllocs()
				for b.Loop() {
					if !fn.valid(in.data) {
						b.Fatalf("%s(%s) = false", fn.name, in.name)
					}
				}
			})
		}
	}
}
