// Package apnsio sends notifications to Apple's Push Notification service
// through github.com/sideshow/apns2, over HTTP/2, with provider-token (.p8)
// or certificate auth.
//
// The pieces, one file each: Config (validated, printable with secrets
// redacted); BuildPayload and BuildNotification, pure functions from a
// pushflow.Notification to the APNs JSON payload and headers that check
// what APNs would reject before anything is sent; Classify, which says which
// APNs answers are worth a retry; and Client, which sends batches
// concurrently with bounded in-flight requests, retries transient failures
// with exponential backoff and full jitter (or APNs' Retry-After), and
// returns one Result per message, which says whether a failure is
// transient (Result.Retryable) and worth sending again later.
//
//	c, err := apnsio.NewClient(apnsio.Config{KeyFile: "AuthKey.p8", KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ"})
//	...
//	defer c.Close()
//	results := c.Send(ctx, []apnsio.Message{{Token: tok, Topic: "com.example.app", Notification: n}})
//
// Package apnsiotest is an APNs-protocol server to test against.
package apnsio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/internal/attempts"
	"github.com/pushflow/pushflow/internal/fanout"
	"github.com/pushflow/pushflow/internal/retry"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"
)

// Result is the outcome of one Message.
type Result struct {
	// Status is the HTTP status of the last answer; 0 when there was none
	// (not sent, or no response).
	Status int `json:"status"`
	// Reason is APNs' reason verbatim ("BadDeviceToken", "Unregistered",
	// ...), a reason of BuildNotification's checks ("PayloadTooLarge", ...)
	// or ReasonTimeout, ReasonTransportError, ReasonCanceled. "" when sent.
	Reason string `json:"reason,omitempty"`
	// ApnsID is the apns-id APNs answered.
	ApnsID string `json:"apns_id,omitempty"`
	// Attempts counts requests made; 0 when the message was rejected before
	// sending.
	Attempts int `json:"attempts"`
	// Outcome is pushflow.OutcomeSent or pushflow.OutcomeFailed.
	Outcome string `json:"outcome"`
	// Unregistered is true for a 410 answer: the token is no longer valid
	// and the caller removes it.
	Unregistered bool `json:"unregistered,omitempty"`
	// Error details a failure without an APNs reason (a transport error, a
	// rejected message), for logs. Never holds credentials.
	Error string `json:"error,omitempty"`
	// Latency runs from the start of the first attempt (or the check that
	// rejected the message) to the result, backoffs included.
	Latency time.Duration `json:"latency"`
	// Retryable is true when Outcome is failed for a transient reason (429,
	// 5xx, TooManyRequests, ServiceUnavailable, Shutdown, ..., Timeout,
	// TransportError; see Classify) after the Client's attempts: the
	// notification may be sent again later. False for permanent failures
	// (400, 403, 410, a rejected message, Canceled before any answer).
	Retryable bool `json:"retryable,omitempty"`
	// RetryAfter is the Retry-After of the last answer (delay seconds or an
	// HTTP date, as a duration from when it came); 0 when none.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
}

// NewTransport returns the HTTP/2-only transport APNs needs, on net/http's
// own HTTP/2 (x/net's http2.Transport is deprecated): ping health checks
// like apns2's, and StrictMaxConcurrentStreams off, so past the server's
// stream limit it opens another connection instead of queueing
// (Config.Concurrency keeps us under the limit anyway).
func NewTransport(tlsCfg *tls.Config) *http.Transport {
	t := &http.Transport{
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: true,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: apns2.ReadIdleTimeout,
			PingTimeout:     15 * time.Second,
		},
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true)
	return t
}

// Client sends notifications to APNs. It keeps its HTTP/2 connections open
// across calls: create one per process (per worker, in a DoFn's Setup) and
// share it; it is safe for concurrent use.
type Client struct {
	cfg       Config
	apns      *apns2.Client
	transport *http.Transport
	sem       chan struct{} // bounds requests in flight to cfg.Concurrency
	gate      atomic.Pointer[connGate]

	// Injected by tests.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration // uniform in [0, d)
}

// NewClient validates cfg, loads its credentials and CA file, and returns a
// Client for cfg.Endpoint. It does not connect: the first request does,
// and requests made meanwhile wait for its connection to share it (see
// connGate).
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := rootsWithCA(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tlsCfg.RootCAs = pool
	}

	var client *apns2.Client
	if cfg.CertFile != "" {
		password, err := cfg.certPassword()
		if err != nil {
			return nil, err
		}
		cert, err := loadCertificate(cfg.CertFile, password)
		if err != nil {
			return nil, err
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
		client = apns2.NewClient(cert)
	} else {
		key, err := token.AuthKeyFromFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("apnsio: load key file %s: %w", cfg.KeyFile, err)
		}
		tok := &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
		if _, err := tok.Generate(); err != nil {
			return nil, fmt.Errorf("apnsio: sign a provider token with key %s: %w", cfg.KeyID, err)
		}
		client = apns2.NewTokenClient(tok)
	}
	client.Host = cfg.Endpoint

	transport := NewTransport(tlsCfg)
	// Each attempt has its own deadline (cfg.Timeout), so no client timeout.
	client.HTTPClient = &http.Client{Transport: &answerTransport{base: transport}}

	c := &Client{
		cfg:       cfg,
		apns:      client,
		transport: transport,
		sem:       make(chan struct{}, cfg.Concurrency),
		sleep:     retry.Sleep,
		jitter:    retry.FullJitter,
	}
	c.gate.Store(newConnGate())
	return c, nil
}

