package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/internal/httpapi"
	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const key = "test-key-0123456789"

// server serves the API on a real Redis; it returns its URL and the Redis.
func server(t *testing.T) (string, *testkit.Redis, *redis.Client) {
	t.Helper()
	url, srv, rdb, _ := serverWith(t, "")
	return url, srv, rdb
}

// serverWith is server with previous as the API's previous key ("" =
// none); it also returns the API.
func serverWith(t *testing.T, previous string) (string, *testkit.Redis, *redis.Client, *httpapi.API) {
	t.Helper()
	srv := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	mux := http.NewServeMux()
	api := httpapi.New(dispatch.New(rdb, dispatch.Options{Window: time.Minute}), key, zap.NewNop()).AcceptPrevious(previous)
	api.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL + httpapi.Path, srv, rdb, api
}

func post(t *testing.T, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
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
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestDispatchAPI(t *testing.T) {
	url, _, rdb := server(t)
	ps := rdb.Subscribe(t.Context(), proto.Channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	status, body := post(t, url, "Bearer "+key, `{"event":"post_updated","args":{"post":"p1"},"users":["bob","carol"]}`)
	if status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	var got struct {
		Pos map[string]string `json:"pos"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Pos) != 2 || got.Pos["bob"] == "" {
		t.Fatalf("body %s, want a position per user", body)
	}
	msg, err := ps.ReceiveMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d, err := proto.DecodeDispatch([]byte(msg.Payload))
	if err != nil || d.Event != "post_updated" || string(d.Args) != `{"post":"p1"}` || d.Pos["bob"] != got.Pos["bob"] {
		t.Fatalf("published %+v (%v), want the positions answered", d, err)
	}

	status, body = post(t, url, "Bearer "+key, `{"event":"news","broadcast":true}`)
	if status != http.StatusOK || !strings.Contains(body, `"bpos":"`) || !strings.Contains(body, `"pos":{}`) {
		t.Fatalf("broadcast: %d %s", status, body)
	}
}

// TestDispatchAPIBearerScheme: the scheme of an Authorization header is
// case-insensitive (RFC 9110 section 11.1), as HTTP clients and proxies
// may send it; the key itself is not.
func TestDispatchAPIBearerScheme(t *testing.T) {
	url, _, _ := server(t)
	for _, auth := range []string{"Bearer " + key, "bearer " + key, "BEARER " + key, "Bearer   " + key} {
		if status, body := post(t, url, auth, `{"event":"e","users":["bob"]}`); status != http.StatusOK {
			t.Errorf("Authorization: %q: %d %s, want 200", auth, status, body)
		}
	}
	for _, auth := range []string{"Bearer " + strings.ToUpper(key), "Bearer" + key, "Bearer", "Bearer "} {
		if status, body := post(t, url, auth, `{"event":"e","users":["bob"]}`); status != http.StatusUnauthorized {
			t.Errorf("Authorization: %q: %d %s, want 401", auth, status, body)
		}
	}
}

func TestDispatchAPIRefusals(t *testing.T) {
	url, _, _ := server(t)
	ok := `{"event":"e","users":["bob"]}`
	tests := []struct {
		name, auth, body string
		status           int
		code, message    string
	}{
		{"no key", "", ok, 401, "unauthorized", ""},
		{"wrong key", "Bearer " + key + "x", ok, 401, "unauthorized", ""},
		{"not bearer", "Basic " + key, ok, 401, "unauthorized", ""},
		{"empty body", "Bearer " + key, ``, 400, "bad_request", "body must be a JSON object"},
		{"not JSON", "Bearer " + key, `{"event":`, 400, "bad_request", "body is not valid JSON"},
		{"not an object", "Bearer " + key, `[1]`, 400, "bad_request", "body must be an object"},
		{"users wrong type", "Bearer " + key, `{"event":"e","users":"bob"}`, 400, "bad_request", "body.users must be an array of strings"},
		{"no target", "Bearer " + key, `{"event":"e"}`, 400, "bad_request", "no target: give users, conns, rooms or broadcast"},
		{"reserved event", "Bearer " + key, `{"event":"connected","users":["bob"]}`, 400, "bad_request", "event connected is the gateway's own"},
		{"control character in a user id", "Bearer " + key, `{"event":"e","users":["bob\n"]}`, 400, "bad_request", "users[0] must be a user id of 1 to 256 bytes of printable UTF-8"},
		{"bad room", "Bearer " + key, `{"event":"e","rooms":["a b"]}`, 400, "bad_request", "rooms[0] must match " + proto.RoomPattern},
		{"too large", "Bearer " + key, `{"event":"e","users":["bob"],"args":"` + strings.Repeat("x", httpapi.MaxBody) + `"}`, 400, "bad_request", "body is larger than 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, url, tt.auth, tt.body)
			var e proto.Reply
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil {
				t.Fatalf("body %s is not an error body", body)
			}
			if status != tt.status || string(e.Error.Code) != tt.code || (tt.message != "" && e.Error.Message != tt.message) {
				t.Fatalf("got %d %s, want %d %s %q", status, body, tt.status, tt.code, tt.message)
			}
		})
	}
	// Another method: 405 naming POST, with the error body as every
	// other answer of the API has, for callers that parse them all.
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e proto.Reply
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost ||
		json.Unmarshal(b, &e) != nil || e.Error == nil || e.Error.Code != proto.CodeBadRequest {
		t.Fatalf("GET: %d Allow %q %s, want 405, Allow POST and a bad_request error body", resp.StatusCode, resp.Header.Get("Allow"), b)
	}
}

func TestDispatchAPIRedisDown(t *testing.T) {
	url, srv, _ := server(t)
	srv.Stop()
	status, body := post(t, url, "Bearer "+key, `{"event":"e","users":["bob"]}`)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"unavailable"`) {
		t.Fatalf("got %d %s, want 503 unavailable", status, body)
	}
}

// TestDispatchAPIPreviousKey: while the key is rotated, the previous key
// is taken beside the current one, on both endpoints, and only its uses
// are counted; any other key is refused. Without AcceptPrevious the
// previous key is refused like any other.
func TestDispatchAPIPreviousKey(t *testing.T) {
	const previous = "previous-key-0123456789"
	url, _, _, api := serverWith(t, previous)
	disconnect := strings.TrimSuffix(url, httpapi.Path) + httpapi.DisconnectPath
	ok := `{"event":"e","users":["bob"]}`
	for _, tt := range []struct {
		name, url, key, body string
		status               int
		uses                 uint64 // PreviousKeyUses after it
	}{
		{"current key", url, key, ok, http.StatusOK, 0},
		{"previous key", url, previous, ok, http.StatusOK, 1},
		{"previous key, disconnect", disconnect, previous, `{"users":["bob"]}`, http.StatusOK, 2},
		{"another key", url, previous + "x", ok, http.StatusUnauthorized, 2},
		{"a prefix of the previous key", url, previous[:len(previous)-1], ok, http.StatusUnauthorized, 2},
		{"current key again", url, key, ok, http.StatusOK, 2},
	} {
		status, body := post(t, tt.url, "Bearer "+tt.key, tt.body)
		if status != tt.status || api.PreviousKeyUses() != tt.uses {
			t.Fatalf("%s: %d %s, %d uses of the previous key; want %d, %d", tt.name, status, body, api.PreviousKeyUses(), tt.status, tt.uses)
		}
	}

	url, _, _, api = serverWith(t, "")
	if status, body := post(t, url, "Bearer "+previous, ok); status != http.StatusUnauthorized || api.PreviousKeyUses() != 0 {
		t.Fatalf("no previous key: %d %s, want 401", status, body)
	}
	if status, _ := post(t, url, "Bearer "+key, ok); status != http.StatusOK {
		t.Fatalf("current key: %d, want 200", status)
	}
}
