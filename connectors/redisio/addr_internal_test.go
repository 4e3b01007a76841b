package redisio

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// TestTLSToPlaintextPort: a plaintext redis-server never answers a TLS
// ClientHello, so the handshake times out; the error says which port to use.
func TestTLSToPlaintextPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent, like redis-server reading an inline command
		}
	}()
	h := explainHook{Addr{TLS: true, Addrs: []string{l.Addr().String()}}}
	a, _ := ParseAddr("rediss://" + l.Addr().String())
	tc, _ := a.tlsConfig()
	dial := h.DialHook(func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: 200 * time.Millisecond}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		tcn := tcClient(c, tc)
		return tcn, tcn.HandshakeContext(ctx)
	})
	_, err = dial(context.Background(), "tcp", l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "did not answer the TLS handshake: is that its TLS port") {
		t.Fatalf("dial = %v, want the TLS port hint", err)
	}
}

func tcClient(c net.Conn, tc *tls.Config) *tls.Conn {
	cfg := tc.Clone()
	cfg.ServerName = "127.0.0.1"
	return tls.Client(c, cfg)
}
