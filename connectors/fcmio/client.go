// Package fcmio sends notifications to Android (and web) devices through
// Firebase Cloud Messaging's HTTP v1 API, with the firebase Admin SDK
// (firebase.google.com/go/v4/messaging).
//
// The pieces, one file each: Config (validated, printable with secrets
// redacted); BuildMessage, a pure function from a pushflow.Notification to
// the FCM message that checks what FCM would reject (reserved data keys, the
// 4096-byte payload limit, TTL) before anything is sent; Classify, which says
// which FCM answers are worth a retry; and Client, which sends batches
// concurrently with bounded in-flight requests, retries transient failures
// with exponential backoff and full jitter (or FCM's Retry-After), and
// returns one Result per message, which says whether a failure is transient
// (Result.Retryable) and worth sending again later. Under the SDK, attemptTransport keeps it
// from retrying on its own (it would, for 503s and transport errors), so that
// the Client's bounds and backoff are the only ones.
//
//	c, err := fcmio.NewClient(ctx, fcmio.Config{ProjectID: "my-project", CredentialsFile: "sa.json"})
//	...
//	defer c.Close()
//	results := c.Send(ctx, []fcmio.Message{{Token: tok, Notification: n, Priority: pushflow.PriorityNormal}})
//
// Package fcmiotest is an FCM-protocol server to test against.
package fcmio

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/internal/attempts"
	"github.com/pushflow/pushflow/internal/fanout"
	"github.com/pushflow/pushflow/internal/retry"
)

// Result is the outcome of one Message.
type Result struct {
	// Outcome is pushflow.OutcomeSent or pushflow.OutcomeFailed.
	Outcome string `json:"outcome"`
	// Reason is FCM's error code verbatim (UNREGISTERED, INVALID_ARGUMENT,
	// SENDER_ID_MISMATCH, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL,
	// THIRD_PARTY_AUTH_ERROR), else the Google RPC status of an answer
	// without one (UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, ...), else
	// "HTTP<status>"; a reason of BuildMessage's checks (INVALID_ARGUMENT,
	// "PayloadTooLarge"); or ReasonTimeout, ReasonTransportError,
	// ReasonCanceled. "" when sent.
	Reason string `json:"reason,omitempty"`
	// MessageID is the name FCM answered, "projects/{p}/messages/{id}".
	MessageID string `json:"message_id,omitempty"`
	// Status is the HTTP status of the last answer; 0 when there was none
	// (not sent, or no response).
	Status int `json:"status"`
	// Attempts counts requests made; 0 when the message was rejected before
	// sending.
	Attempts int `json:"attempts"`
	// Unregistered is true for UNREGISTERED: the token is no longer valid
	// and the caller removes it.
	Unregistered bool `json:"unregistered,omitempty"`
	// Error details a failure for logs: FCM's error message, or a transport
	// error. Never holds credentials or the registration token.
	Error string `json:"error,omitempty"`
	// Latency runs from the start of the first attempt (or the check that
	// rejected the message) to the result, backoffs included.
	Latency time.Duration `json:"latency"`
	// Retryable is true when Outcome is failed for a transient reason
	// (QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, RESOURCE_EXHAUSTED, HTTP 429
	// and 5xx, Timeout, TransportError; see Classify) after the Client's
	// attempts: the message may be sent again later. False for permanent
	// failures (UNREGISTERED, INVALID_ARGUMENT, SENDER_ID_MISMATCH, ...,
	// Canceled before any answer).
	Retryable bool `json:"retryable,omitempty"`
	// RetryAfter is the Retry-After of the last answer (delay seconds or an
	// HTTP date, as a duration from when it came); 0 when none.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
}

// Client sends messages to FCM. It keeps its connections open across calls:
// create one per process (per worker, in a DoFn's Setup) and share it; it
// is safe for concurrent use.
type Client struct {
	cfg       Config
	fcm       *messaging.Client
	transport *http.Transport
	sem       chan struct{} // bounds requests in flight to cfg.Concurrency

	// Injected by tests.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration // uniform in [0, d)
}

// NewClient validates cfg, loads its credentials (see Config) and returns a
// Client for cfg.Endpoint. It does not connect: the first request does
// (and fetches the first access token). ctx bounds the setup only.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = max(100, cfg.Concurrency)
	transport.MaxIdleConnsPerHost = cfg.Concurrency
	var rt http.RoundTripper = transport

	project := cfg.ProjectID
	if cfg.authenticated() {
		var err error
		if rt, project, err = authTransport(ctx, cfg, transport); err != nil {
			return nil, err
		}
	}

	opts := []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: &attemptTransport{base: rt}})}
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.endpoint()+"/v1"))
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project}, opts...)
	if err != nil {
		return nil, fmt.Errorf("fcmio: firebase app: %w", err)
	}
	fcm, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcmio: firebase messaging client: %w", err)
	}
	return &Client{
		cfg:       cfg,
		fcm:       fcm,
		transport: transport,
		sem:       make(chan struct{}, cfg.Concurrency),
		sleep:     retry.Sleep,
		jitter:    retry.FullJitter,
	}, nil
}

