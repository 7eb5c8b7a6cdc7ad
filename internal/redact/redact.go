// Package redact hides the credentials in server URLs before they are
// logged or put into an error.
package redact

import (
	"net/url"
	"strings"
)

// Mask stands in for every credential URL removes.
const Mask = "xxxxx"

// Invalid stands in for a URL that does not parse: it is left out whole,
// since where its credentials end cannot be told.
const Invalid = "(invalid url)"

// URL returns s, a URL or a comma-separated list of them (NATS_URL may be
// one), with every credential replaced by Mask. Unlike url.URL.Redacted,
// which masks only a password, it hides the whole user info: NATS takes a
// bare token there (nats://TOKEN@host), and a user name may be a secret
// too. It also masks the values of query parameters named like a secret
// (password, token, secret, key, auth, credential) and any fragment. A part
// that does not parse, or is opaque (user:pass@host without a scheme parses
// as scheme "user"), becomes Invalid. Spaces around each part are dropped.
func URL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p != "" && !strings.Contains(p, "://") {
			// Not a server of a list but, likely, the rest of a
			// credential with a comma in it: where it started cannot be
			// told, so nothing of the list is shown.
			return Invalid
		}
		parts[i] = one(p)
	}
	return strings.Join(parts, ",")
}

func one(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		return Invalid
	}
	if at := MisplacedAt(s); at >= 0 {
		// A credential that was not percent-encoded and holds a "/" or
		// "?" ends the authority early, and url.Parse puts the rest of
		// it in the path or the query: everything from the authority's
		// start to the last "@" is taken for user info.
		return one(u.Scheme + "://" + Mask + "@" + s[at+1:])
	}
	if u.User != nil {
		u.User = url.User(Mask)
	}
	if u.RawQuery != "" {
		u.RawQuery = query(u.RawQuery)
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = Mask, ""
	}
	return u.String()
}

// query masks the values of secret-looking parameters of a raw query,
// keeping the order and spelling of everything else.
func query(raw string) string {
	pairs := strings.Split(raw, "&")
	for i, kv := range pairs {
		k, _, hasValue := strings.Cut(kv, "=")
		name, err := url.QueryUnescape(k)
		switch {
		case err != nil:
			pairs[i] = Mask
		case hasValue && secretName(name):
			pairs[i] = k + "=" + Mask
		case strings.Contains(kv, "@"):
			// A user info in a value (a cluster node's addr), or a
			// credential that ended the authority early.
			pairs[i] = Mask + kv[strings.LastIndex(kv, "@"):]
		}
	}
	return strings.Join(pairs, "&")
}

// secretWords are the parts of a query parameter's name that mark its
// value as a credential.
var secretWords = [...]string{"pass", "pwd", "token", "secret", "key", "auth", "cred", "sig"}

func secretName(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// MisplacedAt returns the index in s of its last "@" when an "@" follows
// the end of s's authority (the first "/", "?" or "#" after "scheme://"),
// or -1 when there is none. Such a URL is taken to carry user info that
// was not percent-encoded ("nats://AbC/s3cr3t@host",
// "nats://AbC?a=s3cr3t@host"): url.Parse would take the credential's head
// for the host and put its tail in the path, query or fragment. An "@"
// there is written %40; the one exception is a unix socket's path in a
// URL with no user info ("unix:///run/redis@main/redis.sock"), where a
// credential cannot be.
func MisplacedAt(s string) int {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return -1
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 || !strings.Contains(rest[end:], "@") {
		return -1
	}
	if strings.EqualFold(scheme, "unix") && end == 0 {
		// No authority: an "@" in the path is the socket's; one in
		// the query or fragment is misplaced all the same.
		after, _, _ := strings.Cut(rest, "?")
		after, _, _ = strings.Cut(after, "#")
		if !strings.Contains(rest[len(after):], "@") {
			return -1
		}
	}
	return strings.LastIndex(s, "@")
}
