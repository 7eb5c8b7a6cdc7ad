// Package web serves the gateway's browser assets, embedded in the binary:
// the JavaScript client at /client.js and its TypeScript declarations at
// /client.d.ts on every worker, and in dev mode the demo chat page at /.
// The assets are plain files under assets/, with no build step.
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

//go:embed assets/client.js assets/client.d.ts assets/index.html assets/demo.css assets/demo.js
var assets embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
	cache       string
	types       string // the URL of its TypeScript declarations, if any
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
// Any origin may load it: browsers fetch module scripts in CORS mode, so a
// page served elsewhere could not import /client.js without the header.
func (a asset) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", a.cache)
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if a.types != "" {
		// Deno, given the header, types the module without a comment
		// in the app.
		h.Set("X-TypeScript-Types", a.types)
	}
	http.ServeContent(rw, r, "", time.Time{}, bytes.NewReader(a.body))
}

// Cache policies: the client may be cached briefly and then revalidated by
// its ETag, so a new gateway version reaches browsers within minutes; the
// demo page is always revalidated.
const (
	clientCache = "public, max-age=300, must-revalidate"
	demoCache   = "no-cache"
)

// Register adds the asset routes to mux: GET /client.js and /client.d.ts
// always, and the demo page (GET / and its /demo/ files) only when dev is
// true.
func Register(mux *http.ServeMux, dev bool) {
	client := load("client.js", "text/javascript; charset=utf-8", clientCache)
	client.types = "/client.d.ts"
	mux.Handle("GET /client.js", client)
	mux.Handle("GET /client.d.ts", load("client.d.ts", "application/typescript; charset=utf-8", clientCache))
	if !dev {
		return
	}
	mux.Handle("GET /{$}", load("index.html", "text/html; charset=utf-8", demoCache))
	mux.Handle("GET /demo/demo.css", load("demo.css", "text/css; charset=utf-8", demoCache))
	mux.Handle("GET /demo/demo.js", load("demo.js", "text/javascript; charset=utf-8", demoCache))
}

// AllowProbe wraps the /socket handler so that a browser page of any origin
// may read the answer to a plain GET of it (not a WebSocket upgrade): the
// JavaScript client repeats a refused upgrade that way to learn whether its
// token (401) or its origin (403) was refused, which a browser WebSocket
// cannot see. Any origin, the refused ones above all, since a page whose
// origin is refused could not otherwise learn it and would retry forever.
// This reveals nothing a script outside a browser could not read: the
// gateway uses no cookies, so the answer depends only on the request's
// token. Only the CORS header is added; the answer is the gateway's usual one.
func AllowProbe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !IsUpgrade(r) {
			rw.Header().Set("Access-Control-Allow-Origin", "*")
		}
		next.ServeHTTP(rw, r)
	})
}

// IsUpgrade reports whether r asks for a WebSocket upgrade (an Upgrade:
// websocket header), valid or not; a request that does not is a plain GET,
// such as the JavaScript client's probe.
func IsUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		if strings.EqualFold(strings.TrimSpace(v), "websocket") {
			return true
		}
	}
	return false
}
