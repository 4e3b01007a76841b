package fcmio

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
	"github.com/pushflow/pushflow/internal/retry"
)

const testProject = "demo-project"

// env is an fcmiotest server and a Config to reach it.
type env struct {
	srv *fcmiotest.Server
	cfg Config // no auth, fast backoff
}

func newEnv(t testing.TB, opts ...fcmiotest.Option) *env {
	t.Helper()
	srv, err := fcmiotest.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &env{srv: srv, cfg: Config{
		Endpoint: srv.URL(), ProjectID: testProject,
		BaseBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 10 * time.Second,
	}}
}

func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewClient(%v) = %v", cfg, err)
	}
	t.Cleanup(c.Close)
	return c
}

// recordSleeps makes c record its waits instead of sleeping.
func recordSleeps(c *Client) func() []time.Duration {
	var mu sync.Mutex
	var sleeps []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		sleeps = append(sleeps, d)
		return ctx.Err()
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		s := sleeps
		sleeps = nil
		return s
	}
}

func msg(tok string) Message {
	return Message{Token: tok, Notification: pushflow.Notification{Title: "T", Body: "B"}}
}

// ignoreVolatile compares Results without their latency, message ID and
// error text.
var ignoreVolatile = cmpopts.IgnoreFields(Result{}, "Latency", "MessageID", "Error")

func TestSendDeliversMessage(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	m := Message{
		Token: fcmiotest.Token(1), Priority: pushflow.PriorityBulk, TTL: time.Hour,
		Notification: pushflow.Notification{Title: "Goal", Body: "1-0", Sound: "default", Badge: 2, HasBadge: true,
			CollapseID: "score", Data: map[string]string{"url": "https://x/m?id=7&tab=<live>"}},
	}
	silent := Message{Token: fcmiotest.Token(2), Notification: pushflow.Notification{ContentAvailable: true, Data: map[string]string{"sync": "1"}}}
	got := c.Send(context.Background(), []Message{m, silent})

	want := []Result{
		{Outcome: pushflow.OutcomeSent, Status: 200, Attempts: 1},
		{Outcome: pushflow.OutcomeSent, Status: 200, Attempts: 1},
	}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Send() (-want +got):\n%s", diff)
	}
	rec := e.srv.Received()
	if len(rec) != 2 {
		t.Fatalf("server received %d messages, want 2", len(rec))
	}
	byToken := map[string]fcmiotest.Message{rec[0].Token: rec[0], rec[1].Token: rec[1]}
	for i, in := range []Message{m, silent} {
		r := byToken[in.Token]
		if got[i].MessageID != r.Name || !strings.HasPrefix(r.Name, "projects/"+testProject+"/messages/") {
			t.Errorf("Result %d MessageID = %q, server answered %q", i, got[i].MessageID, r.Name)
		}
		// What arrived is what BuildMessage built.
		built, err := BuildMessage(in)
		if err != nil {
			t.Fatal(err)
		}
		var arrived messaging.Message
		if err := json.Unmarshal(r.Raw, &arrived); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(built, &arrived); diff != "" {
			t.Errorf("message %d on the wire (-built +arrived):\n%s", i, diff)
		}
	}
	if r := byToken[m.Token]; r.AndroidPriority != "normal" || r.TTL != "3600s" || r.CollapseKey != "score" || r.Title != "Goal" {
		t.Errorf("server received %+v, want priority normal, ttl 3600s, collapse key score, title Goal", r)
	}
	if r := byToken[silent.Token]; r.Title != "" || r.Data["sync"] != "1" || r.AndroidPriority != "high" {
		t.Errorf("server received %+v, want a high-priority data message", r)
	}
}

