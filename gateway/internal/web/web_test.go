package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func serve(t *testing.T, dev bool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	Register(mux, dev)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestClientJS serves the very files in the repository, the client as
// JavaScript that names its types and its declarations as TypeScript, with
// a cache policy and an ETag that revalidates to 304.
func TestClientJS(t *testing.T) {
	for _, tc := range []struct{ path, contentType, types string }{
		{"/client.js", "text/javascript; charset=utf-8", "/client.d.ts"},
		{"/client.d.ts", "application/typescript; charset=utf-8", ""},
	} {
		t.Run(tc.path, func(t *testing.T) { testClientFile(t, tc.path, tc.contentType, tc.types) })
	}
}

func testClientFile(t *testing.T, path, contentType, types string) {
	want, err := os.ReadFile("assets" + path)
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []bool{false, true} {
		srv := serve(t, dev)
		resp, body := get(t, srv.URL+path, nil)
		if resp.StatusCode != http.StatusOK || body != string(want) {
			t.Fatalf("dev=%v: GET %s = %d, %d bytes; want 200 and the %d bytes of assets%s", dev, path, resp.StatusCode, len(body), len(want), path)
		}
		if ct := resp.Header.Get("Content-Type"); ct != contentType {
			t.Errorf("Content-Type %q, want %q", ct, contentType)
		}
		if got := resp.Header.Get("X-TypeScript-Types"); got != types {
			t.Errorf("X-TypeScript-Types %q, want %q", got, types)
		}
		// Module scripts load in CORS mode: a page elsewhere needs this to import it.
		if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao != "*" {
			t.Errorf("Access-Control-Allow-Origin %q, want *", acao)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
			t.Errorf("Cache-Control %q has no max-age", cc)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		resp, body = get(t, srv.URL+path, http.Header{"If-None-Match": {etag}})
		if resp.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("revalidation with the ETag: %d %q, want 304 and no body", resp.StatusCode, body)
		}
	}
}

// TestDemoOnlyInDevMode: the page and its files exist in dev mode only, and
// nothing else is answered by the web routes.
func TestDemoOnlyInDevMode(t *testing.T) {
	pages := map[string]string{
		"/":              "text/html; charset=utf-8",
		"/demo/demo.css": "text/css; charset=utf-8",
		"/demo/demo.js":  "text/javascript; charset=utf-8",
	}
	dev, prod := serve(t, true), serve(t, false)
	for path, ct := range pages {
		resp, body := get(t, dev.URL+path, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ct || body == "" {
			t.Errorf("dev GET %s: %d %q, %d bytes; want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), ct)
		}
		if resp, _ := get(t, prod.URL+path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("non-dev GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/index.html", "/demo/", "/demo/../client.js.map", "/assets/client.js", "/client.ts", "/demo.js"} {
		if resp, _ := get(t, dev.URL+path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("dev GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// TestAllowProbe lets any origin read the answer to a plain GET, a refused
// origin included (else a client on it would never learn it is refused),
// never adds CORS to an upgrade, and always calls the wrapped handler.
func TestAllowProbe(t *testing.T) {
	h := AllowProbe(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.WriteHeader(http.StatusForbidden)
	}))
	cases := []struct {
		name, origin, upgrade, want string
	}{
		{"an origin", "http://app.test", "", "*"},
		{"a refused origin", "http://evil.test", "", "*"},
		{"no origin", "", "", "*"},
		{"upgrade", "http://app.test", "websocket", ""},
		{"upgrade other case", "http://app.test", " WebSocket ", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/socket?token=x", nil)
			if c.origin != "" {
				r.Header.Set("Origin", c.origin)
			}
			if c.upgrade != "" {
				r.Header.Set("Upgrade", c.upgrade)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusForbidden {
				t.Fatalf("status %d: the wrapped handler did not answer", rec.Code)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != c.want {
				t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, c.want)
			}
		})
	}
}
