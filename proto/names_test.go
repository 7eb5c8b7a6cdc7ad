package proto_test

import (
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
		{proto.CodeBadRequest, "bad_request"},
		{proto.CodeUnknownEvent, "unknown_event"},
		{proto.CodeUnavailable, "unavailable"},
		{proto.CodeTimeout, "timeout"},
		{proto.CodeHandlerError, "handler_error"},
		{proto.CodeRateLimited, "rate_limited"},
		{proto.CodeUnauthorized, "unauthorized"},
		{proto.CodeForbiddenOrigin, "forbidden_origin"},
	} {
		if c.got != c.want {
			t.Errorf("constant = %q, want %q", c.got, c.want)
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
