// Package apnsiotest is an APNs test double: an HTTP/2-over-TLS server that
// speaks Apple's provider API (POST /3/device/<token>, apns-* headers, JSON
// error reasons, provider-token and certificate authentication), so that
// tests, benchmarks and the embedded dev stack exercise the real apns2 client
// over the real protocol.
//
//	keyPEM, keyID, _ := apnsiotest.GenerateKey()
//	srv, err := apnsiotest.NewServer(apnsiotest.WithP8(keyPEM, keyID, "TEAM123456"))
//	...
//	defer srv.Close()
//	srv.WriteCAFile(caPath) // the client's --apns_ca_file; srv.URL() is its endpoint
//
// The server checks requests the way APNs documents it and answers with
// Apple's status codes and reason strings, in this order: 505 HTTP2Required
// (not HTTP/2; APNs speaks nothing else), 404 BadPath, 405 MethodNotAllowed,
// 400 MissingDeviceToken; authentication (403 MissingProviderToken,
// InvalidProviderToken, ExpiredProviderToken); FailNext's and Control's
// injected answers;
// 400 DuplicateHeaders, BadDeviceToken, MissingTopic, BadTopic,
// InvalidPushType (unknown type, or a topic without the suffix the type
// requires, such as ".voip"), TopicDisallowed, BadMessageId, BadPriority
// (also 10 for background pushes), BadExpirationDate, BadCollapseId; 413
// PayloadTooLarge (4096 bytes, 5120 for voip); 400 PayloadEmpty, BadPayload
// (not a JSON object; APNs documents no reason for it); then token state:
// 410 Unregistered (with a timestamp), 410 ExpiredToken, 400
// DeviceTokenNotForTopic. Every answer carries an apns-id: the request's, or
// a fresh UUID. Tests inject failures with
// FailNext, Unregister, Expire and BindToken, program faults with Control
// (Unavailable and Throttle are ready-made ones), and read what was accepted
// with Count, CountByToken and Received. A Server is safe for concurrent use.
package apnsiotest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Notification is one notification the server accepted. Header fields hold
// the request's apns-* header values verbatim, "" when absent.
type Notification struct {
	Token      string
	Topic      string // apns-topic, or the certificate's topic when absent
	PushType   string // apns-push-type
	Priority   string // apns-priority
	Expiration string // apns-expiration
	CollapseID string // apns-collapse-id
	ApnsID     string // the apns-id answered: the request's, or one the server made
	Payload    []byte
	KeyID      string // provider token's key ID; "" under certificate auth
	TeamID     string // provider token's team ID; "" under certificate auth
	Received   time.Time
}

// Server is a running APNs-protocol server on a loopback address.
type Server struct {
	hs     *httptest.Server
	caPEM  []byte
	roots  *x509.CertPool
	opts   options
	tokens *tokenVerifier

	latency     atomic.Int64 // time.Duration
	requests    atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	conns       atomic.Int64

	failNext atomic.Pointer[ControlFunc] // FailNext's control; nil when none
	ctlMu    sync.Mutex                  // serializes changes to ctl
	ctl      atomic.Pointer[controls]

	mu           sync.Mutex
	unregistered map[string]time.Time
	expired      map[string]bool
	bound        map[string]string // token → base topic
	count        int64
	byToken      map[string]int
	records      []Notification

	closeOnce sync.Once
}

