package kafkaio

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/pushflow/pushflow/connectors/internal/tlsroots"
)

// SASL mechanisms [Security] supports.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// Security is how the reader and the writer authenticate to Kafka and
// protect the connection: TLS (optionally mutual) and SASL. It holds file
// paths and an environment variable name, never a secret: it is part of the
// serialized pipeline graph. The password is read where the sarama client is
// made, on the worker, by [Security.Apply]. The zero value is a plaintext,
// unauthenticated connection.
type Security struct {
	// TLS encrypts the connection, verifying the broker's certificate
	// against the system roots plus CAFile. Setting CAFile, CertFile or
	// KeyFile implies TLS.
	TLS bool
	// CAFile is a PEM file of extra root certificates (a private CA).
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key for
	// mutual TLS; both or neither.
	CertFile string
	KeyFile  string

	// SASLMechanism is "" (no SASL), "PLAIN", "SCRAM-SHA-256" or
	// "SCRAM-SHA-512". PLAIN sends the password as is: use it over TLS only.
	SASLMechanism string
	// SASLUsername is the SASL user. Required with a mechanism.
	SASLUsername string
	// SASLPasswordFile is a file holding the password (one trailing newline
	// is ignored), SASLPasswordEnv the name of an environment variable
	// holding it. Exactly one is required with a mechanism.
	SASLPasswordFile string
	SASLPasswordEnv  string
}

// tlsOn reports whether the connection uses TLS.
func (s Security) tlsOn() bool { return s.TLS || s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" }

// Validate checks the configuration without reading any file: a known
// mechanism, a user and one password source with it, a client certificate
// with its key.
func (s Security) Validate() error {
	switch s.SASLMechanism {
	case "":
		if s.SASLUsername != "" || s.SASLPasswordFile != "" || s.SASLPasswordEnv != "" {
			return errors.New("SASL username or password given without a SASLMechanism")
		}
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if s.SASLUsername == "" {
			return fmt.Errorf("SASL mechanism %s needs a SASLUsername", s.SASLMechanism)
		}
		if (s.SASLPasswordFile == "") == (s.SASLPasswordEnv == "") {
			return fmt.Errorf("SASL mechanism %s needs exactly one of SASLPasswordFile and SASLPasswordEnv", s.SASLMechanism)
		}
	default:
		return fmt.Errorf("SASL mechanism %q: want %s, %s or %s", s.SASLMechanism, SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512)
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return errors.New("a client certificate needs both CertFile and KeyFile")
	}
	return nil
}

// Apply configures cfg's TLS and SASL settings, reading the CA, the client
// certificate and the password now. Its errors name the file or variable,
// never the secret.
func (s Security) Apply(cfg *sarama.Config) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("kafkaio: %w", err)
	}
	if s.tlsOn() {
		tc, err := s.tlsConfig()
		if err != nil {
			return err
		}
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = tc
	}
	if s.SASLMechanism == "" {
		return nil
	}
	pass, err := s.password()
	if err != nil {
		return err
	}
	cfg.Net.SASL.Enable = true
	cfg.Net.SASL.Handshake = true
	cfg.Net.SASL.User = s.SASLUsername
	cfg.Net.SASL.Password = pass
	switch s.SASLMechanism {
	case SASLPlain:
		cfg.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case SASLSCRAMSHA256:
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case SASLSCRAMSHA512:
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	}
	return nil
}

func (s Security) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pool, err := tlsroots.WithFile(s.CAFile)
		if errors.Is(err, tlsroots.ErrNoCertificate) {
			return nil, fmt.Errorf("kafkaio: the Kafka CA file %s holds no PEM certificate", s.CAFile)
		}
		if err != nil {
			return nil, fmt.Errorf("kafkaio: read the Kafka CA file: %w", err)
		}
		tc.RootCAs = pool
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafkaio: load the Kafka client certificate %s and key %s: %w", s.CertFile, s.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// password reads the SASL password from its file or environment variable.
func (s Security) password() (string, error) {
	if s.SASLPasswordFile != "" {
		b, err := os.ReadFile(s.SASLPasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafkaio: read the SASL password file: %w", err)
		}
		p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if p == "" {
			return "", fmt.Errorf("kafkaio: the SASL password file %s is empty", s.SASLPasswordFile)
		}
		return p, nil
	}
	p, ok := os.LookupEnv(s.SASLPasswordEnv)
	if !ok || p == "" {
		return "", fmt.Errorf("kafkaio: the SASL password environment variable %s is not set (or empty) on this worker", s.SASLPasswordEnv)
	}
	return p, nil
}

