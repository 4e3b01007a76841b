package apnsio

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
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
	// DefaultMaxRetryAfter is the default wait budget of one Push.
	DefaultMaxRetryAfter = 30 * time.Second
)

// Config configures a Client. Zero fields take the defaults above. Exactly
// one of token auth (KeyFile, KeyID, TeamID) and certificate auth (CertFile)
// is set.
//
// Config holds file paths and names, never key material or passwords: a
// Config is shipped to Beam workers inside the job graph, so the
// certificate's password is read by NewClient (on the worker) from
// CertPasswordFile or the environment variable CertPasswordEnv. A Config may
// be printed, logged and serialized.
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
	// CertPasswordFile is a file holding the password that decrypts
	// CertFile, if it is encrypted (one trailing newline is ignored).
	// CertPasswordEnv is instead the name of an environment variable
	// holding it. At most one is set; NewClient reads it.
	CertPasswordFile, CertPasswordEnv string

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
	// MaxRetryAfter bounds the total time one Push waits between its
	// attempts, backoffs and Retry-Afters (the larger of the two before each
	// retry) included (default 30s); ctx's deadline bounds it too. A wait
	// that would exceed what is left of it is not slept: the Push returns
	// its last answer as a Result with Retryable and RetryAfter set.
	MaxRetryAfter time.Duration
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
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
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
	if c.CertPasswordFile != "" && c.CertPasswordEnv != "" {
		add("both a cert password file and a cert password environment variable are set; choose one")
	}
	if (c.CertPasswordFile != "" || c.CertPasswordEnv != "") && c.CertFile == "" {
		add("cert password file or environment variable set without a cert file")
	}
	if c.Concurrency < 0 {
		add("concurrency %d is negative", c.Concurrency)
	}
	if c.MaxAttempts < 0 {
		add("max attempts %d is negative", c.MaxAttempts)
	}
	if c.BaseBackoff < 0 || c.MaxBackoff < 0 || c.Timeout < 0 || c.MaxRetryAfter < 0 {
		add("negative duration (base backoff %v, max backoff %v, timeout %v, max retry-after %v)", c.BaseBackoff, c.MaxBackoff, c.Timeout, c.MaxRetryAfter)
	}
	if c.BaseBackoff > c.MaxBackoff {
		add("base backoff %v exceeds max backoff %v", c.BaseBackoff, c.MaxBackoff)
	}
	return errors.Join(errs...)
}

// certPassword reads the certificate's password from CertPasswordFile or
// CertPasswordEnv; "" when neither is set. Errors never include it.
func (c Config) certPassword() (string, error) {
	switch {
	case c.CertPasswordFile != "":
		b, err := os.ReadFile(c.CertPasswordFile)
		if err != nil {
			return "", fmt.Errorf("apnsio: read cert password file: %w", err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), nil
	case c.CertPasswordEnv != "":
		v, ok := os.LookupEnv(c.CertPasswordEnv)
		if !ok {
			return "", fmt.Errorf("apnsio: cert password environment variable %s is not set on this worker", c.CertPasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// String describes c. It holds no secret (see Config).
func (c Config) String() string {
	return fmt.Sprintf("apnsio.Config{Endpoint:%q CAFile:%q KeyFile:%q KeyID:%q TeamID:%q CertFile:%q CertPasswordFile:%q CertPasswordEnv:%q Concurrency:%d MaxAttempts:%d BaseBackoff:%v MaxBackoff:%v Timeout:%v MaxRetryAfter:%v}",
		c.Endpoint, c.CAFile, c.KeyFile, c.KeyID, c.TeamID, c.CertFile, c.CertPasswordFile, c.CertPasswordEnv,
		c.Concurrency, c.MaxAttempts, c.BaseBackoff, c.MaxBackoff, c.Timeout, c.MaxRetryAfter)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// LogValue makes slog log c as a group.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("ca_file", c.CAFile),
		slog.String("key_file", c.KeyFile),
		slog.String("key_id", c.KeyID),
		slog.String("team_id", c.TeamID),
		slog.String("cert_file", c.CertFile),
		slog.String("cert_password_file", c.CertPasswordFile),
		slog.String("cert_password_env", c.CertPasswordEnv),
		slog.Int("concurrency", c.Concurrency),
		slog.Int("max_attempts", c.MaxAttempts),
		slog.Duration("base_backoff", c.BaseBackoff),
		slog.Duration("max_backoff", c.MaxBackoff),
		slog.Duration("timeout", c.Timeout),
		slog.Duration("max_retry_after", c.MaxRetryAfter),
	)
}
