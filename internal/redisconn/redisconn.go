// Package redisconn builds the go-redis client a REDIS_URL names
// (docs/protocol.md section 1): one server (redis.ParseURL), or a Redis
// Cluster when the URL has addr parameters, in go-redis's cluster URL form
// redis://host1:port1?addr=host2:port2&addr=host3:port3
// (redis.ParseClusterURL). Both services build theirs here, so that a URL
// one of them takes the other takes the same way.
package redisconn

import (
	"context"
	"net"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/rawconn"
)

// IsCluster reports whether s names a Redis Cluster: a URL with at least
// one addr parameter.
func IsCluster(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Query().Has("addr")
}

// Tuning is what the services set on every client beside the URL's own
// options.
type Tuning struct {
	// NoRetries turns go-redis's retries off (MaxRetries -1): a publish
	// repeated after a reply lost in transit would be delivered twice.
	NoRetries bool
	// ContextTimeoutEnabled has commands end by their context's deadline.
	ContextTimeoutEnabled bool
	// OnConnect runs on every new connection before its first command
	// (streams.OnConnect).
	OnConnect func(ctx context.Context, cn *redis.Conn) error
}

// New returns the client of s: a *redis.ClusterClient when s names a
// cluster (IsCluster), a *redis.Client otherwise. Its errors are
// go-redis's, which may quote s: check s with serverurl.Redis first.
func New(s string, t Tuning) (redis.UniversalClient, error) {
	if IsCluster(s) {
		o, err := redis.ParseClusterURL(s)
		if err != nil {
			return nil, err
		}
		if t.NoRetries {
			o.MaxRetries = -1
		}
		o.ContextTimeoutEnabled = t.ContextTimeoutEnabled
		o.OnConnect = t.OnConnect
		if o.TLSConfig == nil {
			o.Dialer = dialer(o.DialTimeout)
		}
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(s)
	if err != nil {
		return nil, err
	}
	if t.NoRetries {
		o.MaxRetries = -1
	}
	o.ContextTimeoutEnabled = t.ContextTimeoutEnabled
	o.OnConnect = t.OnConnect
	if o.TLSConfig == nil {
		o.Dialer = dialer(o.DialTimeout)
	}
	return redis.NewClient(o), nil
}

// dialer is go-redis's own dialer for a connection without TLS (its
// timeout, its keep-alive policy), whose connections are read and written
// by raw system calls: package rawconn says why. A rediss:// URL keeps
// go-redis's dialer, which puts TLS on the connection it dials.
func dialer(timeout time.Duration) func(context.Context, string, string) (net.Conn, error) {
	switch {
	case timeout == 0:
		timeout = 5 * time.Second // go-redis's default DialTimeout
	case timeout < 0:
		// go-redis's "no timeout" (dial_timeout=0 or -1 in a URL): a
		// negative net.Dialer timeout would fail every dial at once.
		timeout = 0
	}
	d := rawconn.Dialer{
		Timeout:   timeout,
		KeepAlive: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3},
	}
	return d.DialContext
}

// Addrs returns the servers rdb was given: its one address, or every
// address of a cluster's URL, for logs.
func Addrs(rdb redis.UniversalClient) []string {
	switch c := rdb.(type) {
	case *redis.Client:
		return []string{c.Options().Addr}
	case *redis.ClusterClient:
		return c.Options().Addrs
	}
	return nil
}