// netTimeout, when set, replaces sarama's 30s dial, read and write
// timeouts: tests of a client that gets no answer.
var netTimeout atomic.Int64

// saramaConfig is NewSaramaConfig with s applied.
func (s Security) saramaConfig(clientID string) (*sarama.Config, error) {
	cfg := NewSaramaConfig(clientID)
	if d := time.Duration(netTimeout.Load()); d > 0 {
		cfg.Net.DialTimeout, cfg.Net.ReadTimeout, cfg.Net.WriteTimeout = d, d, d
	}
	if err := s.Apply(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ErrAuthentication is wrapped by the errors of a read or write that the
// broker refused to authenticate.
var ErrAuthentication = errors.New("kafkaio: SASL authentication failed")

// connectError explains why connecting to brokers failed, telling what to
// check: the SASL mechanism and password, the CA, or whether the listener
// speaks TLS.
func (s Security) connectError(what string, brokers []string, err error) error {
	if errors.Is(err, sarama.ErrSASLAuthenticationFailed) || errors.Is(err, sarama.ErrUnsupportedSASLMechanism) ||
		errors.Is(err, sarama.ErrIllegalSASLState) {
		return fmt.Errorf("%w for user %q (mechanism %s): is that the mechanism the broker expects, and the password right? (%s %v: %v)",
			ErrAuthentication, s.SASLUsername, s.SASLMechanism, what, brokers, err)
	}
	if s.SASLMechanism != "" && closedByPeer(err) && s.listenerAnswers(brokers) {
		// Kafka answers a failed SASL exchange by closing the connection
		// (after an error response, which sarama may not get to read); the
		// listener answering a request without SASL tells that apart from
		// a TLS mismatch or a broker going down.
		return fmt.Errorf("%w for user %q (mechanism %s): is that the mechanism the broker expects, and the password right? (%s %v: the broker closed the connection during authentication: %v)",
			ErrAuthentication, s.SASLUsername, s.SASLMechanism, what, brokers, err)
	}
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
		header    tls.RecordHeaderError
		verify    *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &host), errors.As(err, &verify):
		ca := "the system roots only (no --kafka_ca_file)"
		if s.CAFile != "" {
			ca = "--kafka_ca_file " + s.CAFile
		}
		return fmt.Errorf("kafkaio: %s %v: the broker's TLS certificate was not accepted: is it signed by a CA in %s, and issued for the broker's host name? %w", what, brokers, ca, err)
	case errors.As(err, &header):
		return fmt.Errorf("kafkaio: %s %v: the broker did not answer TLS: is --kafka_tls right for this listener (the port may be a plaintext one)? %w", what, brokers, err)
	}
	var netErr net.Error
	hint := "are the brokers reachable?"
	switch {
	case s.tlsOn() && closedByPeer(err):
		hint = "are the brokers reachable? A plaintext listener closes the connection of a TLS client: is this the broker's TLS port?"
	case s.tlsOn() && errors.As(err, &netErr) && netErr.Timeout():
		hint = "are the brokers reachable? A timeout with --kafka_tls is what a plaintext listener gives a TLS client: is this the broker's TLS port?"
	case !s.tlsOn():
		hint = "are the brokers reachable, and is the listener plaintext? A TLS listener needs --kafka_tls (and --kafka_ca_file for a private CA)"
	case s.SASLMechanism == "":
		hint = "are the brokers reachable? If the listener needs SASL, set --kafka_sasl_mechanism"
	}
	return fmt.Errorf("kafkaio: %s %v (%s): %w", what, brokers, hint, err)
}

// closedByPeer reports whether err is the broker closing the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// listenerAnswers reports whether the first reachable broker answers an
// ApiVersions request over the configured transport (TLS or not) without
// SASL: Kafka answers it before authentication.
func (s Security) listenerAnswers(brokers []string) bool {
	cfg := NewSaramaConfig("pushflow-probe")
	cfg.Net.DialTimeout, cfg.Net.ReadTimeout, cfg.Net.WriteTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	if s.tlsOn() {
		tc, err := s.tlsConfig()
		if err != nil {
			return false
		}
		cfg.Net.TLS.Enable, cfg.Net.TLS.Config = true, tc
	}
	for _, addr := range brokers {
		b := sarama.NewBroker(addr)
		if err := b.Open(cfg); err != nil {
			continue
		}
		_, err := b.ApiVersions(&sarama.ApiVersionsRequest{})
		b.Close()
		if err == nil {
			return true
		}
	}
	return false
}

// scramClient is sarama's SCRAMClient on github.com/xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }
