// Package fcmiotest is a Firebase Cloud Messaging test double: an HTTP
// server that speaks the FCM HTTP v1 API (POST
// /v1/projects/{project}/messages:send, Google-style JSON errors with FcmError
// details, OAuth 2 service-account tokens), so that tests, benchmarks and the
// embedded dev stack exercise the real firebase.google.com/go/v4/messaging
// client over the real protocol.
//
//	srv, err := fcmiotest.NewServer()
//	...
//	defer srv.Close()
//	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: "demo"}, srv.ClientOptions()...)
//	client, err := app.Messaging(ctx)
//	id, err := client.Send(ctx, &messaging.Message{Token: fcmiotest.Token(1), Data: map[string]string{"k": "v"}})
//
// ClientOptions is option.WithEndpoint(srv.URL()+"/v1") and
// option.WithoutAuthentication(). With WithAuth the server requires OAuth 2
// access tokens instead, which it issues itself: ServiceAccount makes a
// service-account key file whose token_uri is the server's /token endpoint.
//
// The server checks a send the way FCM documents it and answers with FCM's
// HTTP statuses, Google RPC statuses and FcmError codes, in this order:
// 404 NOT_FOUND (not POST .../messages:send, or a project unknown under
// WithProjects); authentication under WithAuth (401 UNAUTHENTICATED, 403
// PERMISSION_DENIED); FailNext's and Control's injected answers; 400 INVALID_ARGUMENT for a
// body that is not the JSON of a SendMessageRequest (no FcmError detail,
// as FCM), then with an FcmError INVALID_ARGUMENT detail: not exactly one of
// token, topic and condition; a malformed registration token or topic; a
// reserved data key ("from", "message_type", and keys starting with "google"
// or "gcm"); an Android priority other than normal and high; an Android TTL
// that is not "<seconds>s" of at most 28 days; and "message too big" when the
// payload is over MaxPayloadSize bytes (MaxTopicPayloadSize to a topic or
// condition; see PayloadSize). Then token state: 404 UNREGISTERED
// (Unregister), 403 SENDER_ID_MISMATCH (BindToken). A validate_only request
// that passes every check is answered with the name
// "projects/{p}/messages/fake_message_id" and not delivered; any other is
// accepted with a fresh "projects/{p}/messages/{id}".
//
// Tests inject failures with FailNext, Unregister and BindToken, program
// faults with Control (Unavailable and Throttle are ready-made ones), and
// read what was accepted with Count, CountByToken and Received. A Server is safe for
// concurrent use.
package fcmiotest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/api/option"
)

// Message is one message the server accepted.
type Message struct {
	Project   string // the project in the URL
	Token     string // message.token; "" for a topic or condition message
	Topic     string // message.topic
	Condition string // message.condition
	// Title and Body are message.notification's; "" for a data message.
	Title, Body string
	Data        map[string]string // message.data
	// Android fields, verbatim; "" when absent.
	AndroidPriority string // android.priority: "normal" or "high"
	TTL             string // android.ttl, as "<seconds>s"
	CollapseKey     string // android.collapse_key
	// Raw is the request's "message" object verbatim: unmarshal it into a
	// messaging.Message to compare with what was sent.
	Raw json.RawMessage
	// Name is the name answered, "projects/{p}/messages/{id}".
	Name string
	// ClientEmail is the service account the request authenticated as under
	// WithAuth; "" without.
	ClientEmail string
	Received    time.Time
}

// Server is a running FCM-protocol server on a loopback address.
type Server struct {
	hs       *httptest.Server
	opts     options
	serverID uint32 // makes message IDs differ between servers

	latency     atomic.Int64 // time.Duration
	retryAfter  atomic.Int64 // time.Duration
	requests    atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	conns       atomic.Int64
	seq         atomic.Uint64

	failNext atomic.Pointer[ControlFunc] // FailNext's control; nil when none
	ctlMu    sync.Mutex                  // serializes changes to ctl
	ctl      atomic.Pointer[controls]

	mu           sync.Mutex
	unregistered map[string]bool
	bound        map[string]string // token → project
	count        int64
	byToken      map[string]int
	records      []Message

	auth authState

	closeOnce sync.Once
}

