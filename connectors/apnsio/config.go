package apnsio

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/sideshow/apns2"
)

// Defaults of Config's zero fields.
const (
	DefaultConcurrency = 64
	DefaultMaxAttempts = 4
	DefaultBaseBackoff = 100 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	DefaultTimeout     = 10 * time.Second
)

// Config configures a Client. Zero fields take the defaults above. Exactly
// one of token auth (KeyFile, KeyID, TeamID) and certificate auth (CertFile)
// is set.
//
// Config holds file paths, never key material, but CertPassword is a secret:
// String, GoString and LogValue redact it, so a Config may be printed and
// logged.
type Config struct {
	// Endpoint is the APNs base URL (default apns2.HostProduction;
	// apns2.HostDevelopment is the sandbox, an apnsiotest.Server's URL a
	// test double).
	Endpoint string
	// CAFile is a PEM file of extra root CAs trusted besides the system's,
	// for a sandbox or test double.
	CAFile string

	// KeyFile is the PKCS#8 ".p8" signing key of token auth, KeyID its
	// 10-character key ID and TeamID the developer team ID.
	KeyFile, KeyID, TeamID string

	// CertFile is the client certificate of certificate auth: a ".p12" (or
	// ".pfx") file, or a PEM file holding the certificate and its key.
	CertFile string
	// CertPassword decrypts CertFile, if it is encrypted.
	CertPassword string

	// Concurrency bounds requests in flight over the whole Client (default
	// 64). Keep it below the stream limit APNs advertises (SETTINGS
	// MAX_CONCURRENT_STREAMS, about 1000): beyond it the HTTP/2 transport
	// opens more connections.
	Concurrency int
	// MaxAttempts bounds attempts per notification, the first included
	// (default 4).
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the wait before a retry: a random
	// duration in [0, min(MaxBackoff, BaseBackoff·2^(attempt-1))) (defaults
	// 100ms, 5s).
	BaseBackoff, MaxBackoff time.Duration
	// Timeout bounds each attempt (default 10s).
	Timeout time.Duration
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.Endpoint == "" {
		c.Endpoint = apns2.HostProduction
	}
	c.Endpoint = strings.TrimSuffix(c.Endpoint, "/")
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseBackoff == 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate reports what is wrong with c, all problems at once. It does not
// read the files; NewClient does.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("apnsio: config: "+format, args...)) }

	if u, err := url.Parse(c.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		add("endpoint %q is not an https://host[:port] URL", c.Endpoint)
	}
	tokenAuth := c.KeyFile != "" || c.KeyID != "" || c.TeamID != ""
	switch {
	case tokenAuth && c.CertFile != "":
		add("both token auth (key file, key ID, team ID) and certificate auth (cert file) are set; choose one")
	case !tokenAuth && c.CertFile == "":
		add("no credentials: set the key file, key ID and team ID (token auth) or a cert file (certificate auth)")
	case tokenAuth:
		if c.KeyFile == "" {
			add("token auth needs a key file (.p8)")
		}
		if c.KeyID == "" {
			add("token auth needs a key ID")
		}
		if c.TeamID == "" {
			add("token auth needs a team ID")
		}
	}
	if c.CertPassword != "" && c.CertFile == "" {
		add("cert password set without a cert file")
	}
	if c.Concurrency < 0 {
		add("concurrency %d is negative", c.Concurrency)
	}
	if c.MaxAttempts < 0 {
		add("max attempts %d is negative", c.MaxAttempts)
	}
	if c.BaseBackoff < 0 || c.MaxBackoff < 0 || c.Timeout < 0 {
		add("negative duration (base backoff %v, max backoff %v, timeout %v)", c.BaseBackoff, c.MaxBackoff, c.Timeout)
	}
	if c.BaseBackoff > c.MaxBackoff {
		add("base backoff %v exceeds max backoff %v", c.BaseBackoff, c.MaxBackoff)
	}
	return errors.Join(errs...)
}

// redacted stands in for a secret that is set.
const redacted = "REDACTED"

func redact(secret string) string {
	if secret == "" {
		return ""
	}
	return redacted
}

// String describes c with CertPassword redacted.
func (c Config) String() string {
	return fmt.Sprintf("apnsio.Config{Endpoint:%q CAFile:%q KeyFile:%q KeyID:%q TeamID:%q CertFile:%q CertPassword:%q Concurrency:%d MaxAttempts:%d BaseBackoff:%v MaxBackoff:%v Timeout:%v}",
		c.Endpoint, c.CAFile, c.KeyFile, c.KeyID, c.TeamID, c.CertFile, redact(c.CertPassword),
		c.Concurrency, c.MaxAttempts, c.BaseBackoff, c.MaxBackoff, c.Timeout)
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// LogValue makes slog log c as a group with CertPassword redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("ca_file", c.CAFile),
		slog.String("key_file", c.KeyFile),
		slog.String("key_id", c.KeyID),
		slog.String("team_id", c.TeamID),
		slog.String("cert_file", c.CertFile),
		slog.String("cert_password", redact(c.CertPassword)),
		slog.Int("concurrency", c.Concurrency),
		slog.Int("max_attempts", c.MaxAttempts),
		slog.Duration("base_backoff", c.BaseBackoff),
		slog.Duration("max_backoff", c.MaxBackoff),
		slog.Duration("timeout", c.Timeout),
	)
}
