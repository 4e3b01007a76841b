package kafkaio

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files in a temp dir.
type testPKI struct {
	CAFile, ClientCert, ClientKey string
	Server                        tls.Certificate
	Pool                          *x509.CertPool
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pushflow test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var p testPKI
	p.CAFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	sc, sk := issue(2, x509.ExtKeyUsageServerAuth)
	if p.Server, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	cc, ck := issue(3, x509.ExtKeyUsageClientAuth)
	p.ClientCert, p.ClientKey = write("client.pem", cc), write("client-key.pem", ck)
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(ca)
	return p
}

// startSecureCluster starts a kfake broker seeded with topic, with the
// given SASL superuser (method "" = no SASL) and TLS config (nil = none).
func startSecureCluster(t testing.TB, method, user, pass string, tc *tls.Config, topic string) []string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, topic), kfake.Ports(0)}
	if method != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(method, user, pass))
	}
	if tc != nil {
		opts = append(opts, kfake.TLS(tc))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake.NewCluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func passwordFile(t testing.TB, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecureRoundTrip writes through Write and reads back through a bounded
// Read, over SASL and TLS.
func TestSecureRoundTrip(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name, mech string
		mtls       bool
	}{
		{"scram-sha-512+tls", SASLSCRAMSHA512, false},
		{"plain+mtls", SASLPlain, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverTLS := &tls.Config{Certificates: []tls.Certificate{pki.Server}}
			sec := Security{TLS: true, CAFile: pki.CAFile, SASLMechanism: tc.mech, SASLUsername: "pushflow",
				SASLPasswordFile: passwordFile(t, "s3cret-"+tc.name)}
			if tc.mtls {
				serverTLS.ClientAuth, serverTLS.ClientCAs = tls.RequireAndVerifyClientCert, pki.Pool
				sec.CertFile, sec.KeyFile = pki.ClientCert, pki.ClientKey
			}
			brokers := startSecureCluster(t, tc.mech, "pushflow", "s3cret-"+tc.name, serverTLS, "secure")

			var msgs []Message
			var want []any
			for i := range 20 {
				v := fmt.Sprintf("%s-%d", tc.name, i)
				msgs = append(msgs, Message{Key: []byte(fmt.Sprint(i)), Value: []byte(v)})
				want = append(want, v)
			}
			p, s := beam.NewPipelineWithRoot()
			Write(s, WriteConfig{Brokers: brokers, Topic: "secure", Security: sec}, beam.CreateList(s, msgs))
			if err := ptest.Run(p); err != nil {
				t.Fatalf("Write: %v", err)
			}

			p, s = beam.NewPipelineWithRoot()
			recs := Read(s, ReadConfig{Brokers: brokers, Topics: []string{"secure"}, Until: UntilLatest, Security: sec})
			passert.Equals(s, beam.ParDo(s, valueOf, recs), want...)
			if err := ptest.Run(p); err != nil {
				t.Fatalf("Read: %v", err)
			}
		})
	}
}

