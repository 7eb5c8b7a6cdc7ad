package service

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/switchboard/switchboard/internal/backoff"
	"github.com/switchboard/switchboard/internal/logevery"
	"github.com/switchboard/switchboard/internal/natsconn"
	"github.com/switchboard/switchboard/internal/redact"
	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/proto"
)

// Start-up retry of Redis: the first wait, doubled after each failure up to
// the last.
const (
	redisRetryMin  = 250 * time.Millisecond
	redisRetryMax  = 2 * time.Second
	redisPingLimit = 2 * time.Second
)

// waitLogEvery is how often, at most, failed attempts to reach NATS or
// Redis are logged after the first: NATS is retried every 250 ms, and a
// line per attempt would be ~14,000 lines an hour of a NATS left down.
const waitLogEvery = 30 * time.Second

// connectNATS returns a connection to url that is still connecting when the
// server is not up yet: it retries forever, at start-up and after any
// disconnect, an authorization violation included (nats.go would otherwise
// close the connection for good after two, and handlers-svc would never
// serve again once the credentials are put right, say after a password
// rotated in the wrong order). Until the first connection failed attempts
// are logged with their error through logevery ("waiting for NATS"); after
// it, each state change (disconnected, reconnected) is logged once. The
// server's refusals of the credentials, which nats.go reports as an async
// error on every attempt, go through logevery too.
//
// User and password, a token, or TLS come in url (nats://u:p@h, tls://h);
// a credentials file (JWT and NKey) in creds, when not empty. The server's
// URL is logged through redact.URL: nats.go's ConnectedUrlRedacted masks a
// password only, and a token (nats://TOKEN@host) is a user name to it.
//
// A stalled link (nothing passes, nothing is closed) is noticed within 2
// to 3 s and the connection made anew (natsconn.StallOptions). link
// follows the connection's state through its handlers, for what must not
// wait for nc's lock: /readyz and the metrics.
func connectNATS(url, creds string, link *natsconn.State, log *zap.Logger) (*nats.Conn, error) {
	var connected atomic.Bool
	waiting := logevery.New(log, "waiting for NATS", waitLogEvery)
	refused := logevery.New(log, "nats refuses the credentials, retrying", waitLogEvery)
	server := func(nc *nats.Conn) zap.Field { return zap.String("server", redact.URL(nc.ConnectedUrl())) }
	opts := append(natsconn.Options(),
		nats.Name("handlers-svc"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		// Retry quickly (nats.go adds jitter): service resumes well within
		// the 5 s promise after NATS is back, not after the default 2 s wait.
		nats.ReconnectWait(250*time.Millisecond),
		nats.IgnoreAuthErrorAbort(),
		// Each state handler keeps link first, in the order nats.go
		// queued them; nats.go calls the ConnectHandler when Connect
		// connects at once too, possibly after a disconnect that followed
		// (natsconn.State.Up).
		nats.ConnectHandler(func(nc *nats.Conn) {
			link.Up(nc)
			if !connected.Swap(true) {
				log.Info("connected", server(nc))
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if !connected.Load() {
				waiting.Failed(err)
			}
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			link.Down()
			if connected.Load() && !nc.IsClosed() {
				log.Warn("disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			link.Up(nc)
			refused.Reset()
			log.Info("reconnected", server(nc))
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			link.Down()
			log.Info("connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			// nats.go reports each refusal of the credentials here,
			// every attempt (250 ms).
			if sub == nil && authError(err) {
				refused.Failed(err)
				return
			}
			fields := []zap.Field{zap.Error(err)}
			if subject, ok := link.Refused(err); ok {
				// Not ready until a connect subscribes anew (/readyz
				// names the subject). With the requests' subscription
				// refused the instance serves nothing, so a connection is
				// made anew in a few seconds, in case a reload of NATS
				// mended the permission; with only a hook's (or one over
				// the limit, which a new connection may lose the requests'
				// to), a new connection would cost the requests in flight.
				if subject == proto.SubjectAll {
					link.RetryRefused(nc)
				}
				fields = append(fields, zap.String("subject", subject))
			} else if sub != nil {
				fields = append(fields, zap.String("subject", sub.Subject))
			}
			log.Error("async error", fields...)
		}),
	)
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	if nc.IsConnected() && !connected.Swap(true) {
		log.Info("connected", server(nc))
	}
	return nc, nil
}

// authError reports whether err is the server refusing the connection's
// credentials.
func authError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)
}

// waitNATS waits until nc is connected or ctx is done.
func waitNATS(ctx context.Context, nc *nats.Conn, log *zap.Logger) error {
	if nc.IsConnected() {
		return nil
	}
	// A status listener wakes the wait; IsConnected is the truth.
	changes := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(changes)
	for !nc.IsConnected() {
		select {
		case <-changes:
		case <-ctx.Done():
			return ctx.Err()
		}
		if nc.IsClosed() {
			return fmt.Errorf("nats connection closed")
		}
	}
	return nil
}

// waitRedis pings rdb until it answers or ctx is done, logging failures
// through logevery. A Redis that refuses what REDIS_URL asks
// (redisconn.Misconfigured), reached once it is up, ends the wait with an
// error naming REDIS_URL: no retry would mend it.
func waitRedis(ctx context.Context, rdb redis.UniversalClient, log *zap.Logger) error {
	bo := backoff.Backoff{Min: redisRetryMin, Max: redisRetryMax}
	waiting := logevery.New(log, "waiting for Redis", waitLogEvery)
	for {
		pingCtx, cancel := context.WithTimeout(ctx, redisPingLimit)
		err := rdb.Ping(pingCtx).Err()
		cancel()
		if err == nil {
			log.Info("connected", zap.Strings("addrs", redisconn.Addrs(rdb)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if redisconn.Misconfigured(err) {
			return fmt.Errorf("REDIS_URL: %w", redisconn.URLError(rdb, err))
		}
		waiting.Failed(err, zap.Duration("retry_in", bo.Next()))
		if !bo.Wait(ctx) {
			return ctx.Err()
		}
	}
}
