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
	for p := range strings.SplitSeq(s, ",") {
		if err := natsServer(strings.TrimSpace(p)); err != nil {
			return err
		}
	}
	return nil
}

func natsServer(s string) error {
	// url.Parse's error quotes the URL whole, credentials included, so it
	// is not passed on.
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("a server is not a URL: want one such as %s", NATSExample)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("%q: the scheme must be nats, tls, ws or wss, as in %s", redact.URL(s), NATSExample)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host: want a URL such as %s", redact.URL(s), NATSExample)
	}
	if err := checkPort(u.Port()); err != nil {
		return fmt.Errorf("%q: %w, as in %s", redact.URL(s), err, NATSExample)
	}
	return nil
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
	u, err := url.Parse(s)
	if err != nil {
		// go-redis would return this error, which quotes the URL whole.
		return fmt.Errorf("not a URL: want one such as %s", RedisExample)
	}
	if u.Query().Has("addr") {
		return redisCluster(s, u)
	}
	if _, err := redis.ParseURL(s); err != nil {
		// Once the URL parses, go-redis's errors name the scheme, path or
		// option it rejects, never the user info.
		return fmt.Errorf("%q: %s: want a URL such as %s",
			redact.URL(s), strings.TrimPrefix(err.Error(), "redis: "), RedisExample)
	}
	if err := checkPort(u.Port()); err != nil {
		return fmt.Errorf("%q: %w: want a URL such as %s", redact.URL(s), err, RedisExample)
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
	if _, err := redis.ParseClusterURL(s); err != nil {
		return fmt.Errorf("%q: %s: want a Redis Cluster URL such as %s",
			redact.URL(s), strings.TrimPrefix(err.Error(), "redis: "), RedisClusterExample)
	}
	ports := []string{u.Port()}
	for _, addr := range u.Query()["addr"] {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%q: addr %q is not host:port: want a Redis Cluster URL such as %s",
				redact.URL(s), addr, RedisClusterExample)
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
