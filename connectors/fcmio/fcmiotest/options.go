package fcmiotest

import (
	"fmt"
	"time"
)

// Defaults of the options below.
const (
	// DefaultRecordLimit is how many accepted messages Received keeps.
	DefaultRecordLimit = 100_000
	// DefaultTokenCountLimit is how many distinct registration tokens
	// CountByToken tracks.
	DefaultTokenCountLimit = 1_000_000
	// DefaultRetryAfter is the Retry-After header of FailNext's 429 and 503
	// answers, in whole seconds as FCM sends it.
	DefaultRetryAfter = time.Second
)

// Option configures a Server.
type Option func(*options)

type options struct {
	auth            bool
	latency         time.Duration
	retryAfter      time.Duration
	recordLimit     int
	tokenCountLimit int
	projects        map[string]bool // accepted projects; nil accepts all
	addr            string
	err             error
}

func defaultOptions() options {
	return options{
		retryAfter:      DefaultRetryAfter,
		recordLimit:     DefaultRecordLimit,
		tokenCountLimit: DefaultTokenCountLimit,
		addr:            "127.0.0.1:0",
	}
}

// WithAuth makes the server require OAuth 2 access tokens, as FCM does:
// "authorization: Bearer <token>" with a token the server's /token endpoint
// issued for a service account made by Server.ServiceAccount, and for the
// project in the URL. Sends without one are answered 401 UNAUTHENTICATED;
// with a token of another project, 403 PERMISSION_DENIED. Without WithAuth
// the server ignores the authorization header, for clients made with
// option.WithoutAuthentication.
func WithAuth() Option {
	return func(o *options) { o.auth = true }
}

// WithProjects restricts the projects the server knows to these IDs: sends
// to another project are answered 404 NOT_FOUND (without an FcmError
// detail), as FCM answers an unknown project. By default every project
// exists.
func WithProjects(ids ...string) Option {
	return func(o *options) {
		if o.projects == nil {
			o.projects = map[string]bool{}
		}
		for _, id := range ids {
			o.projects[id] = true
		}
	}
}

// WithLatency delays every send response by d (default 0). SetLatency
// changes it on a running server.
func WithLatency(d time.Duration) Option {
	return func(o *options) { o.latency = d }
}

// WithRetryAfter sets the Retry-After header of the 429 and 503 answers
// FailNext injects (default DefaultRetryAfter), rounded up to whole seconds.
// Zero sends none.
func WithRetryAfter(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.setErr(fmt.Errorf("fcmiotest: WithRetryAfter(%v): must not be negative", d))
			return
		}
		o.retryAfter = d
	}
}

// WithRecordLimit sets how many accepted messages Received keeps (default
// DefaultRecordLimit); counts are kept whatever the limit. Zero keeps none.
func WithRecordLimit(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.setErr(fmt.Errorf("fcmiotest: WithRecordLimit(%d): must not be negative", n))
			return
		}
		o.recordLimit = n
	}
}

// WithTokenCountLimit sets how many distinct registration tokens
// CountByToken tracks (default DefaultTokenCountLimit). Tokens first seen
// beyond the limit are counted by Count only.
func WithTokenCountLimit(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.setErr(fmt.Errorf("fcmiotest: WithTokenCountLimit(%d): must not be negative", n))
			return
		}
		o.tokenCountLimit = n
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