func TestSendOutcomes(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	sleeps := recordSleeps(c)

	failed := func(status int, reason string, attempts int) Result {
		retry, _ := Classify(reason)
		return Result{Outcome: pushflow.OutcomeFailed, Status: status, Reason: reason, Attempts: attempts, Unregistered: reason == "UNREGISTERED",
			Retryable: retry && attempts > 0}
	}
	sent := func(attempts int) Result {
		return Result{Outcome: pushflow.OutcomeSent, Status: 200, Attempts: attempts}
	}
	withRetryAfter := func(r Result) Result { r.RetryAfter = fcmiotest.DefaultRetryAfter; return r }
	tests := []struct {
		name         string
		setup        func(tok string)
		edit         func(*Message)
		want         Result
		wantRequests int64
		wantSleeps   []time.Duration // nil: any jittered backoff, one per retry
	}{
		{"sent", nil, nil, sent(1), 1, nil},
		{"UNREGISTERED", func(tok string) { e.srv.Unregister(tok) }, nil, failed(404, "UNREGISTERED", 1), 1, nil},
		{"INVALID_ARGUMENT bad token", nil, func(m *Message) { m.Token = "abc" }, failed(400, "INVALID_ARGUMENT", 1), 1, nil},
		{"INVALID_ARGUMENT injected", func(string) { e.srv.FailNext(1, 400, fcmiotest.CodeInvalidArgument) }, nil, failed(400, "INVALID_ARGUMENT", 1), 1, nil},
		{"SENDER_ID_MISMATCH", func(tok string) { e.srv.BindToken(tok, "other-project") }, nil, failed(403, "SENDER_ID_MISMATCH", 1), 1, nil},
		{"THIRD_PARTY_AUTH_ERROR", func(string) { e.srv.FailNext(1, 401, fcmiotest.CodeThirdPartyAuthError) }, nil, failed(401, "THIRD_PARTY_AUTH_ERROR", 1), 1, nil},
		{"NOT_FOUND without FCM code", func(string) { e.srv.FailNext(1, 404, "") }, nil, failed(404, "NOT_FOUND", 1), 1, nil},
		{"PERMISSION_DENIED without FCM code", func(string) { e.srv.FailNext(1, 403, "") }, nil, failed(403, "PERMISSION_DENIED", 1), 1, nil},
		{"QUOTA_EXCEEDED then sent, after Retry-After", func(string) { e.srv.FailNext(1, 429, fcmiotest.CodeQuotaExceeded) }, nil, sent(2), 2, []time.Duration{time.Second}},
		{"UNAVAILABLE twice then sent", func(string) { e.srv.FailNext(2, 503, fcmiotest.CodeUnavailable) }, nil, sent(3), 3, []time.Duration{time.Second, time.Second}},
		{"INTERNAL then sent", func(string) { e.srv.FailNext(1, 500, fcmiotest.CodeInternal) }, nil, sent(2), 2, nil},
		{"502 without Google error then sent", func(string) { e.srv.FailNext(1, 502, "") }, nil, sent(2), 2, nil},
		{"UNAVAILABLE beyond max attempts", func(string) { e.srv.FailNext(10, 503, fcmiotest.CodeUnavailable) }, nil, withRetryAfter(failed(503, "UNAVAILABLE", 4)), 4, nil},
		{"QUOTA_EXCEEDED beyond max attempts", func(string) { e.srv.FailNext(10, 429, fcmiotest.CodeQuotaExceeded) }, nil, withRetryAfter(failed(429, "QUOTA_EXCEEDED", 4)), 4, nil},
		{"INTERNAL beyond max attempts", func(string) { e.srv.FailNext(10, 500, fcmiotest.CodeInternal) }, nil, failed(500, "INTERNAL", 4), 4, nil},
		{"payload at the limit sent", nil, func(m *Message) {
			m.Notification = pushflow.Notification{Data: map[string]string{"k": strings.Repeat("x", MaxPayloadSize-1)}}
		}, sent(1), 1, nil},
		{"PayloadTooLarge never sent", nil, func(m *Message) { m.Notification.Body = strings.Repeat("x", MaxPayloadSize) }, failed(0, "PayloadTooLarge", 0), 0, nil},
		{"reserved data key never sent", nil, func(m *Message) { m.Notification.Data = map[string]string{"google.x": "1"} }, failed(0, "INVALID_ARGUMENT", 0), 0, nil},
		{"bad priority never sent", nil, func(m *Message) { m.Priority = "urgent" }, failed(0, "INVALID_ARGUMENT", 0), 0, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.srv.Reset()
			sleeps()
			tok := fcmiotest.Token(100 + i)
			if tt.setup != nil {
				tt.setup(tok)
			}
			m := msg(tok)
			if tt.edit != nil {
				tt.edit(&m)
			}
			got := c.Send(context.Background(), []Message{m})
			if diff := cmp.Diff([]Result{tt.want}, got, ignoreVolatile); diff != "" {
				t.Errorf("Send(%s) (-want +got):\n%s", tt.name, diff)
			}
			if r := e.srv.Requests(); r != tt.wantRequests {
				t.Errorf("server got %d requests, want %d (no retries by the SDK itself)", r, tt.wantRequests)
			}
			slept := sleeps()
			if tt.want.Attempts > 0 && len(slept) != tt.want.Attempts-1 {
				t.Errorf("slept %v, want %d waits (between attempts)", slept, tt.want.Attempts-1)
			}
			if tt.wantSleeps != nil {
				if diff := cmp.Diff(tt.wantSleeps, slept); diff != "" {
					t.Errorf("waits (-want +got):\n%s", diff)
				}
			}
			wantCount := 0
			if tt.want.Outcome == pushflow.OutcomeSent {
				wantCount = 1
			}
			if n := e.srv.CountByToken(m.Token); n != wantCount {
				t.Errorf("CountByToken() = %d, want %d", n, wantCount)
			}
			if got[0].Outcome == pushflow.OutcomeFailed && got[0].Error == "" {
				t.Errorf("Send() = %+v, want an Error for a failure", got[0])
			}
			if strings.Contains(got[0].Error, tok) {
				t.Errorf("Result.Error = %q, shows the registration token", got[0].Error)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	e := newEnv(t, fcmiotest.WithRetryAfter(3*time.Second))
	c := newTestClient(t, e.cfg)
	sleeps := recordSleeps(c)

	// 503 with Retry-After: honoured by the Client, not by the SDK (which
	// would wait and retry on its own).
	e.srv.FailNext(2, 503, fcmiotest.CodeUnavailable)
	got := c.Push(context.Background(), msg(fcmiotest.Token(1)))
	if got.Outcome != pushflow.OutcomeSent || got.Attempts != 3 || e.srv.Requests() != 3 {
		t.Errorf("Push() = %+v with %d requests, want sent after 3 attempts and 3 requests", got, e.srv.Requests())
	}
	if diff := cmp.Diff([]time.Duration{3 * time.Second, 3 * time.Second}, sleeps()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}

	// A Retry-After over what is left of MaxRetryAfter ends the retries
	// at once: retryable, with the server's Retry-After for the caller.
	e.srv.Reset()
	e.srv.SetRetryAfter(DefaultMaxRetryAfter + time.Second)
	e.srv.FailNext(2, 429, fcmiotest.CodeQuotaExceeded)
	start := time.Now()
	got = c.Push(context.Background(), msg(fcmiotest.Token(2)))
	want := Result{Outcome: pushflow.OutcomeFailed, Status: 429, Reason: "QUOTA_EXCEEDED", Attempts: 1,
		Retryable: true, RetryAfter: DefaultMaxRetryAfter + time.Second}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() with a long Retry-After (-want +got):\n%s", diff)
	}
	if !strings.Contains(got.Error, "wait budget") || len(sleeps()) != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("Push() = %+v, want no wait and an error naming the wait budget", got)
	}
}

func TestRetryBackoff(t *testing.T) {
	e := newEnv(t, fcmiotest.WithRetryAfter(0))
	cfg := e.cfg
	cfg.BaseBackoff, cfg.MaxBackoff, cfg.MaxAttempts = 100*time.Millisecond, 250*time.Millisecond, 5
	c := newTestClient(t, cfg)
	var sleeps, caps []time.Duration
	c.jitter = func(d time.Duration) time.Duration { caps = append(caps, d); return d / 2 }
	c.sleep = func(_ context.Context, d time.Duration) error { sleeps = append(sleeps, d); return nil }

	e.srv.FailNext(4, 503, fcmiotest.CodeUnavailable)
	got := c.Push(context.Background(), msg(fcmiotest.Token(1)))
	if got.Outcome != pushflow.OutcomeSent || got.Attempts != 5 {
		t.Errorf("Push() = %+v, want sent after 5 attempts", got)
	}
	wantCaps := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond}
	if diff := cmp.Diff(wantCaps, caps); diff != "" {
		t.Errorf("backoff caps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 125 * time.Millisecond, 125 * time.Millisecond}, sleeps); diff != "" {
		t.Errorf("sleeps, jitter halving (-want +got):\n%s", diff)
	}
}

func TestCancelStopsRetries(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sleep = func(ctx context.Context, d time.Duration) error {
		cancel()
		return retry.Sleep(ctx, time.Hour)
	}
	e.srv.FailNext(100, 503, fcmiotest.CodeUnavailable)
	got := c.Send(ctx, []Message{msg(fcmiotest.Token(1)), msg(fcmiotest.Token(2))})
	for i, r := range got {
		if r.Outcome != pushflow.OutcomeFailed || r.Attempts > 1 || r.Unregistered {
			t.Errorf("Send() result %d = %+v, want failed after at most 1 attempt", i, r)
		}
		if r.Reason != "UNAVAILABLE" && r.Reason != ReasonCanceled || !strings.Contains(r.Error, "context canceled") {
			t.Errorf("Send() result %d = %+v, want reason UNAVAILABLE (the last answer) or Canceled, and a context canceled error", i, r)
		}
	}
	if r := e.srv.Requests(); r > 2 {
		t.Errorf("server got %d requests, want at most 2 (no retries after cancel)", r)
	}

	// Canceled before sending: nothing reaches the server.
	e.srv.Reset()
	got = c.Send(ctx, []Message{msg(fcmiotest.Token(3))})
	want := []Result{{Reason: ReasonCanceled, Outcome: pushflow.OutcomeFailed}}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Send(canceled ctx) (-want +got):\n%s", diff)
	}
	if r := e.srv.Requests(); r != 0 {
		t.Errorf("server got %d requests after cancel, want 0", r)
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, fcmiotest.WithLatency(2*time.Second))
	cfg := e.cfg
	cfg.Timeout, cfg.MaxAttempts = 50*time.Millisecond, 2
	c := newTestClient(t, cfg)
	start := time.Now()
	got := c.Push(context.Background(), msg(fcmiotest.Token(1)))
	want := Result{Reason: ReasonTimeout, Attempts: 2, Outcome: pushflow.OutcomeFailed, Retryable: true}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() to a slow server (-want +got):\n%s", diff)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Push() took %v, want about 2 × 50ms (no SDK retries)", el)
	}
}

func TestTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newTestClient(t, Config{Endpoint: "http://" + addr, ProjectID: testProject, MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	start := time.Now()
	got := c.Push(context.Background(), msg(fcmiotest.Token(1)))
	want := Result{Reason: ReasonTransportError, Attempts: 3, Outcome: pushflow.OutcomeFailed, Retryable: true}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() to a closed port (-want +got):\n%s", diff)
	}
	if !strings.Contains(got.Error, "refused") {
		t.Errorf("Result.Error = %q, want the connection error", got.Error)
	}
	// The SDK alone would retry a transport error 4 times over 7s.
	if el := time.Since(start); el > time.Second {
		t.Errorf("Push() took %v, want 3 quick attempts", el)
	}
}

// writeServiceAccount writes a key file of srv's service account for
// project.
func writeServiceAccount(t *testing.T, srv *fcmiotest.Server, project string) (path, email string) {
	t.Helper()
	key, err := srv.ServiceAccount(project)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, key, 0o600); err != nil {
		t.Fatal(err)
	}
	var f struct {
		ClientEmail string `json:"client_email"`
	}
	json.Unmarshal(key, &f)
	return path, f.ClientEmail
}

func TestServiceAccountAuth(t *testing.T) {
	e := newEnv(t, fcmiotest.WithAuth())
	saFile, email := writeServiceAccount(t, e.srv, testProject)

	// The project comes from the key file.
	cfg := e.cfg
	cfg.ProjectID, cfg.CredentialsFile = "", saFile
	c := newTestClient(t, cfg)
	msgs := make([]Message, 20)
	for i := range msgs {
		msgs[i] = msg(fcmiotest.Token(i))
	}
	for i, r := range c.Send(context.Background(), msgs) {
		if r.Outcome != pushflow.OutcomeSent {
			t.Fatalf("Send() result %d = %+v, want sent", i, r)
		}
	}
	for _, r := range e.srv.Received() {
		if r.ClientEmail != email || r.Project != testProject {
			t.Fatalf("server received %+v, want it from %s to %s", r, email, testProject)
		}
	}
	if n := e.srv.TokensIssued(); n != 1 {
		t.Errorf("TokensIssued() = %d, want 1 (one cached access token)", n)
	}

	// The same key from an environment variable.
	key, err := os.ReadFile(saFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FCMIO_TEST_CREDENTIALS", string(key))
	envCfg := e.cfg
	envCfg.ProjectID, envCfg.CredentialsEnv = "", "FCMIO_TEST_CREDENTIALS"
	if r := newTestClient(t, envCfg).Push(context.Background(), msg(fcmiotest.Token(1))); r.Outcome != pushflow.OutcomeSent {
		t.Errorf("Push() with CredentialsEnv = %+v, want sent", r)
	}

	tests := []struct {
		name         string
		cfg          func() Config
		wantStatus   int
		wantReason   string
		wantRequests int64
	}{
		{"no credentials", func() Config { return e.cfg }, 401, "UNAUTHENTICATED", 1},
		{"another project's account", func() Config {
			f, _ := writeServiceAccount(t, e.srv, "other-project")
			c := e.cfg
			c.CredentialsFile = f
			return c
		}, 403, "PERMISSION_DENIED", 1},
		{"an account the token endpoint refuses", func() Config {
			other := newEnv(t)
			f, _ := writeServiceAccount(t, other.srv, testProject)
			b, _ := os.ReadFile(f)
			os.WriteFile(f, []byte(strings.Replace(string(b), other.srv.URL(), e.srv.URL(), 1)), 0o600)
			c := e.cfg
			c.CredentialsFile = f
			return c
		}, 0, "UNAUTHENTICATED", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.srv.Reset()
			c := newTestClient(t, tt.cfg())
			got := c.Push(context.Background(), msg(fcmiotest.Token(1)))
			want := Result{Outcome: pushflow.OutcomeFailed, Status: tt.wantStatus, Reason: tt.wantReason, Attempts: 1}
			if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
				t.Errorf("Push() (-want +got):\n%s", diff)
			}
			if n := e.srv.Requests(); n != tt.wantRequests {
				t.Errorf("server got %d send requests, want %d", n, tt.wantRequests)
			}
			if strings.Contains(got.Error, "PRIVATE KEY") {
				t.Errorf("Result.Error = %q, shows key material", got.Error)
			}
		})
	}
}