// authTransport wraps base with the access tokens of cfg's credentials
// (see Config) and returns the project: cfg's, else the key file's.
func authTransport(ctx context.Context, cfg Config, base http.RoundTripper) (http.RoundTripper, string, error) {
	project := cfg.ProjectID
	var creds *auth.Credentials
	if cfg.CredentialsFile != "" || cfg.CredentialsEnv != "" {
		var keyProject string
		var err error
		if cfg.CredentialsFile != "" {
			creds, keyProject, err = loadServiceAccountFile(cfg.CredentialsFile)
		} else {
			creds, keyProject, err = loadServiceAccountEnv(cfg.CredentialsEnv)
		}
		if err != nil {
			return nil, "", err
		}
		if project == "" {
			project = keyProject
		}
	} else {
		var err error
		if creds, err = credentials.DetectDefault(&credentials.DetectOptions{Scopes: []string{ScopeMessaging}}); err != nil {
			return nil, "", fmt.Errorf("fcmio: find Application Default Credentials (set a credentials file, or GOOGLE_APPLICATION_CREDENTIALS): %w", err)
		}
	}
	// One span per message would swamp a tracer: no telemetry.
	rt, err := htransport.NewTransport(ctx, base, option.WithAuthCredentials(creds), option.WithScopes(ScopeMessaging), option.WithTelemetryDisabled())
	if err != nil {
		return nil, "", fmt.Errorf("fcmio: credentials transport: %w", err)
	}
	return rt, project, nil
}

// loadServiceAccountFile reads a service-account JSON key file; see
// loadServiceAccount.
func loadServiceAccountFile(path string) (*auth.Credentials, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("fcmio: read credentials file: %w", err)
	}
	return loadServiceAccount(b, "credentials file "+path)
}

// loadServiceAccountEnv reads a service-account JSON key from the
// environment variable name; see loadServiceAccount.
func loadServiceAccountEnv(name string) (*auth.Credentials, string, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return nil, "", fmt.Errorf("fcmio: credentials environment variable %s is not set on this worker", name)
	}
	return loadServiceAccount([]byte(v), "credentials environment variable "+name)
}

// loadServiceAccount checks a service-account JSON key b from source (its
// type, project and private key) so that a bad key fails here, not at the
// first send. Errors never include the key's content.
func loadServiceAccount(b []byte, source string) (*auth.Credentials, string, error) {
	var key struct {
		Type       string `json:"type"`
		ProjectID  string `json:"project_id"`
		PrivateKey string `json:"private_key"`
	}
	if json.Unmarshal(b, &key) != nil {
		return nil, "", fmt.Errorf("fcmio: %s is not a service-account JSON key", source)
	}
	if key.Type != "service_account" {
		return nil, "", fmt.Errorf("fcmio: %s holds %q credentials, want a service-account key (\"type\": \"service_account\")", source, key.Type)
	}
	if key.ProjectID == "" {
		return nil, "", fmt.Errorf("fcmio: %s has no project_id", source)
	}
	if !validPrivateKey(key.PrivateKey) {
		return nil, "", fmt.Errorf("fcmio: %s: private_key is not a PEM RSA private key", source)
	}
	creds, err := credentials.NewCredentialsFromJSON(credentials.ServiceAccount, b, &credentials.DetectOptions{Scopes: []string{ScopeMessaging}})
	if err != nil {
		return nil, "", fmt.Errorf("fcmio: load %s: %w", source, err)
	}
	return creds, key.ProjectID, nil
}

// validPrivateKey reports whether s is a PEM PKCS#8 or PKCS#1 RSA private
// key, as Google issues them.
func validPrivateKey(s string) bool {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return false
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		_, ok := k.(*rsa.PrivateKey)
		return ok
	}
	_, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	return err == nil
}

// Close closes the Client's idle connections. A Client used after Close
// reconnects.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
}

// Send sends msgs concurrently, at most Config.Concurrency requests in
// flight over the whole Client, and returns their results in input order.
// It returns when every message has its result; canceling ctx ends retries
// and waits, failing what is left with ReasonCanceled.
func (c *Client) Send(ctx context.Context, msgs []Message) []Result {
	results := make([]Result, len(msgs))
	fanout.Each(len(msgs), c.cfg.Concurrency, func(i int) { results[i] = c.Push(ctx, msgs[i]) })
	return results
}

