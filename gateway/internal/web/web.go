// Package web serves the gateway's browser assets, embedded in the binary:
// the JavaScript client at /client.js on every worker, and in dev mode the
// demo chat page at /. The assets are plain files under assets/, with no
// build step; client.d.ts beside client.js types the client for TypeScript.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

//go:embed assets/client.js assets/index.html assets/demo.css assets/demo.js
var assets embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
	cache       string
}

func load(name, contentType, cache string) asset {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		panic("web: embedded asset missing: " + name) // a build error, not a runtime one
	}
	sum := sha256.Sum256(b)
	return asset{body: b, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, cache: cache}
}

// ServeHTTP answers GET and HEAD with the asset; If-None-Match gets 304.
func (a asset) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", a.cache)
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(rw, r, "", time.Time{}, bytes.NewReader(a.body))
}

// Cache policies: the client may be cached briefly and then revalidated by
// its ETag, so a new gateway version reaches browsers within minutes; the
// demo page is always revalidated.
const (
	clientCache = "public, max-age=300, must-revalidate"
	demoCache   = "no-cache"
)

// Register adds the asset routes to mux: GET /client.js always, and the demo
// page (GET / and its /demo/ files) only when dev is true.
func Register(mux *http.ServeMux, dev bool) {
	mux.Handle("GET /client.js", load("client.js", "text/javascript; charset=utf-8", clientCache))
	if !dev {
		return
	}
	mux.Handle("GET /{$}", load("index.html", "text/html; charset=utf-8", demoCache))
	mux.Handle("GET /demo/demo.css", load("demo.css", "text/css; charset=utf-8", demoCache))
	mux.Handle("GET /demo/demo.js", load("demo.js", "text/javascript; charset=utf-8", demoCache))
}

// AllowProbe wraps the /socket handler so that a plain GET of it (not a
// WebSocket upgrade) from an allowed browser origin may read the answer:
// the JavaScript client repeats a refused upgrade that way to learn whether
// its token was refused (401), which a browser WebSocket cannot see. The
// answer itself is the gateway's usual one; only CORS headers are added.
func AllowProbe(allowed func(*http.Request) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && !isUpgrade(r) && allowed(r) {
			rw.Header().Set("Access-Control-Allow-Origin", origin)
			rw.Header().Add("Vary", "Origin")
		}
		next.ServeHTTP(rw, r)
	})
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		if strings.EqualFold(strings.TrimSpace(v), "websocket") {
			return true
		}
	}
	return false
}
