package proto_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

func TestSubject(t *testing.T) {
	for _, event := range []string{"sendMessage", "postUpdated", "a", "A0_-z9", "a" + strings.Repeat("b", 63)} {
		subject := proto.Subject(event)
		if want := "handlers." + event; subject != want {
			t.Errorf("Subject(%q) = %q, want %q", event, subject, want)
		}
		// handlers-svc subscribes to SubjectAll: every subject must match it.
		if !strings.HasPrefix(subject, strings.TrimSuffix(proto.SubjectAll, ">")) {
			t.Errorf("Subject(%q) = %q is not under %q", event, subject, proto.SubjectAll)
		}
		// A valid event name is a single NATS token: no '.', '*', '>' or space.
		if strings.ContainsAny(event, ".*> \t") {
			t.Errorf("event %q would add NATS tokens to its subject", event)
		}
		got, ok := proto.EventFromSubject(subject)
		if !ok || got != event {
			t.Errorf("EventFromSubject(%q) = %q, %v, want %q, true", subject, got, ok, event)
		}
	}
}

func TestEventFromSubject(t *testing.T) {
	tests := []struct {
		subject string
		event   string
		ok      bool
	}{
		{"handlers.sendMessage", "sendMessage", true},
		{"handlers.x", "x", true},
		{"handlers.a.b", "a.b", true}, // not a valid event, but it is what follows the prefix
		{"handlers.", "", false},
		{"handlers", "", false},
		{"", "", false},
		{"handlers>", "", false},
		{"Handlers.x", "", false},
		{"other.sendMessage", "", false},
		{"xhandlers.sendMessage", "", false},
	}
	for _, tt := range tests {
		event, ok := proto.EventFromSubject(tt.subject)
		if event != tt.event || ok != tt.ok {
			t.Errorf("EventFromSubject(%q) = %q, %v, want %q, %v", tt.subject, event, ok, tt.event, tt.ok)
		}
	}
}

// TestNames pins the names other processes depend on: changing one is a
// protocol break.
func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{proto.SubjectPrefix, "handlers."},
		{proto.SubjectAll, "handlers.>"},
		{proto.QueueGroup, "handlers-svc"},
		{proto.Channel, "switchboard:outgoing"},
		{proto.EventConnected, "connected"},
		{proto.EventAck, "ack"},
		{proto.EventError, "error"},
	} {
		if c.got != c.want {
			t.Errorf("constant = %q, want %q", c.got, c.want)
		}
	}
	for _, c := range []struct {
		got  proto.Code
		want string
	}{
		{proto.CodeBadRequest, "bad_request"},
		{proto.CodeUnknownEvent, "unknown_event"},
		{proto.CodeUnavailable, "unavailable"},
		{proto.CodeTimeout, "timeout"},
		{proto.CodeHandlerError, "handler_error"},
		{proto.CodeRateLimited, "rate_limited"},
		{proto.CodeUnauthorized, "unauthorized"},
		{proto.CodeForbiddenOrigin, "forbidden_origin"},
		{proto.CodeTooManyConnections, "too_many_connections"},
	} {
		if string(c.got) != c.want {
			t.Errorf("code = %q, want %q", c.got, c.want)
		}
	}
	for _, c := range []struct{ got, want int }{
		{proto.CloseNormal, 1000}, {proto.CloseGoingAway, 1001}, {proto.CloseInvalidData, 1007},
		{proto.ClosePolicy, 1008}, {proto.CloseMessageTooBig, 1009}, {proto.CloseInternalError, 1011},
	} {
		if c.got != c.want {
			t.Errorf("close code = %d, want %d", c.got, c.want)
		}
	}
	if proto.MaxEventLen != 64 || proto.MaxRefLen != 64 {
		t.Errorf("MaxEventLen, MaxRefLen = %d, %d, want 64, 64", proto.MaxEventLen, proto.MaxRefLen)
	}
}

// TestCodes: the closed set is exactly the contract's codes, each Valid,
// and nothing else is.
func TestCodes(t *testing.T) {
	want := []proto.Code{
		"bad_request", "unknown_event", "unavailable", "timeout", "handler_error", "rate_limited",
		"forbidden", "unauthorized", "forbidden_origin", "too_many_connections",
	}
	got := proto.Codes()
	if !slices.Equal(got, want) {
		t.Fatalf("Codes() = %q, want %q", got, want)
	}
	got[0] = "changed"
	if proto.Codes()[0] != proto.CodeBadRequest {
		t.Fatal("Codes returned its own array: a caller changed the set")
	}
	for _, tt := range []struct {
		code proto.Code
		want bool
	}{
		{proto.CodeBadRequest, true},
		{proto.CodeTooManyConnections, true},
		{"", false},
		{"Bad_Request", false},
		{"bad_request ", false},
		{"forbidden", true},
		{"forbidden ", false},
		{"ok", false},
	} {
		if got := tt.code.Valid(); got != tt.want {
			t.Errorf("Code(%q).Valid() = %v, want %v", tt.code, got, tt.want)
		}
	}
	for _, c := range want {
		if !c.Valid() {
			t.Errorf("Code(%q).Valid() = false", c)
		}
	}
}

