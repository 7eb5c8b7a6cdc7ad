// Package serverurl holds the rules both services apply to the NATS and
// Redis URLs they are configured with, so that a URL one of them accepts
// the other accepts too. Errors never show a credential: they name a URL
// only through redact.URL.
package serverurl

import (
	"fmt"
	"net/url"
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
	return nil
}

// Redis checks s as go-redis reads it (redis://, rediss:// or unix://),
// the way both services then connect with it.
func Redis(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be empty: want a URL such as %s", RedisExample)
	}
	if _, err := url.Parse(s); err != nil {
		// go-redis would return this error, which quotes the URL whole.
		return fmt.Errorf("not a URL: want one such as %s", RedisExample)
	}
	if _, err := redis.ParseURL(s); err != nil {
		// Once the URL parses, go-redis's errors name the scheme, path or
		// option it rejects, never the user info.
		return fmt.Errorf("%q: %s: want a URL such as %s",
			redact.URL(s), strings.TrimPrefix(err.Error(), "redis: "), RedisExample)
	}
	return nil
}