func TestApplicationDefaultCredentials(t *testing.T) {
	e := newEnv(t, fcmiotest.WithAuth())
	saFile, _ := writeServiceAccount(t, e.srv, testProject)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", saFile)
	// Google's endpoint: NewClient only finds the credentials, nothing is sent.
	c, err := NewClient(context.Background(), Config{ProjectID: testProject})
	if err != nil {
		t.Fatalf("NewClient() with Application Default Credentials = %v", err)
	}
	c.Close()

	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
	if _, err := NewClient(context.Background(), Config{ProjectID: testProject}); err == nil || !strings.Contains(err.Error(), "Application Default Credentials") {
		t.Errorf("NewClient() without Application Default Credentials = %v, want an error naming them", err)
	}
}

func TestNewClientErrors(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-not-really"
	notJSON := write("notjson.json", secret)
	noProject := write("noproject.json", `{"type":"service_account","private_key":"`+secret+`"}`)
	badKey := write("badkey.json", `{"type":"service_account","project_id":"p","private_key_id":"k","client_email":"a@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\n`+secret+`\n-----END PRIVATE KEY-----\n","token_uri":"`+e.srv.URL()+`/token"}`)
	userCreds := write("user.json", `{"type":"authorized_user","project_id":"p","client_id":"x","client_secret":"`+secret+`","refresh_token":"r"}`)

	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"invalid config", Config{Endpoint: e.srv.URL()}, "no project ID"},
		{"missing credentials file", Config{Endpoint: e.srv.URL(), CredentialsFile: filepath.Join(dir, "nope.json")}, "read credentials file"},
		{"credentials file not JSON", Config{Endpoint: e.srv.URL(), CredentialsFile: notJSON}, "not a service-account JSON key"},
		{"credentials file without project", Config{Endpoint: e.srv.URL(), CredentialsFile: noProject}, "no project_id"},
		{"credentials of another type", Config{Endpoint: e.srv.URL(), CredentialsFile: userCreds}, "want a service-account key"},
		{"unparsable private key", Config{Endpoint: e.srv.URL(), CredentialsFile: badKey}, "private_key is not a PEM RSA private key"},
		{"credentials env unset", Config{Endpoint: e.srv.URL(), CredentialsEnv: "FCMIO_TEST_NO_SUCH_VARIABLE"}, "FCMIO_TEST_NO_SUCH_VARIABLE is not set"},
		{"credentials env not JSON", Config{Endpoint: e.srv.URL(), CredentialsEnv: "FCMIO_TEST_NOT_JSON"}, "credentials environment variable FCMIO_TEST_NOT_JSON is not a service-account JSON key"},
	}
	t.Setenv("FCMIO_TEST_NOT_JSON", secret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(context.Background(), tt.cfg)
			if err == nil {
				c.Close()
				t.Fatalf("NewClient(%v) = nil error, want one about %q", tt.cfg, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "fcmio: ") {
				t.Errorf("NewClient(%v) = %v, want an fcmio: error about %q", tt.cfg, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret[:20]) {
				t.Errorf("NewClient(%v) = %v, shows key material", tt.cfg, err)
			}
		})
	}
}

