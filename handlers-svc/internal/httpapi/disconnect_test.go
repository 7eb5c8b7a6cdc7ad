package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
	"github.com/switchboard/switchboard/proto"
)

// TestDisconnectAPI: POST /v1/disconnect publishes one control message on
// the shared channel and answers how many workers got it; its refusals
// have the dispatch API's shapes.
func TestDisconnectAPI(t *testing.T) {
	url, srv, rdb := server(t)
	url = strings.TrimSuffix(url, httpapi.Path) + httpapi.DisconnectPath
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps := rdb.Subscribe(ctx, proto.Channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	status, body := post(t, url, "Bearer "+key, `{"users":["alice"],"conns":["c1"],"reason":"banned","reconnect":false}`)
	if status != http.StatusOK || body != `{"workers":1}` {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := proto.DecodeDisconnect([]byte(msg.Payload))
	if err != nil || !slices.Equal(m.Users, []string{"alice"}) || !slices.Equal(m.Conns, []string{"c1"}) || m.Reason != "banned" || m.Reconnect {
		t.Fatalf("published %s: %+v, %v", msg.Payload, m, err)
	}

	for _, tc := range []struct {
		auth, body string
		status     int
		code       proto.Code
		message    string // a part of it
	}{
		{"", `{"users":["alice"]}`, http.StatusUnauthorized, proto.CodeUnauthorized, "Authorization"},
		{"Bearer wrong", `{"users":["alice"]}`, http.StatusUnauthorized, proto.CodeUnauthorized, "Authorization"},
		{"Bearer " + key, ``, http.StatusBadRequest, proto.CodeBadRequest, "JSON object"},
		{"Bearer " + key, `{}`, http.StatusBadRequest, proto.CodeBadRequest, "no target"},
		// Keys match exactly: "Users" is an unknown field, not users.
		{"Bearer " + key, `{"Users":["alice"],"Reconnect":true}`, http.StatusBadRequest, proto.CodeBadRequest, "no target"},
		{"Bearer " + key, `{"users":[""]}`, http.StatusBadRequest, proto.CodeBadRequest, "users[0]"},
		{"Bearer " + key, `{"users":["a\u0007"]}`, http.StatusBadRequest, proto.CodeBadRequest, "users[0]"},
		{"Bearer " + key, `{"conns":["has space"]}`, http.StatusBadRequest, proto.CodeBadRequest, "conns[0]"},
		{"Bearer " + key, `{"users":"alice"}`, http.StatusBadRequest, proto.CodeBadRequest, "body.users"},
		{"Bearer " + key, `{"users":["a"],"reconnect":"yes"}`, http.StatusBadRequest, proto.CodeBadRequest, "body.reconnect"},
		{"Bearer " + key, `{"users":["a"],"reason":"a\nb"}`, http.StatusBadRequest, proto.CodeBadRequest, "reason"},
		{"Bearer " + key, `{"conns":["c1"],"revoke":true}`, http.StatusBadRequest, proto.CodeBadRequest, "revoke needs users"},
	} {
		status, body := post(t, url, tc.auth, tc.body)
		var e struct {
			Error proto.Error `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || status != tc.status || e.Error.Code != tc.code ||
			!strings.Contains(e.Error.Message, tc.message) {
			t.Errorf("%s %s: %d %s, want %d %s with %q", tc.auth, tc.body, status, body, tc.status, tc.code, tc.message)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("GET: %d Allow %q, want 405 POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// The refusals published nothing: the next message is the next
	// disconnect's.
	if status, body := post(t, url, "Bearer "+key, `{"conns":["c9"],"reconnect":true}`); status != http.StatusOK {
		t.Fatalf("second disconnect: %d %s", status, body)
	}
	if msg, err = ps.ReceiveMessage(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := proto.DecodeDisconnect([]byte(msg.Payload)); err != nil || !slices.Equal(m.Conns, []string{"c9"}) || !m.Reconnect {
		t.Fatalf("next published %s, want the second disconnect", msg.Payload)
	}

	srv.Stop()
	if status, body := post(t, url, "Bearer "+key, `{"users":["alice"]}`); status != http.StatusServiceUnavailable ||
		!strings.Contains(body, string(proto.CodeUnavailable)) {
		t.Errorf("Redis down: %d %s, want 503 unavailable", status, body)
	}
}
