package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/proto"
)

// TestDispatchAPITransient: "transient": true in the body publishes the
// dispatch, to users and as a broadcast, without positions and without
// recording it, and answers {"pos":{}}; "transient": false records. A
// transient that is not a boolean is refused, naming the field.
func TestDispatchAPITransient(t *testing.T) {
	url, _, rdb := server(t)
	ps := rdb.Subscribe(t.Context(), proto.Channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		`{"event":"typing","args":{"from":"alice"},"users":["bob","carol"],"transient":true}`,
		`{"event":"presence","broadcast":true,"transient":true}`,
	} {
		status, answer := post(t, url, "Bearer "+key, body)
		if status != http.StatusOK || answer != `{"pos":{}}` {
			t.Fatalf("%s: %d %s, want 200 {\"pos\":{}}", body, status, answer)
		}
		msg, err := ps.ReceiveMessage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		d, err := proto.DecodeDispatch([]byte(msg.Payload))
		if err != nil || len(d.Pos) != 0 || d.BPos != "" {
			t.Fatalf("published %s (%v), want it without positions", msg.Payload, err)
		}
	}
	for _, k := range []string{proto.UserStreamKey("bob"), proto.UserStreamKey("carol"), proto.BroadcastStreamKey} {
		if n := rdb.XLen(t.Context(), k).Val(); n != 0 {
			t.Errorf("XLEN %s = %d, want 0", k, n)
		}
	}

	// Recorded, the same body answers positions: the field is read.
	status, answer := post(t, url, "Bearer "+key, `{"event":"typing","users":["bob"],"transient":false}`)
	var got struct {
		Pos map[string]string `json:"pos"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil || got.Pos["bob"] == "" {
		t.Fatalf("transient false: %d %s, want bob's position", status, answer)
	}

	status, answer = post(t, url, "Bearer "+key, `{"event":"typing","users":["bob"],"transient":"yes"}`)
	if status != http.StatusBadRequest || !strings.Contains(answer, "body.transient") {
		t.Fatalf("transient a string: %d %s, want 400 naming body.transient", status, answer)
	}
}
