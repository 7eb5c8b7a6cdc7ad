package dispatch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrClientOptions is wrapped by CheckClient's error: the go-redis client
// given is set up in a way that makes dispatches unsafe.
var ErrClientOptions = errors.New("dispatch: redis client options")

// CheckClient returns why rdb, a client given to New, is set up in a way
// that makes dispatches unsafe, or nil; its error wraps ErrClientOptions
// and names every option to fix:
//
//   - retries on (MaxRetries not -1): a publish retried after a lost
//     reply is delivered twice;
//   - ContextTimeoutEnabled false: a dispatch's context deadline does not
//     bound its round trip, and a Redis that stalls holds every dispatch
//     until go-redis's own read timeout (5 s), past the caller's
//     deadline, which is then told of it late (docs/protocol.md section
//     7);
//   - no OnConnect hook: a stream written before a Redis restart or
//     failover that lost its last events goes on in the same epoch, and
//     devices that resume miss events (OnConnect).
//
// It checks *redis.Client (failover clients too) and *redis.ClusterClient,
// and passes any other client.
func CheckClient(rdb redis.UniversalClient) error {
	var retries bool
	var ctxTimeout bool
	var onConnect bool
	switch c := rdb.(type) {
	case *redis.Client:
		o := c.Options() // go-redis keeps MaxRetries -1 as 0
		retries, ctxTimeout, onConnect = o.MaxRetries > 0, o.ContextTimeoutEnabled, o.OnConnect != nil
	case *redis.ClusterClient:
		o := c.Options() // 0 and -1 are kept as -1
		retries, ctxTimeout, onConnect = o.MaxRetries > 0, o.ContextTimeoutEnabled, o.OnConnect != nil
	default:
		return nil
	}
	var fix []string
	if retries {
		fix = append(fix, "MaxRetries: -1 (a publish retried after a lost reply is delivered twice)")
	}
	if !ctxTimeout {
		fix = append(fix, "ContextTimeoutEnabled: true (else a dispatch's deadline does not bound its round trip to Redis)")
	}
	if !onConnect {
		fix = append(fix, "OnConnect: dispatch.OnConnect (else events lost in a Redis restart go unnoticed by resuming devices)")
	}
	if len(fix) == 0 {
		return nil
	}
	return fmt.Errorf("%w: set %s", ErrClientOptions, strings.Join(fix, "; "))
}

// NewChecked is New, but it returns an error instead of a Dispatcher when
// opts fail Options.Check or rdb fails CheckClient, for a service that
// takes them from its configuration and reports such mistakes its own
// way at start-up.
func NewChecked(rdb redis.UniversalClient, opts Options) (*Dispatcher, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	if err := CheckClient(rdb); err != nil {
		return nil, err
	}
	return New(rdb, opts), nil
}
