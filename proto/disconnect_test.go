package proto_test

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/proto"
)

func TestDisconnectRoundTrip(t *testing.T) {
	ds := []proto.Disconnect{
		{Users: []string{"alice", `we"ird\`, "é😀"}, Conns: []string{"c1"}, Reason: "banned: \"spam\"", Reconnect: false},
		{Users: []string{"bob"}, Reconnect: true},
		{Conns: []string{"c1", "c2"}},
		{Users: []string{"carol"}, RevokeBefore: 1764739200123},
	}
	for _, d := range ds {
		body := proto.AppendDisconnect(nil, &d)
		if !proto.IsControl(string(body)) {
			t.Fatalf("%s: not seen as a control message", body)
		}
		got, err := proto.DecodeDisconnect(body)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if got.Control != proto.ControlDisconnect || !slices.Equal(got.Users, d.Users) || !slices.Equal(got.Conns, d.Conns) ||
			got.Reason != d.Reason || got.Reconnect != d.Reconnect || got.RevokeBefore != d.RevokeBefore {
			t.Fatalf("%s decoded as %+v, want %+v", body, got, d)
		}
	}
}

// TestDisconnectIsNoDispatch is the compatibility promise of
// docs/protocol.md section 4: a worker that knows only dispatches refuses a
// disconnect as malformed and delivers nothing.
func TestDisconnectIsNoDispatch(t *testing.T) {
	body := proto.AppendDisconnect(nil, &proto.Disconnect{Users: []string{"alice"}, Conns: []string{"c1"}, Reason: "bye", Reconnect: true})
	if d, err := proto.DecodeDispatch(body); err == nil {
		t.Fatalf("a disconnect decoded as the dispatch %+v", d)
	}
	// And a dispatch is not a disconnect.
	disp := proto.AppendDispatch(nil, &proto.Dispatch{Event: "message", Users: []string{"alice"}})
	if proto.IsControl(string(disp)) {
		t.Fatal("a dispatch seen as a control message")
	}
	if _, err := proto.DecodeDisconnect(disp); err == nil {
		t.Fatal("a dispatch decoded as a disconnect")
	}
}

func TestDecodeDisconnectRefuses(t *testing.T) {
	for _, body := range []string{
		``, `[]`, `{}`, `{"control":"reboot","users":["a"]}`,
		`{"control":"disconnect","event":"x","users":["a"]}`,
		`{"control":"disconnect","users":[""]}`,
		`{"control":"disconnect","users":["a\u0000b"]}`,
		`{"control":"disconnect","users":"a"}`,
		`{"control":"disconnect","users":["a"],"revoke_before":-1}`,
		`{"control":"disconnect","users":["a"],"revoke_before":"1"}`,
	} {
		if d, err := proto.DecodeDisconnect([]byte(body)); err == nil {
			t.Errorf("%s decoded as %+v", body, d)
		}
	}
	// Another key order is the same message.
	d, err := proto.DecodeDisconnect([]byte(` { "users" : ["a"], "reconnect": true, "control": "disconnect" }`))
	if err != nil || !d.Reconnect || !slices.Equal(d.Users, []string{"a"}) {
		t.Fatalf("reordered: %+v, %v", d, err)
	}
}

func TestDisconnectCloseCode(t *testing.T) {
	long := strings.Repeat("a", proto.MaxCloseReason-1) + "é" // 124 bytes: é straddles the bound
	for _, tc := range []struct {
		d          proto.Disconnect
		code       int
		wantReason string
	}{
		{proto.Disconnect{}, proto.CloseDisconnected, proto.ReasonDisconnected},
		{proto.Disconnect{Reconnect: true}, proto.CloseReconnect, proto.ReasonReconnect},
		{proto.Disconnect{Reason: "banned"}, proto.CloseDisconnected, "banned"},
		{proto.Disconnect{Reason: "rotate", Reconnect: true}, proto.CloseReconnect, "rotate"},
		{proto.Disconnect{Reason: long}, proto.CloseDisconnected, strings.Repeat("a", proto.MaxCloseReason-1)},
		{proto.Disconnect{Reason: strings.Repeat("😀", 40)}, proto.CloseDisconnected, strings.Repeat("😀", 30)},
	} {
		code, reason := tc.d.CloseCode()
		if code != tc.code || reason != tc.wantReason {
			t.Errorf("%+v: %d %q, want %d %q", tc.d, code, reason, tc.code, tc.wantReason)
		}
	}
}

func TestTruncateReason(t *testing.T) {
	for _, s := range []string{"", "ok", strings.Repeat("é", 100), strings.Repeat("x", 200), "\xff\xfe" + strings.Repeat("€", 60)} {
		got := proto.TruncateReason(s)
		if len(got) > proto.MaxCloseReason || !utf8.ValidString(got) {
			t.Errorf("TruncateReason(%q) = %q: %d bytes, valid %v", s, got, len(got), utf8.ValidString(got))
		}
		if utf8.ValidString(s) && !strings.HasPrefix(s, got) {
			t.Errorf("TruncateReason(%q) = %q is not a prefix", s, got)
		}
	}
}

func TestValidReason(t *testing.T) {
	for s, want := range map[string]bool{"": true, "logged out": true, "é😀": true, "a\nb": false, "\xff": false, "a\u202eb": false} {
		if got := proto.ValidReason(s); got != want {
			t.Errorf("ValidReason(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzDecodeDisconnect(f *testing.F) {
	f.Add(proto.AppendDisconnect(nil, &proto.Disconnect{Users: []string{"a"}, Conns: []string{"c"}, Reason: "r", Reconnect: true}))
	f.Add([]byte(`{"control":"disconnect","event":"e"}`))
	f.Add([]byte(`{"event":"e","args":null,"users":[],"conns":[],"broadcast":false}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := proto.DecodeDisconnect(data)
		if err != nil {
			return
		}
		if _, derr := proto.DecodeDispatch(data); derr == nil {
			t.Fatalf("%q is both a disconnect and a dispatch", data)
		}
		again, err := proto.DecodeDisconnect(proto.AppendDisconnect(nil, &d))
		if err != nil || !slices.Equal(again.Users, d.Users) || !slices.Equal(again.Conns, d.Conns) ||
			again.Reason != d.Reason || again.Reconnect != d.Reconnect {
			t.Fatalf("%q: re-encoded %+v, %v; want %+v", data, again, err, d)
		}
		if _, reason := d.CloseCode(); len(reason) > proto.MaxCloseReason || !utf8.ValidString(reason) {
			t.Fatalf("%q: close reason %q", data, reason)
		}
	})
}

// TestDisconnectRevokeBeforeField: revoke_before is written only when set,
// and a message without it (an earlier handlers-svc's) decodes as no
// revocation.
func TestDisconnectRevokeBeforeField(t *testing.T) {
	body := string(proto.AppendDisconnect(nil, &proto.Disconnect{Users: []string{"a"}}))
	if strings.Contains(body, "revoke_before") {
		t.Fatalf("%s: revoke_before written when 0", body)
	}
	d, err := proto.DecodeDisconnect([]byte(`{"control":"disconnect","users":["a"],"conns":[]}`))
	if err != nil || d.RevokeBefore != 0 {
		t.Fatalf("without the field: %+v, %v", d, err)
	}
	body = string(proto.AppendDisconnect(nil, &proto.Disconnect{Users: []string{"a"}, RevokeBefore: 1500}))
	if !strings.HasSuffix(body, `,"revoke_before":1500}`) {
		t.Fatalf("%s: revoke_before not written", body)
	}
}