// NewServer starts a server on 127.0.0.1 and a free port (see
// WithListenAddr), speaking plain HTTP/1.1.
func NewServer(opts ...Option) (*Server, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	s := &Server{
		opts:         o,
		serverID:     rand.Uint32(),
		unregistered: map[string]bool{},
		bound:        map[string]string{},
		byToken:      map[string]int{},
		auth:         newAuthState(),
	}
	s.latency.Store(int64(o.latency))
	s.retryAfter.Store(int64(o.retryAfter))
	s.ctl.Store(&controls{})

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("fcmiotest: listen on %s: %w", o.addr, err)
	}
	hs := httptest.NewUnstartedServer(s)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Config.ErrorLog = slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug)
	hs.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	hs.Start()
	s.hs = hs
	return s, nil
}

// Close stops the server, waiting for requests in progress. It may be called
// more than once.
func (s *Server) Close() {
	s.closeOnce.Do(s.hs.Close)
}

// URL is the server's base URL, "http://127.0.0.1:<port>". The FCM endpoint
// of the firebase SDK (option.WithEndpoint) is URL()+"/v1".
func (s *Server) URL() string { return s.hs.URL }

// ClientOptions are the options that point the firebase SDK at the server
// without authentication: pass them to firebase.NewApp. Under WithAuth, use
// option.WithEndpoint(URL()+"/v1") with a ServiceAccount key file instead.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(s.URL() + "/v1"), option.WithoutAuthentication()}
}

// SetLatency delays every later send response by d.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetRetryAfter changes the Retry-After of later injected 429 and 503
// answers (see WithRetryAfter).
func (s *Server) SetRetryAfter(d time.Duration) { s.retryAfter.Store(int64(max(d, 0))) }

// Unregister makes later sends to token fail with 404 UNREGISTERED, as for
// an app uninstalled or a token expired.
func (s *Server) Unregister(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered[token] = true
}

// BindToken makes token belong to project only: sends to it through
// another project fail with 403 SENDER_ID_MISMATCH.
func (s *Server) BindToken(token, project string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bound[token] = project
}

// FailNext makes the next n sends that pass authentication fail with the
// HTTP status, its Google RPC status (429 RESOURCE_EXHAUSTED, 500 INTERNAL,
// 503 UNAVAILABLE, 401 UNAUTHENTICATED, ...) and an FcmError detail with
// code (none when code is ""), whatever they carry: for QUOTA_EXCEEDED (429),
// INTERNAL (500), UNAVAILABLE (503) and THIRD_PARTY_AUTH_ERROR (401) tests.
// 429 and 503 answers carry a Retry-After header (see WithRetryAfter). It
// replaces a previous FailNext; it is a control (see Control) answering
// before the others.
func (s *Server) FailNext(n int, httpStatus int, code string) {
	if n <= 0 {
		s.failNext.Store(nil)
		return
	}
	fn := failNextFunc(n, httpStatus, code, func() time.Duration { return time.Duration(s.retryAfter.Load()) })
	s.failNext.Store(&fn)
}

// Count is the number of messages accepted for delivery (validate_only
// requests excluded).
func (s *Server) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// CountByToken is the number of messages accepted for token (see
// WithTokenCountLimit).
func (s *Server) CountByToken(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byToken[token]
}

// Requests is the number of send requests received, whatever their answer
// (token requests to /token are not counted).
func (s *Server) Requests() int64 { return s.requests.Load() }

// MaxInFlight is the largest number of send requests the server has
// handled at once.
func (s *Server) MaxInFlight() int64 { return s.maxInFlight.Load() }

// Connections is the number of connections the server has accepted: a
// client that reuses its connections opens about as many as it has requests
// in flight.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Received returns the accepted messages in arrival order, up to the record
// limit (see WithRecordLimit).
func (s *Server) Received() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.records...)
}

// Reset forgets accepted messages, every count (Count, CountByToken,
// Requests, MaxInFlight; not Connections), a pending FailNext and the
// control functions. Token state (Unregister, BindToken), service accounts
// and access tokens are kept.
func (s *Server) Reset() {
	s.failNext.Store(nil)
	s.ctlMu.Lock()
	s.ctl.Store(&controls{})
	s.ctlMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count = 0
	s.byToken = map[string]int{}
	s.records = nil
	s.requests.Store(0)
	s.maxInFlight.Store(0)
}
