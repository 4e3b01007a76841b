package fcmiotest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/auth/credentials"
	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"

	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
)

const testProject = "demo-project"

func newServer(t *testing.T, opts ...fcmiotest.Option) *fcmiotest.Server {
	t.Helper()
	srv, err := fcmiotest.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// sdkClient is the firebase SDK's messaging client for srv, as the package
// doc shows, with extra options.
func sdkClient(t *testing.T, srv *fcmiotest.Server, project string, opts ...option.ClientOption) *messaging.Client {
	t.Helper()
	ctx := context.Background()
	if opts == nil {
		opts = srv.ClientOptions()
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// post sends body to srv's send path of project, as raw HTTP.
func post(t *testing.T, srv *fcmiotest.Server, project, body string) (int, http.Header, apiError) {
	t.Helper()
	resp, err := http.Post(srv.URL()+"/v1/projects/"+project+"/messages:send", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("response %s is not JSON: %v", b, err)
	}
	return resp.StatusCode, resp.Header, e
}

// apiError is a Google API error body, or a success's name.
type apiError struct {
	Name  string `json:"name"`
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// fcmCode is the FcmError detail's code, "" without one.
func (e apiError) fcmCode() string {
	for _, d := range e.Error.Details {
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			return d.ErrorCode
		}
	}
	return ""
}

// TestSDKErrorPredicates checks that the SDK classifies every answer as
// FCM's: the server's errors drive messaging.Is* exactly.
func TestSDKErrorPredicates(t *testing.T) {
	srv := newServer(t)
	c := sdkClient(t, srv, testProject)
	predicates := map[string]func(error) bool{
		"UNREGISTERED":           messaging.IsUnregistered,
		"INVALID_ARGUMENT":       messaging.IsInvalidArgument,
		"SENDER_ID_MISMATCH":     messaging.IsSenderIDMismatch,
		"QUOTA_EXCEEDED":         messaging.IsQuotaExceeded,
		"UNAVAILABLE":            messaging.IsUnavailable,
		"INTERNAL":               messaging.IsInternal,
		"THIRD_PARTY_AUTH_ERROR": messaging.IsThirdPartyAuthError,
	}
	tests := []struct {
		name       string
		setup      func(tok string)
		token      string // "" is the test token
		wantCode   string
		wantStatus int
		wantRetry  string // Retry-After
	}{
		{"unregistered", func(tok string) { srv.Unregister(tok) }, "", "UNREGISTERED", 404, ""},
		{"invalid token", nil, "not-a-token", "INVALID_ARGUMENT", 400, ""},
		{"sender id mismatch", func(tok string) { srv.BindToken(tok, "other-project") }, "", "SENDER_ID_MISMATCH", 403, ""},
		{"quota exceeded", func(string) { srv.FailNext(1, 429, fcmiotest.CodeQuotaExceeded) }, "", "QUOTA_EXCEEDED", 429, "1"},
		// A Retry-After over 2 minutes stops the SDK's own retries of a 503.
		{"unavailable", func(string) {
			srv.SetRetryAfter(3 * time.Minute)
			srv.FailNext(1, 503, fcmiotest.CodeUnavailable)
		}, "", "UNAVAILABLE", 503, "180"},
		{"internal", func(string) { srv.FailNext(1, 500, fcmiotest.CodeInternal) }, "", "INTERNAL", 500, ""},
		{"third party auth", func(string) { srv.FailNext(1, 401, fcmiotest.CodeThirdPartyAuthError) }, "", "THIRD_PARTY_AUTH_ERROR", 401, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			srv.SetRetryAfter(time.Second)
			tok := fcmiotest.Token(100 + i)
			if tt.setup != nil {
				tt.setup(tok)
			}
			if tt.token != "" {
				tok = tt.token
			}
			_, err := c.Send(context.Background(), &messaging.Message{Token: tok, Data: map[string]string{"k": "v"}})
			if err == nil {
				t.Fatalf("Send() = nil error, want %s", tt.wantCode)
			}
			for code, is := range predicates {
				if got := is(err); got != (code == tt.wantCode) {
					t.Errorf("messaging.Is<%s>(%v) = %v, want %v", code, err, got, !got)
				}
			}
			resp := errorutils.HTTPResponse(err)
			if resp == nil || resp.StatusCode != tt.wantStatus {
				t.Fatalf("HTTPResponse(%v) = %v, want status %d", err, resp, tt.wantStatus)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if n := srv.Requests(); n != 1 {
				t.Errorf("server got %d requests, want 1", n)
			}
			if n := srv.Count(); n != 0 {
				t.Errorf("server accepted %d messages, want 0", n)
			}
		})
	}
}

func TestSendAccepted(t *testing.T) {
	srv := newServer(t)
	c := sdkClient(t, srv, testProject)
	ttl := 90 * time.Second
	count := 3
	msg := &messaging.Message{
		Token:        fcmiotest.Token(1),
		Notification: &messaging.Notification{Title: "Goal", Body: "1-0"},
		Data:         map[string]string{"match": "7", "url": "https://x/m?id=7&tab=<live>"},
		Android: &messaging.AndroidConfig{
			CollapseKey: "score", Priority: "high", TTL: &ttl,
			Notification: &messaging.AndroidNotification{Sound: "default", Tag: "score", NotificationCount: &count},
		},
	}
	name, err := c.Send(context.Background(), msg)
	if err != nil {
		t.Fatalf("Send() = %v", err)
	}
	if !strings.HasPrefix(name, "projects/"+testProject+"/messages/") {
		t.Errorf("Send() name = %q, want projects/%s/messages/<id>", name, testProject)
	}
	name2, err := c.Send(context.Background(), &messaging.Message{Topic: "news", Data: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatalf("Send(topic) = %v", err)
	}
	if name2 == name {
		t.Errorf("two sends both named %q", name)
	}

	rec := srv.Received()
	if len(rec) != 2 {
		t.Fatalf("Received() has %d messages, want 2", len(rec))
	}
	want := fcmiotest.Message{
		Project: testProject, Token: msg.Token, Title: "Goal", Body: "1-0", Data: msg.Data,
		AndroidPriority: "high", TTL: "90s", CollapseKey: "score", Name: name,
	}
	if diff := cmp.Diff(want, rec[0], cmpIgnore("Raw", "Received")); diff != "" {
		t.Errorf("Received()[0] (-want +got):\n%s", diff)
	}
	var raw messaging.Message
	if err := json.Unmarshal(rec[0].Raw, &raw); err != nil {
		t.Fatalf("Raw %s: %v", rec[0].Raw, err)
	}
	if diff := cmp.Diff(msg, &raw); diff != "" {
		t.Errorf("Raw, as a messaging.Message (-sent +received):\n%s", diff)
	}
	if rec[1].Topic != "news" || rec[1].Token != "" {
		t.Errorf("Received()[1] = %+v, want the topic message", rec[1])
	}
	if srv.Count() != 2 || srv.CountByToken(msg.Token) != 1 || srv.Requests() != 2 {
		t.Errorf("Count, CountByToken, Requests = %d, %d, %d, want 2, 1, 2", srv.Count(), srv.CountByToken(msg.Token), srv.Requests())
	}

	// A dry run is checked, answered and not delivered.
	srv.Reset()
	name, err = c.SendDryRun(context.Background(), &messaging.Message{Token: fcmiotest.Token(2), Data: map[string]string{"k": "v"}})
	if err != nil || name != "projects/"+testProject+"/messages/fake_message_id" {
		t.Errorf("SendDryRun() = %q, %v, want the fake message id", name, err)
	}
	if _, err := c.SendDryRun(context.Background(), &messaging.Message{Token: "bad"}); !messaging.IsInvalidArgument(err) {
		t.Errorf("SendDryRun(bad token) = %v, want INVALID_ARGUMENT", err)
	}
	if srv.Count() != 0 || len(srv.Received()) != 0 || srv.Requests() != 2 {
		t.Errorf("after dry runs Count, Received, Requests = %d, %d, %d, want 0, 0, 2", srv.Count(), len(srv.Received()), srv.Requests())
	}
}

func cmpIgnore(fields ...string) cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool {
		for _, f := range fields {
			if p.Last().String() == "."+f {
				return true
			}
		}
		return false
	}, cmp.Ignore())
}

// TestValidation sends raw requests: what FCM rejects, and how.
func TestValidation(t *testing.T) {
	srv := newServer(t)
	tok := fcmiotest.Token(1)
	msgJSON := func(fields string) string { return `{"message":{` + fields + `}}` }
	withData := func(target string, n int) string {
		// A data payload of exactly n bytes: key "k" and n-1 bytes of value.
		return msgJSON(target + `,"data":{"k":"` + strings.Repeat("x", n-1) + `"}`)
	}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string // FcmError code
		wantRPC    string // status
		wantField  string // BadRequest field
	}{
		{"data message", msgJSON(`"token":"` + tok + `","data":{"k":"v"}`), 200, "", "", ""},
		{"payload at the limit", withData(`"token":"`+tok+`"`, 4096), 200, "", "", ""},
		{"payload over the limit", withData(`"token":"`+tok+`"`, 4097), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message"},
		{"notification counts", msgJSON(`"token":"` + tok + `","notification":{"title":"` + strings.Repeat("t", 2048) + `","body":"` + strings.Repeat("b", 2049) + `"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message"},
		{"topic payload at its limit", withData(`"topic":"news"`, 2048), 200, "", "", ""},
		{"topic payload over its limit", withData(`"topic":"news"`, 2049), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message"},
		{"condition", msgJSON(`"condition":"'a' in topics","data":{"k":"v"}`), 200, "", "", ""},
		{"no target", msgJSON(`"data":{"k":"v"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message"},
		{"two targets", msgJSON(`"token":"` + tok + `","topic":"news"`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message"},
		{"short token", msgJSON(`"token":"abc"`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.token"},
		{"token with a space", msgJSON(`"token":"` + tok[:40] + ` ` + tok[41:] + `"`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.token"},
		{"bad topic", msgJSON(`"topic":"a/b"`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.topic"},
		{"reserved key from", msgJSON(`"token":"` + tok + `","data":{"from":"x"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.data"},
		{"reserved key google.", msgJSON(`"token":"` + tok + `","data":{"google.x":"x"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.data"},
		{"reserved key gcm", msgJSON(`"token":"` + tok + `","data":{"gcm.n.e":"1"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.data"},
		{"reserved android data key", msgJSON(`"token":"` + tok + `","android":{"data":{"message_type":"x"}}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.android.data"},
		{"android priority HIGH", msgJSON(`"token":"` + tok + `","android":{"priority":"HIGH"}`), 200, "", "", ""},
		{"bad android priority", msgJSON(`"token":"` + tok + `","android":{"priority":"urgent"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.android.priority"},
		{"ttl 28 days", msgJSON(`"token":"` + tok + `","android":{"ttl":"2419200s"}`), 200, "", "", ""},
		{"fractional ttl", msgJSON(`"token":"` + tok + `","android":{"ttl":"1.500000000s"}`), 200, "", "", ""},
		{"ttl over 28 days", msgJSON(`"token":"` + tok + `","android":{"ttl":"2419201s"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.android.ttl"},
		{"ttl without unit", msgJSON(`"token":"` + tok + `","android":{"ttl":"60"}`), 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.android.ttl"},
		{"non-string data value", msgJSON(`"token":"` + tok + `","data":{"k":12}`), 400, "", "INVALID_ARGUMENT", ""},
		{"not JSON", `{"message":`, 400, "", "INVALID_ARGUMENT", ""},
		{"no message", `{"validate_only":true}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message"},
		{"huge request", `{"message":{"token":"` + tok + `","data":{"k":"` + strings.Repeat("x", 1<<20) + `"}}}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, e := post(t, srv, testProject, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("POST %.200s = %d %+v, want %d", tt.body, status, e, tt.wantStatus)
			}
			if status == 200 {
				if !strings.HasPrefix(e.Name, "projects/"+testProject+"/messages/") {
					t.Errorf("name = %q", e.Name)
				}
				return
			}
			if e.Error.Code != status || e.Error.Status != tt.wantRPC || e.Error.Message == "" {
				t.Errorf("error = %+v, want code %d, status %s and a message", e.Error, status, tt.wantRPC)
			}
			if got := e.fcmCode(); got != tt.wantCode {
				t.Errorf("FcmError code = %q, want %q", got, tt.wantCode)
			}
			var field string
			for _, d := range e.Error.Details {
				for _, v := range d.FieldViolations {
					field = v.Field
				}
			}
			if field != tt.wantField {
				t.Errorf("BadRequest field = %q, want %q", field, tt.wantField)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	srv := newServer(t, fcmiotest.WithProjects(testProject))
	tok := fcmiotest.Token(1)
	body := `{"message":{"token":"` + tok + `"}}`
	tests := []struct {
		method, path string
		wantStatus   int
	}{
		{"POST", "/v1/projects/" + testProject + "/messages:send", 200},
		{"POST", "/v1/projects/unknown/messages:send", 404},
		{"GET", "/v1/projects/" + testProject + "/messages:send", 404},
		{"POST", "/v1/projects//messages:send", 404},
		{"POST", "/v1/projects/a/b/messages:send", 404},
		{"POST", "/fcm/send", 404},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL()+tt.path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, tt.wantStatus)
		}
		if resp.StatusCode == 404 && !strings.Contains(string(b), `"NOT_FOUND"`) {
			t.Errorf("%s %s = %s, want a NOT_FOUND error", tt.method, tt.path, b)
		}
	}
	// The SDK sees an unknown project as NOT_FOUND, not as a bad token.
	_, err := sdkClient(t, srv, "unknown").Send(context.Background(), &messaging.Message{Token: tok})
	if !errorutils.IsNotFound(err) || messaging.IsUnregistered(err) {
		t.Errorf("Send() to an unknown project = %v, want NOT_FOUND and not UNREGISTERED", err)
	}
}

func TestFailNext(t *testing.T) {
	srv := newServer(t, fcmiotest.WithRetryAfter(0))
	body := `{"message":{"token":"` + fcmiotest.Token(1) + `"}}`
	srv.FailNext(2, 429, fcmiotest.CodeQuotaExceeded)
	for i := range 2 {
		status, h, e := post(t, srv, testProject, body)
		if status != 429 || e.fcmCode() != "QUOTA_EXCEEDED" || e.Error.Status != "RESOURCE_EXHAUSTED" || h.Get("Retry-After") != "" {
			t.Errorf("request %d = %d %+v Retry-After %q, want 429 QUOTA_EXCEEDED RESOURCE_EXHAUSTED and none", i, status, e.Error, h.Get("Retry-After"))
		}
	}
	if status, _, _ := post(t, srv, testProject, body); status != 200 {
		t.Errorf("third request = %d, want 200", status)
	}
	// Injected answers come whatever the message; a code-less one has no
	// FcmError.
	srv.FailNext(1, 502, "")
	if status, _, e := post(t, srv, testProject, `{"message":{"token":"bad"}}`); status != 502 || e.fcmCode() != "" || e.Error.Status != "UNKNOWN" {
		t.Errorf("injected 502 = %d %+v, want 502 UNKNOWN without FcmError", status, e.Error)
	}
	srv.FailNext(5, 503, fcmiotest.CodeUnavailable)
	srv.Reset()
	if status, _, _ := post(t, srv, testProject, body); status != 200 {
		t.Errorf("request after Reset = %d, want 200 (Reset drops FailNext)", status)
	}
	if srv.Requests() != 1 || srv.Count() != 1 {
		t.Errorf("after Reset Requests, Count = %d, %d, want 1, 1", srv.Requests(), srv.Count())
	}
}

func TestAuth(t *testing.T) {
	srv := newServer(t, fcmiotest.WithAuth())
	dir := t.TempDir()
	saFile := func(name string, s *fcmiotest.Server, project string) string {
		key, err := s.ServiceAccount(project)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, key, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	withSA := func(path string) []option.ClientOption {
		return []option.ClientOption{option.WithEndpoint(srv.URL() + "/v1"), option.WithAuthCredentialsFile(option.ServiceAccount, path)}
	}
	msg := &messaging.Message{Token: fcmiotest.Token(1), Data: map[string]string{"k": "v"}}
	ctx := context.Background()

	// Without credentials: 401.
	if _, err := sdkClient(t, srv, testProject).Send(ctx, msg); !errorutils.IsUnauthenticated(err) {
		t.Errorf("Send() without credentials = %v, want UNAUTHENTICATED", err)
	}

	// A service account of the project: its token works, and is reused.
	sa := saFile("sa.json", srv, testProject)
	c := sdkClient(t, srv, testProject, withSA(sa)...)
	for range 3 {
		if _, err := c.Send(ctx, msg); err != nil {
			t.Fatalf("Send() with a service account = %v", err)
		}
	}
	if n := srv.TokensIssued(); n != 1 {
		t.Errorf("TokensIssued() = %d, want 1 (the SDK caches its token)", n)
	}
	var key struct {
		ClientEmail string `json:"client_email"`
	}
	b, _ := os.ReadFile(sa)
	json.Unmarshal(b, &key)
	if rec := srv.Received(); len(rec) != 3 || rec[0].ClientEmail != key.ClientEmail || key.ClientEmail == "" {
		t.Errorf("Received() = %+v, want 3 messages from %s", rec, key.ClientEmail)
	}

	// Another project's account may not send here.
	other := saFile("other.json", srv, "other-project")
	if _, err := sdkClient(t, srv, testProject, withSA(other)...).Send(ctx, msg); !errorutils.IsPermissionDenied(err) {
		t.Errorf("Send() with another project's account = %v, want PERMISSION_DENIED", err)
	}

	// A token of another server is no credential here.
	otherSrv := newServer(t)
	stranger := saFile("stranger.json", otherSrv, testProject)
	if _, err := sdkClient(t, srv, testProject, withSA(stranger)...).Send(ctx, msg); !errorutils.IsUnauthenticated(err) {
		t.Errorf("Send() with another server's token = %v, want UNAUTHENTICATED", err)
	}

	// An account this server does not know gets no token.
	b, _ = os.ReadFile(stranger)
	b = []byte(strings.Replace(string(b), otherSrv.URL()+"/token", srv.URL()+"/token", 1))
	unknown := filepath.Join(dir, "unknown.json")
	os.WriteFile(unknown, b, 0o600)
	// (The SDK would retry the refusal for 7s: ask for a token directly.)
	creds, err := credentials.NewCredentialsFromFile(credentials.ServiceAccount, unknown, &credentials.DetectOptions{Scopes: []string{fcmiotest.ScopeMessaging}})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := creds.Token(ctx); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("Token() of an unknown account = %v, %v, want an invalid_grant error", tok, err)
	}
	if n := srv.Count(); n != 3 {
		t.Errorf("Count() = %d, want 3", n)
	}
}

func TestTokenEndpointRejects(t *testing.T) {
	srv := newServer(t, fcmiotest.WithAuth())
	tests := []struct {
		name, form, wantErr string
	}{
		{"wrong grant", "grant_type=client_credentials", "unsupported_grant_type"},
		{"not a JWT", "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=abc", "invalid_grant"},
		{"unsigned JWT", "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=eyJhbGciOiJub25lIn0.e30.", "invalid_grant"},
	}
	for _, tt := range tests {
		resp, err := http.Post(srv.URL()+"/token", "application/x-www-form-urlencoded", strings.NewReader(tt.form))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), tt.wantErr) {
			t.Errorf("%s: POST /token = %d %s, want 400 %s", tt.name, resp.StatusCode, b, tt.wantErr)
		}
	}
	if srv.TokensIssued() != 0 || srv.Requests() != 0 {
		t.Errorf("TokensIssued, Requests = %d, %d, want 0, 0", srv.TokensIssued(), srv.Requests())
	}
}

func TestLatency(t *testing.T) {
	srv := newServer(t, fcmiotest.WithLatency(time.Hour))
	srv.SetLatency(100 * time.Millisecond)
	c := sdkClient(t, srv, testProject)
	start := time.Now()
	if _, err := c.Send(context.Background(), &messaging.Message{Token: fcmiotest.Token(1)}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("Send() took %v, want at least the 100ms latency", el)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, &messaging.Message{Token: fcmiotest.Token(2)}); !errors.Is(err, context.DeadlineExceeded) && !errorutils.IsDeadlineExceeded(err) {
		t.Errorf("Send() with a short deadline = %v, want a deadline error", err)
	}
}

func TestLimits(t *testing.T) {
	srv := newServer(t, fcmiotest.WithRecordLimit(2), fcmiotest.WithTokenCountLimit(1))
	c := sdkClient(t, srv, testProject)
	for i := range 4 {
		if _, err := c.Send(context.Background(), &messaging.Message{Token: fcmiotest.Token(i % 2)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.Received()); n != 2 {
		t.Errorf("len(Received()) = %d, want the record limit 2", n)
	}
	if srv.Count() != 4 || srv.CountByToken(fcmiotest.Token(0)) != 2 || srv.CountByToken(fcmiotest.Token(1)) != 0 {
		t.Errorf("Count, CountByToken(0), CountByToken(1) = %d, %d, %d, want 4, 2, 0 (one token tracked)",
			srv.Count(), srv.CountByToken(fcmiotest.Token(0)), srv.CountByToken(fcmiotest.Token(1)))
	}
}

func TestOptionErrors(t *testing.T) {
	for _, opt := range []fcmiotest.Option{
		fcmiotest.WithRecordLimit(-1), fcmiotest.WithTokenCountLimit(-1), fcmiotest.WithRetryAfter(-time.Second),
		fcmiotest.WithListenAddr("256.0.0.1:0"),
	} {
		if srv, err := fcmiotest.NewServer(opt); err == nil || !strings.HasPrefix(err.Error(), "fcmiotest: ") {
			if srv != nil {
				srv.Close()
			}
			t.Errorf("NewServer(bad option) = %v, want an fcmiotest: error", err)
		}
	}
}

func TestToken(t *testing.T) {
	seen := map[string]bool{}
	for i := range 1000 {
		tok := fcmiotest.Token(i)
		if !fcmiotest.ValidToken(tok) || len(tok) != 163 || seen[tok] {
			t.Fatalf("Token(%d) = %q: want a valid, distinct 163-character token", i, tok)
		}
		seen[tok] = true
	}
	if a, b := fcmiotest.Token(7), fcmiotest.Token(7); a != b {
		t.Errorf("Token(7) = %q, then %q: want it deterministic", a, b)
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", 4097), strings.Repeat("a", 40) + "/"} {
		if fcmiotest.ValidToken(bad) {
			t.Errorf("ValidToken(%.50q) = true, want false", bad)
		}
	}
}

func TestPayloadSize(t *testing.T) {
	tests := []struct {
		raw  string
		want int
	}{
		{`{"token":"t"}`, 0},
		{`{"data":{"ab":"cde"}}`, 5},
		{`{"notification":{"title":"T","body":"Bo"},"data":{"k":"v"}}`, 5},
		{`{"data":{"k":"v"},"android":{"data":{"kk":"vv"}}}`, 4},
		{`{"notification":{"title":"T","body":"B"},"android":{"notification":{"title":"Title"}}}`, 6},
		{`{"data":{"é":"ü"}}`, 4},
	}
	for _, tt := range tests {
		got, err := fcmiotest.PayloadSize([]byte(tt.raw))
		if err != nil || got != tt.want {
			t.Errorf("PayloadSize(%s) = %d, %v, want %d", tt.raw, got, err, tt.want)
		}
	}
	if _, err := fcmiotest.PayloadSize([]byte("{")); err == nil {
		t.Error("PayloadSize({) = nil error, want one")
	}
}
