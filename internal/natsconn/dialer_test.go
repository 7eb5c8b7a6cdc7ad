package natsconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/testkit"
)

// TestOptionsDialRaw: the connections Options dials are rawconn's (on
// Linux, where rawconn wraps them), and nats.go uses them: the stall
// tests above connect with Options.
func TestOptionsDialRaw(t *testing.T) {
	n := testkit.StartNATS(t)
	o := nats.GetDefaultOptions()
	for _, opt := range Options() {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	if o.CustomDialer == nil {
		t.Fatal("Options sets no dialer: nats.go's own would dial")
	}
	c, err := o.CustomDialer.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := fmt.Sprintf("%T", c); runtime.GOOS == "linux" && got != "*rawconn.conn" {
		t.Fatalf("Options' dialer gave a %s, not rawconn's", got)
	}
}

// TestTLSOverRaw: with a server that requires TLS, nats.go puts TLS on
// the connection rawconn's dialer made, and requests are answered.
func TestTLSOverRaw(t *testing.T) {
	cert, roots := selfSigned(t)
	n := testkit.StartNATSWith(t, func(o *server.Options) {
		o.TLS = true
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		o.TLSTimeout = 5
	})
	echoTLS := func() {
		nc, err := nats.Connect(fmt.Sprintf("tls://127.0.0.1:%d", n.Port), nats.Secure(&tls.Config{RootCAs: roots}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if _, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	echoTLS()
	var st State
	nc := connect(t, fmt.Sprintf("tls://127.0.0.1:%d", n.Port), &st, nats.Secure(&tls.Config{RootCAs: roots}))
	testkit.Eventually(t, 5*time.Second, "connected", st.Connected)
	if cs, err := nc.TLSConnectionState(); err != nil || !cs.HandshakeComplete {
		t.Fatalf("TLS state %v, %v", cs.HandshakeComplete, err)
	}
	if !roundTrip(nc) {
		t.Fatal("no answer over TLS")
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "natsconn test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}

// TestRefusedServerSkipped: given servers of which the first refuses
// connections, Options' dialer reports the refusal at once and nats.go
// connects to the next, well within the dialer's timeout.
func TestRefusedServerSkipped(t *testing.T) {
	n := testkit.StartNATS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	good := fmt.Sprintf("nats://127.0.0.1:%d", n.Port)
	start := time.Now()
	nc, err := nats.Connect("nats://"+refused+","+good, append(Options(), nats.DontRandomize())...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.ConnectedUrl(); got != good {
		t.Fatalf("connected to %s, want %s", got, good)
	}
	if took, timeout := time.Since(start), nats.GetDefaultOptions().Timeout; took >= timeout {
		t.Fatalf("connecting took %v, the dialer's whole timeout (%v): the refusal was not seen", took, timeout)
	}
}