// connGate makes the concurrent first requests of a Client share one
// connection: net/http dials a connection per request while none is open,
// so the first request goes alone and the others wait for its answer (or
// for it to fail), by which time its HTTP/2 connection is there to share.
type connGate struct {
	first atomic.Bool
	ready chan struct{}
	once  sync.Once
}

func newConnGate() *connGate { return &connGate{ready: make(chan struct{})} }

// enter lets a request go: at once when the gate is open or for the
// request that opens it, which calls release after its answer; otherwise
// when it opens or ctx ends.
func (g *connGate) enter(ctx context.Context) (release func(), err error) {
	select {
	case <-g.ready:
		return nil, nil
	default:
	}
	if g.first.CompareAndSwap(false, true) {
		return func() { g.once.Do(func() { close(g.ready) }) }, nil
	}
	select {
	case <-g.ready:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answerKey carries an attempt's *answerState in its request's context.
type answerKey struct{}

// answerState is what answerTransport saw of an attempt's answer that
// apns2.Response does not hold.
type answerState struct {
	retryAfter time.Duration
}

// answerTransport records the Retry-After of answers to requests made with
// an answerState in their context.
type answerTransport struct {
	base http.RoundTripper
}

func (t *answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if st, ok := req.Context().Value(answerKey{}).(*answerState); ok && err == nil {
		st.retryAfter = attempts.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return resp, err
}

// rootsWithCA is the system's root CAs plus those in the PEM file path.
func rootsWithCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apnsio: read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("apnsio: CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// loadCertificate reads a .p12/.pfx file, or a PEM file with the
// certificate and its key. Errors never include the password.
func loadCertificate(path, password string) (tls.Certificate, error) {
	var cert tls.Certificate
	var err error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".p12", ".pfx":
		cert, err = certificate.FromP12File(path, password)
	default:
		cert, err = certificate.FromPemFile(path, password)
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("apnsio: load certificate %s: %w", path, err)
	}
	return cert, nil
}

// Close closes the Client's idle connections. A Client used after Close
// reconnects.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
	c.gate.Store(newConnGate())
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
	n, err := BuildNotification(m)
	if err != nil {
		reason := Reason(err)
		if reason == "" {
			reason = ReasonBadPayload
		}
		return Result{Reason: reason, Outcome: pushflow.OutcomeFailed, Error: err.Error(), Latency: time.Since(start)}
	}

	r, end := attempts.Run(ctx, c.policy(), Result{Reason: ReasonCanceled}, func(ctx context.Context) (Result, attempts.Try) {
		r, sent := c.attempt(ctx, n)
		retry, _ := Classify(r.Status, r.Reason)
		if retry {
			slog.DebugContext(ctx, "apnsio: transient failure", "apns_id", r.ApnsID, "status", r.Status, "reason", r.Reason, "retry_after", r.RetryAfter)
		}
		t := attempts.Try{Retry: retry, RetryAfter: r.RetryAfter}
		if sent {
			t.Requests = 1
		}
		return r, t
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

// attempt makes one request, and reports whether it did: ctx may end while
// it waits for the Client's first connection.
func (c *Client) attempt(ctx context.Context, n *apns2.Notification) (Result, bool) {
	release, err := c.gate.Load().enter(ctx)
	if err != nil {
		r := Result{Reason: ReasonCanceled, Error: fmt.Sprintf("apnsio: push: waiting for a connection: %v", err)}
		if !errors.Is(err, context.Canceled) {
			r.Reason = ReasonTimeout
		}
		return r, false
	}
	if release != nil {
		defer release()
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var ans answerState
	resp, err := c.apns.PushWithContext(context.WithValue(actx, answerKey{}, &ans), n)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL holds the device token: keep it out of logs
		}
		r := Result{Reason: ReasonTransportError, Error: fmt.Sprintf("apnsio: push: %v", err)}
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			r.Reason = ReasonCanceled
		case actx.Err() != nil:
			r.Reason = ReasonTimeout
		}
		return r, true
	}
	r := Result{Status: resp.StatusCode, Reason: resp.Reason, ApnsID: resp.ApnsID, RetryAfter: ans.retryAfter}
	if r.Status != http.StatusOK && r.Reason == "" {
		r.Reason = "HTTP" + strconv.Itoa(r.Status)
	}
	return r, true
}

// finish completes the last attempt's result with how the loop ended.
func (c *Client) finish(r Result, end attempts.End, start time.Time) Result {
	r.Attempts = end.Attempts
	r.Latency = time.Since(start)
	r.Outcome = pushflow.OutcomeFailed
	if r.Status == http.StatusOK {
		r.Outcome = pushflow.OutcomeSent
	}
	r.Unregistered = r.Status == http.StatusGone
	r.Retryable = r.Outcome == pushflow.OutcomeFailed && end.Retryable
	r.RetryAfter = end.RetryAfter
	switch {
	case end.OverBudget && r.Error == "":
		r.Error = fmt.Sprintf("apnsio: push: not retried after %d attempts: a wait of %v is over what is left of the %v wait budget", end.Attempts, end.Wait, c.cfg.MaxRetryAfter)
	case end.Err != nil && r.Error == "":
		r.Error = fmt.Sprintf("apnsio: push: stopped after %d attempts: %v", end.Attempts, end.Err)
	}
	return r
}