// TestCodeJSON: a Code is encoded as the plain string it was before it had
// a type, in both directions.
func TestCodeJSON(t *testing.T) {
	e := proto.Error{Code: proto.CodeTimeout, Message: "slow"}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"code":"timeout","message":"slow"}` {
		t.Fatalf("Marshal = %s", b)
	}
	var back proto.Error
	if err := json.Unmarshal(b, &back); err != nil || back != e {
		t.Fatalf("Unmarshal = %+v, %v; want %+v", back, err, e)
	}
}

// TestValidRoomName checks ValidRoomName against RoomPattern itself.
func TestValidRoomName(t *testing.T) {
	re := regexp.MustCompile(proto.RoomPattern)
	for _, s := range []string{"", "a", "general", "team:eng.backend-1_x", strings.Repeat("r", 64), strings.Repeat("r", 65),
		"with space", "é", "a/b", "a*", "{x}", "a\x00", "A-Z.0:9_"} {
		if got, want := proto.ValidRoomName(s), re.MatchString(s); got != want {
			t.Errorf("ValidRoomName(%q) = %v, the pattern says %v", s, got, want)
		}
	}
	if got := proto.RoomMembersKey("general"); got != "sb:r:general:m" {
		t.Errorf("RoomMembersKey = %q", got)
	}
	// One script reads and writes both on a Redis Cluster.
	for _, user := range []string{"alice", "{x}", "a}b{c"} {
		if k := proto.RoomJoinKey("general", user); proto.Slot(k) != proto.Slot(proto.RoomMembersKey("general")) {
			t.Errorf("RoomJoinKey(general, %s) = %q is not in the slot of RoomMembersKey", user, k)
		}
	}
}

// TestIdempotencyKey: the dispatch API's records are switchboard keys in
// no partition; a key's own hash tag chooses its slot (any will do).
func TestIdempotencyKey(t *testing.T) {
	if got := proto.IdempotencyKey("order-7"); got != "sb:idem:order-7" {
		t.Errorf("IdempotencyKey = %q", got)
	}
	if got, want := proto.Slot(proto.IdempotencyKey("{u}1")), proto.Slot("u"); got != want {
		t.Errorf("slot of a tagged key %d, want its tag's %d", got, want)
	}
}

func TestParseFanoutMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want proto.FanoutMode
		ok   bool
	}{
		{"", proto.FanoutShared, true},
		{"shared", proto.FanoutShared, true},
		{"per_user", proto.FanoutPerUser, true},
		{"per-user", "", false},
		{"Shared", "", false},
		{"both", "", false},
	} {
		got, err := proto.ParseFanoutMode(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseFanoutMode(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestUserChannelBesideTheStreamKeys(t *testing.T) {
	ch := proto.UserChannel("alice")
	if want := "sb:{" + proto.PartitionTag(proto.PartitionOf("alice")) + "}:u:alice:c"; ch != want {
		t.Errorf("UserChannel(alice) = %q", ch)
	}
	// The channel never names the shared channel or another user's.
	if ch == proto.Channel || ch == proto.UserChannel("alic") || ch == proto.UserStreamKey("alice") {
		t.Errorf("UserChannel(alice) = %q collides", ch)
	}
}

// TestUserIdemKey: an emit's record lies in its user's partition, and no
// user and key, however chosen, name another user's key of any kind: a
// user id may hold ':' and "i:", a key holds neither.
func TestUserIdemKey(t *testing.T) {
	k := proto.UserIdemKey("alice", "k1")
	if want := "sb:{" + proto.PartitionTag(proto.PartitionOf("alice")) + "}:i:k1:u:alice"; k != want {
		t.Errorf("UserIdemKey(alice, k1) = %q, want %q", k, want)
	}
	if proto.Slot(k) != proto.Slot(proto.UserStreamKey("alice")) {
		t.Errorf("UserIdemKey(alice, k1) is not in alice's slot")
	}
	users := []string{"alice", "alice:i:k1", "a", "a:u:b", "b", "x:i:s", "x", "k1:u:alice", "i"}
	idems := []string{"k1", "s", "m", "r", "c", "u", "i", "b", "alice"}
	seen := map[string]string{}
	for _, u := range users {
		for _, name := range []string{proto.UserStreamKey(u), proto.UserMetaKey(u), proto.UserRoomsKey(u), proto.UserPresenceKey(u), proto.UserChannel(u)} {
			seen[name] = "user key of " + u
		}
	}
	for _, u := range users {
		for _, i := range idems {
			k := proto.UserIdemKey(u, i)
			if other, ok := seen[k]; ok {
				t.Errorf("UserIdemKey(%q, %q) = %q is also the %s", u, i, k, other)
			}
			seen[k] = "idem key of " + u + " " + i
		}
	}
}

func TestValidIdem(t *testing.T) {
	for _, s := range []string{"a", "0f8fad5b-d9cb-469f-a165-70867728950e", "AZaz09_.-", strings.Repeat("x", 64)} {
		if !proto.ValidIdem(s) {
			t.Errorf("ValidIdem(%q) = false", s)
		}
	}
	for _, s := range []string{"", strings.Repeat("x", 65), "a:b", "a b", "a/b", "é", "a\x00", "{t}", "a\"", "a\\b"} {
		if proto.ValidIdem(s) {
			t.Errorf("ValidIdem(%q) = true", s)
		}
	}
}
