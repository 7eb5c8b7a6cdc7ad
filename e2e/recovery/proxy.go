package recovery

import (
	"context"
	"fmt"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Proxy is a TCP fault proxy (toxiproxy, run in the test process) in front
// of a server: what connects to Addr reaches the upstream through it;
// toxics added to it stall those links, and Cut closes them.
type Proxy struct {
	Addr string
	p    *toxiproxy.Proxy
}

// StartProxy starts a proxy to upstream on a free loopback port and stops
// it when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "redis", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("start the fault proxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return &Proxy{Addr: p.Listen, p: p}
}

// Stall stops every byte in both directions on every link, new ones
// included, until Heal: to the clients, a server that hangs.
func (x *Proxy) Stall(t testing.TB) {
	t.Helper()
	for _, dir := range []string{"downstream", "upstream"} {
		x.add(t, fmt.Sprintf(`{"name":"stall_%s","type":"timeout","stream":%q,"attributes":{"timeout":0}}`, dir, dir))
	}
}

// Heal removes the stall; the stalled links are closed (what they held is
// lost), so their clients connect again.
func (x *Proxy) Heal(t testing.TB) {
	t.Helper()
	for _, dir := range []string{"downstream", "upstream"} {
		if err := x.p.Toxics.RemoveToxic(context.Background(), "stall_"+dir); err != nil {
			t.Fatalf("remove the stall: %v", err)
		}
	}
}

// Cut closes every link at once, as a network that drops a path does to
// the clients, and refuses new ones until Restore.
func (x *Proxy) Cut() { x.p.Stop() }

// Restore takes new links again, on the same address.
func (x *Proxy) Restore(t testing.TB) {
	t.Helper()
	if err := x.p.Start(); err != nil {
		t.Fatalf("restart the fault proxy on %s: %v", x.Addr, err)
	}
}

func (x *Proxy) add(t testing.TB, toxic string) {
	t.Helper()
	if _, err := x.p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		t.Fatalf("add toxic %s: %v", toxic, err)
	}
}
