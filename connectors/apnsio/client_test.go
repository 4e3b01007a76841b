package apnsio

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/internal/retry"
)

const (
	testTeam  = "TEAM123456"
	testTopic = "com.example.app"
)

// env is an apnsiotest server and the files a Client needs to reach it.
type env struct {
	srv    *apnsiotest.Server
	keyPEM []byte
	keyID  string
	cfg    Config // token auth, trusting the server's CA, fast backoff
}

func newEnv(t testing.TB, opts ...apnsiotest.Option) *env {
	t.Helper()
	keyPEM, keyID, err := apnsiotest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := apnsiotest.NewServer(append([]apnsiotest.Option{apnsiotest.WithP8(keyPEM, keyID, testTeam)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "AuthKey.p8")
	if err := srv.WriteCAFile(caFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, keyPEM: keyPEM, keyID: keyID, cfg: Config{
		Endpoint: srv.URL(), CAFile: caFile, KeyFile: keyFile, KeyID: keyID, TeamID: testTeam,
		BaseBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 10 * time.Second,
	}}
}

func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient(%v) = %v", cfg, err)
	}
	t.Cleanup(c.Close)
	return c
}

// devToken is the i-th test device token.
func devToken(i int) string { return fmt.Sprintf("%064x", i+1) }

func msg(tok string) Message {
	return Message{Token: tok, Topic: testTopic, Notification: pushflow.Notification{Title: "T", Body: "B"}}
}

// ignoreVolatile compares Results without their latency, apns-id and error
// text.
var ignoreVolatile = cmpopts.IgnoreFields(Result{}, "Latency", "ApnsID", "Error")

func TestSendDeliversEveryHeader(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	m := Message{
		Token: devToken(1), Topic: testTopic, Priority: pushflow.PriorityBulk, Expiration: exp, ID: "123e4567-e89b-12d3-a456-426614174000",
		Notification: pushflow.Notification{Title: "Goal", Body: "1-0", Sound: "default", Badge: 2, HasBadge: true,
			ThreadID: "match", CollapseID: "score", MutableContent: true, Data: map[string]string{"url": "https://x/m?id=7&tab=<live>"}},
	}
	got := c.Send(context.Background(), []Message{m, msg(devToken(2))})

	want := []Result{
		{Status: 200, ApnsID: m.ID, Attempts: 1, Outcome: pushflow.OutcomeSent},
		{Status: 200, Attempts: 1, Outcome: pushflow.OutcomeSent},
	}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Send() (-want +got):\n%s", diff)
	}
	if got[0].ApnsID != m.ID || len(got[1].ApnsID) != 36 {
		t.Errorf("Send() apns-ids = %q, %q, want the message's %q and a generated UUID", got[0].ApnsID, got[1].ApnsID, m.ID)
	}

	payload, err := BuildPayload(m.Notification)
	if err != nil {
		t.Fatal(err)
	}
	rec := e.srv.Received()
	if len(rec) != 2 {
		t.Fatalf("server received %d notifications, want 2", len(rec))
	}
	i := 0
	if rec[0].Token != m.Token {
		i = 1
	}
	wantRec := apnsiotest.Notification{
		Token: m.Token, Topic: testTopic, PushType: "alert", Priority: "5", Expiration: strconv.FormatInt(exp.Unix(), 10),
		CollapseID: "score", ApnsID: m.ID, Payload: payload, KeyID: e.keyID, TeamID: testTeam,
	}
	if diff := cmp.Diff(wantRec, rec[i], cmpopts.IgnoreFields(apnsiotest.Notification{}, "Received")); diff != "" {
		t.Errorf("server received (-want +got):\n%s", diff)
	}
	if rec[1-i].ApnsID != got[1].ApnsID {
		t.Errorf("Result.ApnsID = %q, server answered %q", got[1].ApnsID, rec[1-i].ApnsID)
	}
}