// NewServer starts a server on 127.0.0.1 and a free port (see
// WithListenAddr) with a fresh CA. Without WithTokenKey, WithP8 or
// WithClientCA, no request can authenticate: every request is answered 403.
func NewServer(opts ...Option) (*Server, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	if o.requireClientCert && o.clientCAs == nil {
		return nil, fmt.Errorf("apnsiotest: WithClientCertRequired needs WithClientCA")
	}
	leaf, caPEM, err := serverCerts()
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	s := &Server{
		caPEM:        caPEM,
		roots:        roots,
		opts:         o,
		tokens:       newTokenVerifier(o.keys, o.tokenMaxAge),
		unregistered: map[string]time.Time{},
		expired:      map[string]bool{},
		bound:        map[string]string{},
		byToken:      map[string]int{},
	}
	s.latency.Store(int64(o.latency))
	s.ctl.Store(&controls{})

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("apnsiotest: listen on %s: %w", o.addr, err)
	}
	hs := httptest.NewUnstartedServer(s)
	hs.Listener.Close()
	hs.Listener = ln
	hs.EnableHTTP2 = true
	hs.TLS = &tls.Config{
		Certificates: []tls.Certificate{leaf},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"}, // HTTP/1 requests are answered 505
	}
	if o.clientCAs != nil {
		hs.TLS.ClientCAs = o.clientCAs
		hs.TLS.ClientAuth = tls.VerifyClientCertIfGiven
		if o.requireClientCert {
			hs.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	hs.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: o.maxStreams}
	hs.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	// Handshake failures from tests of bad certificates are expected: keep
	// them out of the test output unless debug logging is on.
	hs.Config.ErrorLog = slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug)
	hs.StartTLS()
	s.hs = hs
	return s, nil
}

// Close stops the server, waiting for requests in progress. It may be called
// more than once.
func (s *Server) Close() {
	s.closeOnce.Do(s.hs.Close)
}

// URL is the server's base URL, "https://127.0.0.1:<port>": the APNs endpoint
// (apns2.Client.Host) to use.
func (s *Server) URL() string { return s.hs.URL }

// CertPEM is the PEM-encoded CA certificate that signed the server's TLS
// certificate.
func (s *Server) CertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// WriteCAFile writes CertPEM to path, for clients that take a CA file
// (pushflow's --apns_ca_file).
func (s *Server) WriteCAFile(path string) error {
	if err := os.WriteFile(path, s.caPEM, 0o644); err != nil {
		return fmt.Errorf("apnsiotest: write CA file: %w", err)
	}
	return nil
}

// RootCAs is a pool holding the server's CA, for a client's
// tls.Config.RootCAs.
func (s *Server) RootCAs() *x509.CertPool { return s.roots.Clone() }

// SetLatency delays every later response by d.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Unregister makes later requests for token fail with 410 Unregistered and
// the current time as the body's timestamp, as for an uninstalled app.
func (s *Server) Unregister(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered[token] = time.Now()
}

// Expire makes later requests for token fail with 410 ExpiredToken.
func (s *Server) Expire(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired[token] = true
}

// BindToken makes token valid for topic (a bundle ID) only: requests for it
// on another topic fail with 400 DeviceTokenNotForTopic.
func (s *Server) BindToken(token, topic string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bound[token] = topic
}

// FailNext makes the next n authenticated requests fail with status and
// reason, whatever they carry; for 429 TooManyRequests, 500
// InternalServerError and 503 ServiceUnavailable retry tests. It replaces a
// previous FailNext; it is a control (see Control) answering before the
// others.
func (s *Server) FailNext(n int, status int, reason string) {
	if n <= 0 {
		s.failNext.Store(nil)
		return
	}
	fn := failNextFunc(n, status, reason)
	s.failNext.Store(&fn)
}

// Count is the number of notifications accepted (answered 200).
func (s *Server) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// CountByToken is the number of notifications accepted for token (see
// WithTokenCountLimit).
func (s *Server) CountByToken(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byToken[token]
}

// Connections is the number of connections the server has accepted.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Requests is the number of requests received, whatever their answer.
func (s *Server) Requests() int64 { return s.requests.Load() }

// MaxInFlight is the largest number of requests the server has handled at
// once.
func (s *Server) MaxInFlight() int64 { return s.maxInFlight.Load() }

// Received returns the accepted notifications in arrival order, up to the
// record limit (see WithRecordLimit).
func (s *Server) Received() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.records...)
}

// Reset forgets accepted notifications, every count (Count, CountByToken,
// Requests, MaxInFlight, Connections), a pending FailNext and the control
// functions. Token state (Unregister, Expire, BindToken) is kept.
func (s *Server) Reset() {
	s.failNext.Store(nil)
	s.ctlMu.Lock()
	s.ctl.Store(&controls{})
	s.ctlMu.Unlock()
	s.conns.Store(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count = 0
	s.byToken = map[string]int{}
	s.records = nil
	s.requests.Store(0)
	s.maxInFlight.Store(0)
}
