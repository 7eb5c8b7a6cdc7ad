package httpapi

import (
	"testing"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
)

func TestOnlyKnownKeys(t *testing.T) {
	names := jsonNames[dispatch.Message]()
	for _, want := range []string{"event", "args", "users", "conns", "rooms", "broadcast", "transient", "except_conns"} {
		if !names[want] {
			t.Errorf("jsonNames of Message lacks %q: %v", want, names)
		}
	}
	if names["IdempotencyKey"] || names["-"] {
		t.Errorf("jsonNames of Message has a field json ignores: %v", names)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"event":"e","users":["bob"]}`, `{"event":"e","users":["bob"]}`},
		{`{"event":"e","users":["bob"],"EVENT":"f"}`, `{"event":"e","users":["bob"]}`},
		{`{"EVENT":"f","event":"e"}`, `{"event":"e"}`},
		{`{"event":"e","users":["carol"],"Broadcast":true}`, `{"event":"e","users":["carol"]}`},
		{`{"event":"e","meta":{"a":1},"args":{"Event":"x"}}`, `{"args":{"Event":"x"},"event":"e"}`}, // args inside are the app's
		{`{"eveNt":"f"}`, `{}`},
		{`[1,2]`, `[1,2]`}, // not an object: left for the decoder to refuse
		{`null`, `null`},
		{`{"event":`, `{"event":`},
	} {
		if got := string(onlyKnownKeys([]byte(tc.in), names)); got != tc.want {
			t.Errorf("onlyKnownKeys(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	m, err := decode([]byte(`{"event":"e","users":["bob"],"Event":"f","Users":["eve"],"Broadcast":true,"TRANSIENT":true}`))
	if err != nil || m.Event != "e" || len(m.Users) != 1 || m.Users[0] != "bob" || m.Broadcast || m.Transient {
		t.Errorf("decode with other-case keys: %+v, %v; want event e to bob only", m, err)
	}
}