func TestSendStatuses(t *testing.T) {
	e := newEnv(t, apnsiotest.WithTopics(testTopic, "com.example.other"))
	c := newTestClient(t, e.cfg)
	var mu sync.Mutex
	var sleeps []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		sleeps = append(sleeps, d)
		return ctx.Err()
	}

	failed := func(status int, reason string, attempts int) Result {
		return Result{Status: status, Reason: reason, Attempts: attempts, Outcome: pushflow.OutcomeFailed, Unregistered: status == 410,
			Retryable: status == 429 || status >= 500}
	}
	sent := func(attempts int) Result {
		return Result{Status: 200, Attempts: attempts, Outcome: pushflow.OutcomeSent}
	}
	tests := []struct {
		name         string
		setup        func(tok string)
		edit         func(*Message)
		want         Result
		wantRequests int64
	}{
		{"sent", nil, nil, sent(1), 1},
		{"400 BadDeviceToken", nil, func(m *Message) { m.Token = "abc" }, failed(400, "BadDeviceToken", 1), 1},
		{"400 TopicDisallowed", nil, func(m *Message) { m.Topic = "com.example.stranger" }, failed(400, "TopicDisallowed", 1), 1},
		{"400 DeviceTokenNotForTopic", func(tok string) { e.srv.BindToken(tok, "com.example.other") }, nil, failed(400, "DeviceTokenNotForTopic", 1), 1},
		{"400 BadMessageId", nil, func(m *Message) { m.ID = "not-a-uuid" }, failed(400, "BadMessageId", 1), 1},
		{"400 BadExpirationDate", func(string) { e.srv.FailNext(1, 400, "BadExpirationDate") }, nil, failed(400, "BadExpirationDate", 1), 1},
		{"403 Forbidden", func(string) { e.srv.FailNext(1, 403, "Forbidden") }, nil, failed(403, "Forbidden", 1), 1},
		{"404 BadPath", func(string) { e.srv.FailNext(1, 404, "BadPath") }, nil, failed(404, "BadPath", 1), 1},
		{"405 MethodNotAllowed", func(string) { e.srv.FailNext(1, 405, "MethodNotAllowed") }, nil, failed(405, "MethodNotAllowed", 1), 1},
		{"413 PayloadTooLarge from APNs", func(string) { e.srv.FailNext(1, 413, "PayloadTooLarge") }, nil, failed(413, "PayloadTooLarge", 1), 1},
		{"410 Unregistered", func(tok string) { e.srv.Unregister(tok) }, nil, failed(410, "Unregistered", 1), 1},
		{"410 ExpiredToken", func(tok string) { e.srv.Expire(tok) }, nil, failed(410, "ExpiredToken", 1), 1},
		{"429 then sent", func(string) { e.srv.FailNext(1, 429, "TooManyRequests") }, nil, sent(2), 2},
		{"500 then sent", func(string) { e.srv.FailNext(1, 500, "InternalServerError") }, nil, sent(2), 2},
		{"503 twice then sent", func(string) { e.srv.FailNext(2, 503, "ServiceUnavailable") }, nil, sent(3), 3},
		{"503 beyond max attempts", func(string) { e.srv.FailNext(10, 503, "ServiceUnavailable") }, nil, failed(503, "ServiceUnavailable", 4), 4},
		{"429 beyond max attempts", func(string) { e.srv.FailNext(10, 429, "TooManyRequests") }, nil, failed(429, "TooManyRequests", 4), 4},
		{"near-limit payload of escaped characters sent", nil, func(m *Message) {
			m.Notification.Body = "&"
			p, err := BuildPayload(m.Notification)
			if err != nil {
				t.Fatal(err)
			}
			m.Notification.Body = strings.Repeat("&", (MaxPayloadSize-len(p))/6+1) // "&" is 6 bytes: \u0026
			if p, _ = BuildPayload(m.Notification); len(p) < MaxPayloadSize-6 || len(p) > MaxPayloadSize {
				t.Fatalf("payload is %d bytes, want just under %d", len(p), MaxPayloadSize)
			}
		}, sent(1), 1},
		{"PayloadTooLarge never sent", nil, func(m *Message) { m.Notification.Body = strings.Repeat("x", 5000) }, failed(0, "PayloadTooLarge", 0), 0},
		{"BadCollapseId never sent", nil, func(m *Message) { m.Notification.CollapseID = strings.Repeat("x", 65) }, failed(0, "BadCollapseId", 0), 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.srv.Reset()
			sleeps = nil
			tok := devToken(100 + i)
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
				t.Errorf("server got %d requests, want %d", r, tt.wantRequests)
			}
			if tt.want.Attempts > 0 && len(sleeps) != tt.want.Attempts-1 {
				t.Errorf("slept %d times, want %d (between attempts)", len(sleeps), tt.want.Attempts-1)
			}
			wantCount := 0
			if tt.want.Outcome == pushflow.OutcomeSent {
				wantCount = 1
			}
			if e.srv.CountByToken(m.Token) != wantCount {
				t.Errorf("CountByToken() = %d, want %d", e.srv.CountByToken(m.Token), wantCount)
			}
		})
	}
}

