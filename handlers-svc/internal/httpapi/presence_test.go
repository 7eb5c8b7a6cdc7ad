package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
	"github.com/switchboard/switchboard/handlers-svc/presence"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func get(t *testing.T, u, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(b))
}

// TestPresenceAPI: GET /v1/presence counts each named user's unexpired
// leases, with the dispatch API's key and error shapes, at most
// MaxPresenceUsers users; without WithPresence it is not served.
func TestPresenceAPI(t *testing.T) {
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	exp := float64(time.Now().Add(time.Minute).UnixMilli())
	rdb.ZAdd(ctx, proto.UserPresenceKey("a"), redis.Z{Score: exp, Member: "c1"}, redis.Z{Score: exp, Member: "c2"})
	rdb.ZAdd(ctx, proto.UserPresenceKey("b"), redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: "gone"})

	mux := http.NewServeMux()
	httpapi.New(dispatch.New(rdb, dispatch.Options{Window: time.Minute}), key, zap.NewNop()).
		WithPresence(presence.New(rdb)).Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	base := hs.URL + httpapi.PresencePath

	status, _, body := get(t, base+"?user=a&user=b&user=c", "Bearer "+key)
	if status != http.StatusOK || body != `{"users":{"a":2,"b":0,"c":0}}` {
		t.Fatalf("presence: %d %s", status, body)
	}

	hundred := url.Values{}
	for i := range httpapi.MaxPresenceUsers {
		hundred.Add("user", "u"+strconv.Itoa(i))
	}
	if status, _, body := get(t, base+"?"+hundred.Encode(), "Bearer "+key); status != http.StatusOK {
		t.Errorf("%d users: %d %s", httpapi.MaxPresenceUsers, status, body)
	}
	hundred.Add("user", "one-too-many")
	for _, tc := range []struct {
		query, auth string
		status      int
		code        proto.Code
		message     string // a part of it
	}{
		{"?user=a", "", http.StatusUnauthorized, proto.CodeUnauthorized, "Authorization"},
		{"?user=a", "Bearer wrong", http.StatusUnauthorized, proto.CodeUnauthorized, "Authorization"},
		{"", "Bearer " + key, http.StatusBadRequest, proto.CodeBadRequest, "at least one user"},
		{"?user=", "Bearer " + key, http.StatusBadRequest, proto.CodeBadRequest, "user[0] must be a user id"},
		// As the dispatch API: no socket is ever of a user id a token may
		// not carry, so asking for one is the caller's mistake.
		{"?user=a&user=" + strings.Repeat("x", proto.MaxUserLen+1), "Bearer " + key, http.StatusBadRequest, proto.CodeBadRequest, "user[1] must be a user id of 1 to 256 bytes"},
		{"?user=a%00b", "Bearer " + key, http.StatusBadRequest, proto.CodeBadRequest, "user[0] must be a user id"},
		{"?user=%E2%80%AEevil", "Bearer " + key, http.StatusBadRequest, proto.CodeBadRequest, "printable UTF-8"},
		{"?user=%FF", "Bearer " + key, http.StatusBadRequest, proto.CodeBadRequest, "printable UTF-8"},
		{"?" + hundred.Encode(), "Bearer " + key, http.StatusBadRequest, proto.CodeBadRequest, "at most 100 users"},
	} {
		status, _, body := get(t, base+tc.query, tc.auth)
		var e struct {
			Error proto.Error `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || status != tc.status || e.Error.Code != tc.code ||
			!strings.Contains(e.Error.Message, tc.message) {
			t.Errorf("%.40s %q: %d %s, want %d %s with %q", tc.query, tc.auth, status, body, tc.status, tc.code, tc.message)
		}
	}
	status, body = post(t, base+"?user=a", "Bearer "+key, "")
	if status != http.StatusMethodNotAllowed || !strings.Contains(body, "use GET") {
		t.Errorf("POST: %d %s, want 405 use GET", status, body)
	}

	srv.Stop()
	if status, _, body := get(t, base+"?user=a", "Bearer "+key); status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"unavailable"`) {
		t.Errorf("Redis down: %d %s, want 503 unavailable", status, body)
	}

	// Not served without WithPresence.
	url, _, _ := server(t)
	if status, _, _ := get(t, strings.TrimSuffix(url, httpapi.Path)+httpapi.PresencePath+"?user=a", "Bearer "+key); status != http.StatusNotFound {
		t.Errorf("without WithPresence: %d, want 404", status)
	}
}