func TestSendConcurrent(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.Concurrency = 32
	c := newTestClient(t, cfg)
	const n = 1000
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = msg(fcmiotest.Token(i))
		msgs[i].Notification.Data = map[string]string{"i": fmt.Sprint(i)}
	}
	got := c.Send(context.Background(), msgs)
	if len(got) != n {
		t.Fatalf("Send(%d messages) returned %d results", n, len(got))
	}
	names := map[string]fcmiotest.Message{}
	for _, r := range e.srv.Received() {
		names[r.Name] = r
	}
	for i, r := range got {
		if r.Outcome != pushflow.OutcomeSent || r.Attempts != 1 {
			t.Fatalf("Send() result %d = %+v, want sent once", i, r)
		}
		if rec := names[r.MessageID]; rec.Token != msgs[i].Token || rec.Data["i"] != fmt.Sprint(i) {
			t.Fatalf("Send() result %d names %q, which the server received for %+v (want input order)", i, r.MessageID, rec)
		}
		if cnt := e.srv.CountByToken(msgs[i].Token); cnt != 1 {
			t.Fatalf("CountByToken(message %d) = %d, want 1", i, cnt)
		}
	}
	if cnt := e.srv.Count(); cnt != n || e.srv.Requests() != n {
		t.Errorf("server Count(), Requests() = %d, %d, want %d", cnt, e.srv.Requests(), n)
	}
	if m := e.srv.MaxInFlight(); m > 32 {
		t.Errorf("server saw %d requests in flight, want at most 32", m)
	}
	// A connection returns to the pool a little after its response is read,
	// so a few more than Concurrency may open; not one per message.
	if n := e.srv.Connections(); n > 3*32 {
		t.Errorf("server accepted %d connections for %d messages, want them reused (at most 3 × Concurrency)", n, len(msgs))
	}
}

func TestConcurrencyBound(t *testing.T) {
	e := newEnv(t, fcmiotest.WithLatency(5*time.Millisecond))
	cfg := e.cfg
	cfg.Concurrency = 3
	c := newTestClient(t, cfg)
	// Two Sends at once share the Client's bound.
	var wg sync.WaitGroup
	for s := range 2 {
		wg.Go(func() {
			msgs := make([]Message, 20)
			for i := range msgs {
				msgs[i] = msg(fcmiotest.Token(s*100 + i))
			}
			for i, r := range c.Send(context.Background(), msgs) {
				if r.Outcome != pushflow.OutcomeSent {
					t.Errorf("Send %d result %d = %+v, want sent", s, i, r)
				}
			}
		})
	}
	wg.Wait()
	if m := e.srv.MaxInFlight(); m > 3 || m < 2 {
		t.Errorf("server saw %d requests in flight, want 2..3 (Concurrency 3)", m)
	}
}

func TestSendEmpty(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	if got := c.Send(context.Background(), nil); len(got) != 0 {
		t.Errorf("Send(nil) = %v, want no results", got)
	}
}
