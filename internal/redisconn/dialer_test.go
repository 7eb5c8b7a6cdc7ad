package redisconn_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/testkit"
)

// dialFunc is go-redis's Options.Dialer.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// wantRawDialer fails the test unless dial's connections to addr are
// rawconn's (on Linux, where rawconn wraps them).
func wantRawDialer(t *testing.T, dial dialFunc, network, addr string) {
	t.Helper()
	if dial == nil {
		t.Fatal("no Dialer set: go-redis's own would dial")
	}
	c, err := dial(context.Background(), network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := fmt.Sprintf("%T", c); runtime.GOOS == "linux" && got != "*rawconn.conn" {
		t.Fatalf("the client's dialer gave a %s, not rawconn's", got)
	}
}

// TestUnixSocket: a unix:// URL dials the server's Unix socket through
// rawconn, and the client answers over it.
func TestUnixSocket(t *testing.T) {
	srv := testkit.StartRedisUnix(t)
	rdb, err := redisconn.New(srv.UnixURL(), redisconn.Tuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	o := rdb.(*redis.Client).Options()
	if o.Network != "unix" {
		t.Fatalf("Network %q, want unix", o.Network)
	}
	wantRawDialer(t, o.Dialer, o.Network, o.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
}

// TestTLSKept: a rediss:// URL keeps go-redis's dialer, whose first bytes
// on a connection are a TLS handshake record; a cluster's sets none, so
// that each node's client gets go-redis's own, with the TLS config.
func TestTLSKept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	cl, err := redisconn.New("rediss://"+addr+"?addr="+addr, redisconn.Tuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if o := cl.(*redis.ClusterClient).Options(); o.Dialer != nil || o.TLSConfig == nil {
		t.Fatalf("cluster: Dialer set %t, TLS config set %t; want go-redis's dialer, with TLS", o.Dialer != nil, o.TLSConfig != nil)
	}

	one, err := redisconn.New("rediss://"+addr+"/0", redisconn.Tuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	dial := one.(*redis.Client).Options().Dialer
	dialed := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		c, err := dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	first := make([]byte, 1)
	_, err = io.ReadFull(peer, first)
	peer.Close() // the handshake fails
	<-dialed
	if err != nil || first[0] != 0x16 {
		t.Fatalf("the dialer's first byte %#x, %v; want 0x16, a TLS handshake", first[0], err)
	}
}