// Push sends one message, retrying as Send does, and returns its result.
func (c *Client) Push(ctx context.Context, m Message) Result {
	start := time.Now()
	msg, err := BuildMessage(m)
	if err != nil {
		reason := Reason(err)
		if reason == "" {
			reason = ReasonInvalidArgument
		}
		return Result{Reason: reason, Outcome: pushflow.OutcomeFailed, Error: err.Error(), Latency: time.Since(start)}
	}

	r, end := attempts.Run(ctx, c.policy(), Result{Reason: ReasonCanceled}, func(ctx context.Context) (Result, attempts.Try) {
		r, requests := c.attempt(ctx, msg)
		retry, _ := Classify(r.Reason)
		if retry {
			slog.DebugContext(ctx, "fcmio: transient failure", "status", r.Status, "reason", r.Reason, "retry_after", r.RetryAfter)
		}
		return r, attempts.Try{Retry: retry, RetryAfter: r.RetryAfter, Requests: requests}
	})
	return c.finish(r, end, start)
}

// policy is the attempts loop of c's Config.
func (c *Client) policy() attempts.Policy {
	return attempts.Policy{
		MaxAttempts: c.cfg.MaxAttempts,
		BaseBackoff: c.cfg.BaseBackoff,
		MaxBackoff:  c.cfg.MaxBackoff,
		MaxWait:     c.cfg.MaxRetryAfter,
		Sem:         c.sem,
		Sleep:       c.sleep,
		Jitter:      c.jitter,
	}
}

// attempt makes one SDK call: one request (see attemptTransport). It
// returns the result, with the answer's Retry-After, and the requests made.
func (c *Client) attempt(ctx context.Context, msg *messaging.Message) (Result, int) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	sctx, stop := context.WithCancelCause(actx)
	defer stop(nil)
	st := &attemptState{stop: stop}
	name, err := c.fcm.Send(withAttempt(sctx, st), msg)

	r := Result{Status: st.status, MessageID: name}
	switch {
	case err == nil:
		return r, st.requests
	case st.transportErr == nil && st.status != 0 && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
		// An answer: the SDK's error carries FCM's codes and message.
		r.Reason = reasonOf(err, st.status)
		r.Error = fmt.Sprintf("fcmio: send: %v", err)
	case errors.Is(ctx.Err(), context.Canceled):
		r.Status = 0
		r.Reason = ReasonCanceled
		r.Error = fmt.Sprintf("fcmio: send: %v", ctx.Err())
	case actx.Err() != nil:
		r.Status = 0
		r.Reason = ReasonTimeout
		r.Error = fmt.Sprintf("fcmio: send: no answer within %v", c.cfg.Timeout)
	case st.transportErr != nil:
		r.Status = 0
		r.Reason = ReasonTransportError
		var ae *auth.Error
		if errors.As(st.transportErr, &ae) && ae.Response != nil && !ae.Temporary() {
			r.Reason = ReasonUnauthenticated // the token endpoint refused the credentials
		}
		r.Error = fmt.Sprintf("fcmio: send: %v", st.transportErr)
	case st.requests == 0:
		// The SDK refused the message before sending; BuildMessage's
		// checks should have caught it.
		r.Reason = ReasonInvalidArgument
		r.Error = fmt.Sprintf("fcmio: send: %v", err)
	default:
		r.Reason = ReasonTransportError
		r.Error = fmt.Sprintf("fcmio: send: %v", err)
	}
	r.RetryAfter = st.retryAfter
	return r, st.requests
}

// finish completes the last attempt's result with how the loop ended.
func (c *Client) finish(r Result, end attempts.End, start time.Time) Result {
	r.Attempts = end.Attempts
	r.Latency = time.Since(start)
	r.Outcome = pushflow.OutcomeFailed
	if r.Reason == "" {
		r.Outcome = pushflow.OutcomeSent
	}
	r.Unregistered = r.Reason == ReasonUnregistered
	r.Retryable = r.Outcome == pushflow.OutcomeFailed && end.Retryable
	r.RetryAfter = end.RetryAfter
	var note string
	switch {
	case end.OverBudget:
		note = fmt.Sprintf("not retried after %d attempts: a wait of %v (Retry-After %v) is over what is left of the %v wait budget", end.Attempts, end.Wait, end.RetryAfter, c.cfg.MaxRetryAfter)
	case end.Err != nil:
		note = fmt.Sprintf("stopped after %d attempts: %v", end.Attempts, end.Err)
	}
	switch {
	case note == "":
	case r.Error == "":
		r.Error = "fcmio: send: " + note
	default:
		r.Error += "; " + note
	}
	return r
}