func TestRetryBackoff(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.BaseBackoff, cfg.MaxBackoff, cfg.MaxAttempts = 100*time.Millisecond, 250*time.Millisecond, 5
	c := newTestClient(t, cfg)
	var sleeps, caps []time.Duration
	c.jitter = func(d time.Duration) time.Duration { caps = append(caps, d); return d / 2 }
	c.sleep = func(_ context.Context, d time.Duration) error { sleeps = append(sleeps, d); return nil }

	e.srv.FailNext(4, 503, "ServiceUnavailable")
	got := c.Push(context.Background(), msg(devToken(1)))
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
	e.srv.FailNext(100, 503, "ServiceUnavailable")
	got := c.Send(ctx, []Message{msg(devToken(1)), msg(devToken(2))})
	for i, r := range got {
		if r.Outcome != pushflow.OutcomeFailed || r.Attempts > 1 || r.Unregistered {
			t.Errorf("Send() result %d = %+v, want failed after at most 1 attempt", i, r)
		}
		if r.Reason != "ServiceUnavailable" && r.Reason != ReasonCanceled || !strings.Contains(r.Error, "context canceled") {
			t.Errorf("Send() result %d = %+v, want reason ServiceUnavailable (the last answer) or Canceled, and a context canceled error", i, r)
		}
	}
	if r := e.srv.Requests(); r > 2 {
		t.Errorf("server got %d requests, want at most 2 (no retries after cancel)", r)
	}

	// Canceled before sending: nothing reaches the server.
	e.srv.Reset()
	got = c.Send(ctx, []Message{msg(devToken(3))})
	want := []Result{{Reason: ReasonCanceled, Outcome: pushflow.OutcomeFailed}}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Send(canceled ctx) (-want +got):\n%s", diff)
	}
	if r := e.srv.Requests(); r != 0 {
		t.Errorf("server got %d requests after cancel, want 0", r)
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, apnsiotest.WithLatency(2*time.Second))
	cfg := e.cfg
	cfg.Timeout, cfg.MaxAttempts = 50*time.Millisecond, 2
	c := newTestClient(t, cfg)
	start := time.Now()
	got := c.Push(context.Background(), msg(devToken(1)))
	want := Result{Reason: ReasonTimeout, Attempts: 2, Outcome: pushflow.OutcomeFailed, Retryable: true}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() to a slow server (-want +got):\n%s", diff)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Push() took %v, want about 2 × 50ms", el)
	}
	if strings.Contains(got.Error, devToken(1)) {
		t.Errorf("Result.Error = %q, shows the device token", got.Error)
	}
}

func TestTokenAuthRejected(t *testing.T) {
	e := newEnv(t)
	otherPEM, _, err := apnsiotest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "other.p8")
	if err := os.WriteFile(otherFile, otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"wrong key, registered key ID", func(c *Config) { c.KeyFile = otherFile }},
		{"unknown key ID", func(c *Config) { c.KeyID = "UNKNOWN123" }},
		{"wrong team", func(c *Config) { c.TeamID = "OTHERTEAM1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.cfg
			tt.edit(&cfg)
			c := newTestClient(t, cfg)
			got := c.Send(context.Background(), []Message{msg(devToken(1))})
			want := []Result{{Status: 403, Reason: "InvalidProviderToken", Attempts: 1, Outcome: pushflow.OutcomeFailed}}
			if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
				t.Errorf("Send() with %s (-want +got):\n%s", tt.name, diff)
			}
		})
	}
	if n := e.srv.Count(); n != 0 {
		t.Errorf("server accepted %d notifications, want 0", n)
	}
}

func TestCertificateAuth(t *testing.T) {
	certPEM, keyPEM, err := apnsiotest.GenerateClientCert(testTopic)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	e := newEnv(t, apnsiotest.WithClientCA(pool), apnsiotest.WithClientCertRequired())
	certFile := filepath.Join(t.TempDir(), "push.pem")
	if err := os.WriteFile(certFile, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, Config{Endpoint: e.srv.URL(), CAFile: e.cfg.CAFile, CertFile: certFile})

	voip := msg(devToken(2))
	voip.Notification.PushType = "voip"
	other := msg(devToken(3))
	other.Topic = "com.example.other"
	got := c.Send(context.Background(), []Message{msg(devToken(1)), voip, other})
	want := []Result{
		{Status: 200, Attempts: 1, Outcome: pushflow.OutcomeSent},
		{Status: 200, Attempts: 1, Outcome: pushflow.OutcomeSent},
		{Status: 400, Reason: "TopicDisallowed", Attempts: 1, Outcome: pushflow.OutcomeFailed},
	}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Send() with certificate auth (-want +got):\n%s", diff)
	}
	for _, n := range e.srv.Received() {
		if n.KeyID != "" {
			t.Errorf("server got a provider token (key %s) from a certificate client", n.KeyID)
		}
	}
}

func TestCAFile(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.CAFile, cfg.MaxAttempts = "", 2
	c := newTestClient(t, cfg)
	got := c.Push(context.Background(), msg(devToken(1)))
	if got.Reason != ReasonTransportError || got.Attempts != 2 || got.Outcome != pushflow.OutcomeFailed || !strings.Contains(got.Error, "certificate") {
		t.Errorf("Push() without the CA file = %+v, want TransportError about the certificate after 2 attempts", got)
	}
	if r := e.srv.Requests(); r != 0 {
		t.Errorf("server got %d requests over untrusted TLS, want 0", r)
	}

	c = newTestClient(t, e.cfg)
	if got := c.Push(context.Background(), msg(devToken(1))); got.Outcome != pushflow.OutcomeSent {
		t.Errorf("Push() with the CA file = %+v, want sent", got)
	}
}

