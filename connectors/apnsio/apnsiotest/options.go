package apnsiotest

import (
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/sideshow/apns2/token"
)

// Defaults of the options below.
const (
	// DefaultMaxConcurrentStreams is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
	// the server advertises, close to what APNs advertises to an authenticated
	// provider.
	DefaultMaxConcurrentStreams = 1000
	// DefaultRecordLimit is how many accepted notifications Received keeps.
	DefaultRecordLimit = 100_000
	// DefaultTokenCountLimit is how many distinct device tokens CountByToken
	// tracks.
	DefaultTokenCountLimit = 1_000_000
	// DefaultTokenMaxAge is how old a provider token (its iat claim) may be
	// before the server answers 403 ExpiredProviderToken, as APNs does.
	DefaultTokenMaxAge = time.Hour
)

// Option configures a Server.
type Option func(*options)

type options struct {
	keys              map[string]tokenKey // by key ID
	topics            map[string]bool     // allowed base topics; nil allows all
	clientCAs         *x509.CertPool
	requireClientCert bool
	latency           time.Duration
	maxStreams        int
	recordLimit       int
	tokenCountLimit   int
	tokenMaxAge       time.Duration
	addr              string
	err               error
}

type tokenKey struct {
	teamID string
	pub    *ecdsa.PublicKey
}

func defaultOptions() options {
	return options{
		keys:            map[string]tokenKey{},
		maxStreams:      DefaultMaxConcurrentStreams,
		recordLimit:     DefaultRecordLimit,
		tokenCountLimit: DefaultTokenCountLimit,
		tokenMaxAge:     DefaultTokenMaxAge,
		addr:            "127.0.0.1:0",
	}
}

// WithTokenKey registers a provider token signing key: requests whose
// "authorization: bearer <JWT>" is an ES256 JWT with header kid = keyID,
// claim iss = teamID and a signature by the private half of pub are
// authenticated. Several keys may be registered.
func WithTokenKey(keyID, teamID string, pub *ecdsa.PublicKey) Option {
	return func(o *options) {
		if keyID == "" || teamID == "" || pub == nil {
			o.setErr(fmt.Errorf("apnsiotest: WithTokenKey: key ID, team ID and public key are required"))
			return
		}
		o.keys[keyID] = tokenKey{teamID: teamID, pub: pub}
	}
}

// WithP8 registers the public half of a PKCS#8 ".p8" private key, as made by
// GenerateKey or downloaded from Apple. See WithTokenKey.
func WithP8(keyPEM []byte, keyID, teamID string) Option {
	return func(o *options) {
		key, err := token.AuthKeyFromBytes(keyPEM)
		if err != nil {
			o.setErr(fmt.Errorf("apnsiotest: WithP8: %w", err))
			return
		}
		WithTokenKey(keyID, teamID, &key.PublicKey)(o)
	}
}

// WithTopics restricts the topics the server accepts to these bundle IDs
// (push-type suffixes such as ".voip" are allowed on top of them). Other
// topics are answered 400 TopicDisallowed. By default every well-formed topic
// is allowed.
func WithTopics(topics ...string) Option {
	return func(o *options) {
		if o.topics == nil {
			o.topics = map[string]bool{}
		}
		for _, t := range topics {
			o.topics[t] = true
		}
	}
}

// WithClientCA enables certificate authentication: a client certificate
// that verifies against pool authenticates every request on its connection
// (its topic is the certificate's UID, or its "Apple Push Services: <topic>"
// common name). Connections without a certificate still need a provider
// token, as on APNs, where both kinds share one host.
func WithClientCA(pool *x509.CertPool) Option {
	return func(o *options) { o.clientCAs = pool }
}

// WithClientCertRequired makes the TLS handshake fail without a client
// certificate that verifies against the WithClientCA pool.
func WithClientCertRequired() Option {
	return func(o *options) { o.requireClientCert = true }
}

// WithLatency delays every response by d (default 0). SetLatency changes it
// on a running server.
func WithLatency(d time.Duration) Option {
	return func(o *options) { o.latency = d }
}

// WithMaxConcurrentStreams sets the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
// the server advertises (default DefaultMaxConcurrentStreams).
func WithMaxConcurrentStreams(n int) Option {
	return func(o *options) {
		if n <= 0 {
			o.setErr(fmt.Errorf("apnsiotest: WithMaxConcurrentStreams(%d): must be positive", n))
			return
		}
		o.maxStreams = n
	}
}

// WithRecordLimit sets how many accepted notifications Received keeps
// (default DefaultRecordLimit); counts are kept whatever the limit. Zero keeps
// none.
func WithRecordLimit(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.setErr(fmt.Errorf("apnsiotest: WithRecordLimit(%d): must not be negative", n))
			return
		}
		o.recordLimit = n
	}
}

// WithTokenCountLimit sets how many distinct device tokens CountByToken tracks
// (default DefaultTokenCountLimit). Tokens first seen beyond the limit are
// counted by Count only.
func WithTokenCountLimit(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.setErr(fmt.Errorf("apnsiotest: WithTokenCountLimit(%d): must not be negative", n))
			return
		}
		o.tokenCountLimit = n
	}
}

// WithTokenMaxAge sets how old a provider token may be (default
// DefaultTokenMaxAge).
func WithTokenMaxAge(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.setErr(fmt.Errorf("apnsiotest: WithTokenMaxAge(%v): must be positive", d))
			return
		}
		o.tokenMaxAge = d
	}
}

// WithListenAddr makes the server listen on addr instead of the default
// "127.0.0.1:0" (a free port), for a dev stack with a stable endpoint.
func WithListenAddr(addr string) Option {
	return func(o *options) { o.addr = addr }
}

func (o *options) setErr(err error) {
	if o.err == nil {
		o.err = err
	}
}
