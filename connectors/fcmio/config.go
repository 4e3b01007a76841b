package fcmio

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// DefaultEndpoint is Google's FCM endpoint, the base URL of the HTTP v1 API
// (without its "/v1").
const DefaultEndpoint = "https://fcm.googleapis.com"

// ScopeMessaging is the OAuth 2 scope the Client asks credentials for.
const ScopeMessaging = "https://www.googleapis.com/auth/firebase.messaging"

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

// Config configures a Client. Zero fields take the defaults above.
//
// Credentials come from one of four places:
//   - CredentialsFile set: that service-account JSON key file, for Endpoint
//     or Google's;
//   - CredentialsEnv set: the service-account JSON key held by that
//     environment variable (of the worker), likewise;
//   - none of CredentialsFile, CredentialsEnv and Endpoint set: Google's
//     Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, the
//     GCE/GKE metadata server, gcloud's);
//   - Endpoint set without either: none, for a test double such as an
//     fcmiotest.Server.
//
// Config holds a file path or a variable's name, never key material: a
// Config is shipped to Beam workers inside the job graph, and NewClient (on
// the worker) reads the key. String, GoString and LogValue redact a
// password in the Endpoint URL, so a Config may be printed and logged.
type Config struct {
	// Endpoint is the FCM base URL, without "/v1" ("" is DefaultEndpoint):
	// an https:// URL, or http:// for a test double (with credentials only
	// to a loopback host, so that no access token crosses a network in
	// clear).
	Endpoint string
	// ProjectID is the Firebase project to send through. "" takes the
	// "project_id" of CredentialsFile.
	ProjectID string
	// CredentialsFile is a service-account JSON key file (see above).
	CredentialsFile string
	// CredentialsEnv is the name of an environment variable holding a
	// service-account JSON key, instead of CredentialsFile (see above).
	CredentialsEnv string

	// Concurrency bounds requests in flight over the whole Client (default
	// 64), and the idle connections kept to the endpoint.
	Concurrency int
	// MaxAttempts bounds attempts per message, the first included (default
	// 4).
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the wait before a retry: a random
	// duration in [0, min(MaxBackoff, BaseBackoff·2^(attempt-1))) (defaults
	// 100ms, 5s), unless FCM's answer carries a Retry-After.
	BaseBackoff, MaxBackoff time.Duration
	// Timeout bounds each attempt (default 10s), the access token fetch
	// included.
	Timeout time.Duration
	// MaxRetryAfter bounds the total time one Push waits between its
	// attempts, backoffs and Retry-Afters (the larger of the two before each
	// retry) included (default 30s); ctx's deadline bounds it too. A wait
	// that would exceed what is left of it is not slept: the Push returns
	// its last answer as a Result with Retryable and RetryAfter set.
	MaxRetryAfter time.Duration
}

// withDefaults returns c with its zero fields set to the defaults. Endpoint
// stays "" (it also decides which credentials to use); see endpoint.
func (c Config) withDefaults() Config {
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

// endpoint is the base URL to send to.
func (c Config) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return strings.TrimSuffix(c.Endpoint, "/")
}

// authenticated reports whether the Client sends access tokens.
func (c Config) authenticated() bool {
	return c.CredentialsFile != "" || c.CredentialsEnv != "" || c.Endpoint == ""
}

// Validate reports what is wrong with c, all problems at once. It does not
// read the credentials file; NewClient does.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("fcmio: config: "+format, args...)) }

	u, err := url.Parse(c.endpoint())
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "":
		add("endpoint %q is not an https://host[:port] URL", redactURL(c.Endpoint))
	case u.Path != "" && u.Path != "/":
		add("endpoint %q has a path; give the base URL (the client adds /v1)", redactURL(c.Endpoint))
	case u.User != nil && hasPassword(u.User):
		add("endpoint %q carries a password: a Config is shipped in the job graph; put credentials in a file or an environment variable", redactURL(c.Endpoint))
	case u.Scheme == "http" && c.authenticated() && !loopback(u.Hostname()):
		add("endpoint %q is plain http to a non-loopback host: access tokens would cross the network in clear; use https", redactURL(c.Endpoint))
	}
	if c.CredentialsFile != "" && c.CredentialsEnv != "" {
		add("both a credentials file and a credentials environment variable are set; choose one")
	}
	if c.ProjectID == "" && c.CredentialsFile == "" && c.CredentialsEnv == "" {
		add("no project ID: set it, or credentials (a file or an environment variable) with a project_id")
	}
	if strings.ContainsAny(c.ProjectID, "/?#% \t\n") {
		add("project ID %q is not a project ID", c.ProjectID)
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

func hasPassword(u *url.Userinfo) bool {
	_, ok := u.Password()
	return ok
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL hides a password in raw, if raw is a URL with one.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// String describes c with a password in Endpoint redacted.
func (c Config) String() string {
	return fmt.Sprintf("fcmio.Config{Endpoint:%q ProjectID:%q CredentialsFile:%q CredentialsEnv:%q Concurrency:%d MaxAttempts:%d BaseBackoff:%v MaxBackoff:%v Timeout:%v MaxRetryAfter:%v}",
		redactURL(c.Endpoint), c.ProjectID, c.CredentialsFile, c.CredentialsEnv,
		c.Concurrency, c.MaxAttempts, c.BaseBackoff, c.MaxBackoff, c.Timeout, c.MaxRetryAfter)
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// LogValue makes slog log c as a group with a password in Endpoint
// redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", redactURL(c.Endpoint)),
		slog.String("project_id", c.ProjectID),
		slog.String("credentials_file", c.CredentialsFile),
		slog.String("credentials_env", c.CredentialsEnv),
		slog.Int("concurrency", c.Concurrency),
		slog.Int("max_attempts", c.MaxAttempts),
		slog.Duration("base_backoff", c.BaseBackoff),
		slog.Duration("max_backoff", c.MaxBackoff),
		slog.Duration("timeout", c.Timeout),
		slog.Duration("max_retry_after", c.MaxRetryAfter),
	)
}