func TestNewClientErrors(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	const secret = "MIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQg-not-really"
	notPEM := filepath.Join(dir, "notpem.p8")
	os.WriteFile(notPEM, []byte(secret), 0o600)
	rsaLike := filepath.Join(dir, "garbage.p8")
	os.WriteFile(rsaLike, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	badP12 := filepath.Join(dir, "push.p12")
	os.WriteFile(badP12, []byte("not pkcs12"), 0o600)
	noCerts := filepath.Join(dir, "empty.pem")
	os.WriteFile(noCerts, []byte("nothing here"), 0o600)
	passwordFile := filepath.Join(dir, "password")
	os.WriteFile(passwordFile, []byte("pa55word\n"), 0o600)
	t.Setenv("APNSIO_TEST_CERT_PASSWORD", "pa55word")

	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"invalid config", func(c *Config) { c.TeamID = "" }, "team ID"},
		{"missing key file", func(c *Config) { c.KeyFile = filepath.Join(dir, "nope.p8") }, "load key file"},
		{"key file not PEM", func(c *Config) { c.KeyFile = notPEM }, "load key file"},
		{"key file not PKCS#8", func(c *Config) { c.KeyFile = rsaLike }, "load key file"},
		{"missing CA file", func(c *Config) { c.CAFile = filepath.Join(dir, "nope.pem") }, "read CA file"},
		{"CA file without certificates", func(c *Config) { c.CAFile = noCerts }, "no PEM certificate"},
		{"bad p12, password file", func(c *Config) {
			*c = Config{Endpoint: c.Endpoint, CertFile: badP12, CertPasswordFile: passwordFile}
		}, "load certificate"},
		{"bad p12, password env", func(c *Config) {
			*c = Config{Endpoint: c.Endpoint, CertFile: badP12, CertPasswordEnv: "APNSIO_TEST_CERT_PASSWORD"}
		}, "load certificate"},
		{"missing password file", func(c *Config) {
			*c = Config{Endpoint: c.Endpoint, CertFile: badP12, CertPasswordFile: filepath.Join(dir, "nope")}
		}, "read cert password file"},
		{"password env unset", func(c *Config) {
			*c = Config{Endpoint: c.Endpoint, CertFile: badP12, CertPasswordEnv: "APNSIO_TEST_NO_SUCH_VARIABLE"}
		}, "APNSIO_TEST_NO_SUCH_VARIABLE is not set"},
		{"PEM cert file without certificate", func(c *Config) { *c = Config{Endpoint: c.Endpoint, CertFile: noCerts} }, "load certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.cfg
			tt.edit(&cfg)
			c, err := NewClient(cfg)
			if err == nil {
				c.Close()
				t.Fatalf("NewClient(%v) = nil error, want one about %q", cfg, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "apnsio: ") {
				t.Errorf("NewClient(%v) = %v, want an apnsio: error about %q", cfg, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret[:20]) || strings.Contains(err.Error(), "pa55word") {
				t.Errorf("NewClient(%v) = %v, shows key material or the password", cfg, err)
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
		msgs[i] = msg(devToken(i))
		msgs[i].ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	}
	got := c.Send(context.Background(), msgs)
	if len(got) != n {
		t.Fatalf("Send(%d messages) returned %d results", n, len(got))
	}
	for i, r := range got {
		if r.Outcome != pushflow.OutcomeSent || r.Attempts != 1 || r.ApnsID != msgs[i].ID {
			t.Fatalf("Send() result %d = %+v, want sent once with apns-id %s (input order)", i, r, msgs[i].ID)
		}
		if cnt := e.srv.CountByToken(msgs[i].Token); cnt != 1 {
			t.Fatalf("CountByToken(message %d) = %d, want 1", i, cnt)
		}
	}
	if cnt := e.srv.Count(); cnt != n {
		t.Errorf("server Count() = %d, want %d", cnt, n)
	}
}

func TestConcurrencyBound(t *testing.T) {
	e := newEnv(t, apnsiotest.WithLatency(5*time.Millisecond))
	cfg := e.cfg
	cfg.Concurrency = 3
	c := newTestClient(t, cfg)
	// Two Sends at once share the Client's bound.
	var wg sync.WaitGroup
	for s := range 2 {
		wg.Go(func() {
			msgs := make([]Message, 20)
			for i := range msgs {
				msgs[i] = msg(devToken(s*100 + i))
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