// TestSecureConnectErrors checks that each misconfiguration is refused with
// an error telling what to check, and that no error shows the password.
func TestSecureConnectErrors(t *testing.T) {
	pki := newTestPKI(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{pki.Server}}
	const pass = "right-password"
	scram := startSecureCluster(t, SASLSCRAMSHA512, "pushflow", pass, serverTLS, "secure")
	plain := startSecureCluster(t, "", "", "", nil, "secure")
	// A plaintext kfake listener waits for the rest of the 350 MB request
	// a TLS ClientHello announces: time out sooner.
	netTimeout.Store(int64(time.Second))
	t.Cleanup(func() { netTimeout.Store(0) })
	t.Setenv("PUSHFLOW_TEST_KAFKA_PASSWORD", pass)

	good := Security{TLS: true, CAFile: pki.CAFile, SASLMechanism: SASLSCRAMSHA512, SASLUsername: "pushflow",
		SASLPasswordEnv: "PUSHFLOW_TEST_KAFKA_PASSWORD"}
	with := func(f func(*Security)) Security { s := good; f(&s); return s }
	for _, tc := range []struct {
		name    string
		brokers []string
		sec     Security
		want    string // "" = connects
	}{
		{"good (password from env)", scram, good, ""},
		{"wrong password", scram, with(func(s *Security) { s.SASLPasswordEnv, s.SASLPasswordFile = "", passwordFile(t, "wrong") }),
			`kafkaio: SASL authentication failed for user "pushflow" (mechanism SCRAM-SHA-512): is that the mechanism the broker expects, and the password right?`},
		{"wrong mechanism", scram, with(func(s *Security) { s.SASLMechanism = SASLSCRAMSHA256 }),
			`SASL authentication failed for user "pushflow" (mechanism SCRAM-SHA-256)`},
		{"no TLS against a TLS listener", scram, with(func(s *Security) { s.TLS, s.CAFile = false, "" }), "--kafka_tls"},
		{"no CA for a private CA", scram, with(func(s *Security) { s.CAFile = "" }), "not accepted: is it signed by a CA in the system roots only (no --kafka_ca_file)"},
		{"TLS against a plaintext listener", plain, Security{TLS: true, CAFile: pki.CAFile}, "is this the broker's TLS port?"},
		{"missing password file", scram, with(func(s *Security) { s.SASLPasswordEnv, s.SASLPasswordFile = "", "/nonexistent/password" }),
			"kafkaio: read the SASL password file: open /nonexistent/password"},
		{"unset password env", scram, with(func(s *Security) { s.SASLPasswordEnv = "PUSHFLOW_TEST_UNSET" }),
			"environment variable PUSHFLOW_TEST_UNSET is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewProducer(WriteConfig{Brokers: tc.brokers, Security: tc.sec})
			err := p.connect()
			if err == nil {
				p.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("connect() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("connect() = %v, want an error containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), pass):
				t.Fatalf("connect() = %v: shows the password", err)
			}
		})
	}
}

// TestSecureReadFailsClearly: a Read with a wrong password fails the
// pipeline with the authentication error, not a hang.
func TestSecureReadFailsClearly(t *testing.T) {
	brokers := startSecureCluster(t, SASLPlain, "pushflow", "right", nil, "secure")
	p, s := beam.NewPipelineWithRoot()
	recs := Read(s, ReadConfig{Brokers: brokers, Topics: []string{"secure"}, Until: UntilLatest,
		Security: Security{SASLMechanism: SASLPlain, SASLUsername: "pushflow", SASLPasswordFile: passwordFile(t, "wrong")}})
	passert.Empty(s, recs)
	err := ptest.Run(p)
	if err == nil || !strings.Contains(err.Error(), "SASL authentication failed") {
		t.Fatalf("ptest.Run = %v, want the SASL authentication error", err)
	}
}

func TestSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		sec  Security
		want string // "" = valid
	}{
		{Security{}, ""},
		{Security{TLS: true}, ""},
		{Security{SASLMechanism: "SCRAM-SHA-1", SASLUsername: "u", SASLPasswordFile: "f"}, `SASL mechanism "SCRAM-SHA-1": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{Security{SASLMechanism: SASLPlain, SASLPasswordFile: "f"}, "needs a SASLUsername"},
		{Security{SASLMechanism: SASLPlain, SASLUsername: "u"}, "exactly one of SASLPasswordFile and SASLPasswordEnv"},
		{Security{SASLMechanism: SASLPlain, SASLUsername: "u", SASLPasswordFile: "f", SASLPasswordEnv: "E"}, "exactly one of"},
		{Security{SASLUsername: "u"}, "without a SASLMechanism"},
		{Security{CertFile: "c"}, "both CertFile and KeyFile"},
	} {
		err := tc.sec.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v.Validate() = %v, want nil", tc.sec, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v.Validate() = %v, want an error containing %q", tc.sec, err, tc.want)
		}
	}
}
