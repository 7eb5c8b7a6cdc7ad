// Package serverurl holds the rules both services apply to the NATS and
// Redis URLs they are configured with, so that a URL one of them accepts
// the other accepts too. Errors never show a credential: they name a URL
// only through redact.URL.
package serverurl

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redact"
)

// NATSExample and RedisExample are the URLs the errors suggest.
const (
	NATSExample  = "nats://127.0.0.1:4222"
	RedisExample = "redis://127.0.0.1:6379/0"
)

// NATS checks s, one NATS server URL or a comma-separated list of them
// (spaces around each allowed): each must parse, have a host and use a
// scheme nats.go dials: nats, tls, ws or wss.
func NATS(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be empty: want a URL such as %s, or a comma-separated list of URLs", NATSExample)
	}
	ws, other := false, false
	for p := range strings.SplitSeq(s, ",") {
		scheme, err := natsServer(strings.TrimSpace(p))
		if err != nil {
			return err
		}
		if scheme == "ws" || scheme == "wss" {
			ws = true
		} else {
			other = true
		}
	}
	if ws && other {
		// nats.go refuses such a list at every connect.
		return fmt.Errorf("%q mixes ws:// or wss:// servers with nats:// or tls:// ones, which nats.go cannot dial: list one kind", redact.URL(s))
	}
	return nil
}

// misplacedCredential refuses s when an "@" follows the end of its
// authority: a credential that was not percent-encoded and holds a "/"
// or "?" there. Parsed as it is, the credential's start is the host and
// its rest the path or the query, so the service would dial the wrong
// host (nats.go ignores a nats:// URL's path) or quote the credential in
// an error. The error shows nothing of s.
func misplacedCredential(s, example string) error {
	if redact.MisplacedAt(s) < 0 {
		return nil
	}
	return fmt.Errorf("a URL has an @ after its host's end (a user name, password or token with a / or ? in it?): "+
		"percent-encode them in the user info (/ as %%2F, ? as %%3F, @ as %%40), as in %s", example)
}

// natsServer checks one server's URL, s, and returns its scheme (in lower
// case, as url.Parse leaves it).
func natsServer(s string) (scheme string, err error) {
	if err := misplacedCredential(s, "nats://user:p%2Fss@127.0.0.1:4222"); err != nil {
		return "", err
	}
	// url.Parse's error quotes the URL whole, credentials included, so it
	// is not passed on.
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("a server is not a URL: want one such as %s", NATSExample)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return "", fmt.Errorf("%q: the scheme must be nats, tls, ws or wss, as in %s", redact.URL(s), NATSExample)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host: want a URL such as %s", redact.URL(s), NATSExample)
	}
	if err := checkPort(u.Port()); err != nil {
		return "", fmt.Errorf("%q: %w, as in %s", redact.URL(s), err, NATSExample)
	}
	return u.Scheme, nil
}

// checkPort refuses a port outside 1 to 65535: such a URL parses, and
// the dial fails with "invalid port" on every retry, so a service would
// wait for its server for ever rather than refuse to start. An empty port
// (the scheme's default) is fine; url.Parse has refused one that is not
// a number.
func checkPort(port string) error {
	if port == "" {
		return nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s is not one from 1 to 65535", port)
	}
	return nil
}

// RedisClusterExample is the cluster URL the errors suggest.
const RedisClusterExample = "redis://10.0.0.1:6379?addr=10.0.0.2:6379&addr=10.0.0.3:6379"

// Redis checks s as go-redis reads it (redis://, rediss:// or unix://),
// the way both services then connect with it: one server, or a Redis
// Cluster in go-redis's cluster URL form, a URL with addr parameters
// (RedisClusterExample), which takes redis:// or rediss:// and database 0
// only.
func Redis(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be empty: want a URL such as %s", RedisExample)
	}
	if err := misplacedCredential(s, "redis://default:p%2Fss@127.0.0.1:6379/0"); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil {
		// go-redis would return this error, which quotes the URL whole.
		return fmt.Errorf("not a URL: want one such as %s", RedisExample)
	}
	if u.Query().Has("addr") {
		return redisCluster(s, u)
	}
	opt, err := redis.ParseURL(s)
	if err != nil {
		// Once the URL parses, go-redis's errors name the scheme, path or
		// option it rejects, never the user info.
		return fmt.Errorf("%q: %s: want a URL such as %s",
			redact.URL(s), strings.TrimPrefix(err.Error(), "redis: "), RedisExample)
	}
	if err := checkDB(u, opt.DB); err != nil {
		return fmt.Errorf("%q: %w: want a URL such as %s", redact.URL(s), err, RedisExample)
	}
	if err := checkPort(u.Port()); err != nil {
		return fmt.Errorf("%q: %w: want a URL such as %s", redact.URL(s), err, RedisExample)
	}
	return nil
}

// checkDB refuses a database go-redis would not select as named: a
// negative one (go-redis selects only one above 0, so it runs on 0), or a
// db parameter beside a database in the path that it overrides.
func checkDB(u *url.URL, db int) error {
	if db < 0 {
		return fmt.Errorf("database %d is negative", db)
	}
	if u.Query().Has("db") && u.Scheme != "unix" { // a unix URL's path is the socket's
		if p := strings.Trim(u.Path, "/"); p != "" && p != strconv.Itoa(db) {
			return fmt.Errorf("the path names database %s and the db parameter %d: name it once", p, db)
		}
	}
	return nil
}

// redisCluster checks s, a URL with addr parameters, as a Redis Cluster's.
func redisCluster(s string, u *url.URL) error {
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("%q names a Redis Cluster (addr parameters): the scheme must be redis or rediss, as in %s",
			redact.URL(s), RedisClusterExample)
	}
	if u.Host == "" {
		return fmt.Errorf("%q names a Redis Cluster (addr parameters) but has no host: want a URL such as %s",
			redact.URL(s), RedisClusterExample)
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return fmt.Errorf("%q names a Redis Cluster (addr parameters), which has database 0 only, not %q: want a URL such as %s",
			redact.URL(s), p, RedisClusterExample)
	}
	for _, addr := range u.Query()["addr"] {
		if strings.Contains(addr, "@") {
			// Checked before go-redis reads it: its error quotes the addr.
			return fmt.Errorf("%q: an addr names a user or password: credentials go in the URL's user info, once for every node, as in %s",
				redact.URL(s), RedisClusterExample)
		}
	}
	if _, err := redis.ParseClusterURL(s); err != nil {
		return fmt.Errorf("%q: %s: want a Redis Cluster URL such as %s",
			redact.URL(s), strings.TrimPrefix(err.Error(), "redis: "), RedisClusterExample)
	}
	ports := []string{u.Port()}
	for _, addr := range u.Query()["addr"] {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%q: an addr is not host:port (credentials go in the URL's user info, once for every node): want a Redis Cluster URL such as %s",
				redact.URL(s), RedisClusterExample)
		}
		ports = append(ports, port)
	}
	for _, port := range ports {
		if err := checkPort(port); err != nil {
			return fmt.Errorf("%q: %w: want a Redis Cluster URL such as %s", redact.URL(s), err, RedisClusterExample)
		}
	}
	return nil
}
