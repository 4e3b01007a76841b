package apnsiotest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
)

const (
	teamID = "TEAM123456"
	topic  = "com.example.app"
	devTok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

type fixture struct {
	srv    *apnsiotest.Server
	keyPEM []byte
	keyID  string
	client *http.Client
}

func newFixture(t *testing.T, opts ...apnsiotest.Option) *fixture {
	t.Helper()
	keyPEM, keyID, err := apnsiotest.GenerateKey()
	if err != nil {
		t.Fatalf("GenerateKey() = %v", err)
	}
	srv, err := apnsiotest.NewServer(append([]apnsiotest.Option{apnsiotest.WithP8(keyPEM, keyID, teamID)}, opts...)...)
	if err != nil {
		t.Fatalf("NewServer() = %v", err)
	}
	t.Cleanup(srv.Close)
	tr := apnsio.NewTransport(&tls.Config{RootCAs: srv.RootCAs()})
	t.Cleanup(tr.CloseIdleConnections)
	return &fixture{srv: srv, keyPEM: keyPEM, keyID: keyID, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (f *fixture) bearer(t *testing.T) string {
	t.Helper()
	s, err := apnsiotest.SignToken(f.keyPEM, f.keyID, teamID, time.Now())
	if err != nil {
		t.Fatalf("SignToken() = %v", err)
	}
	return "bearer " + s
}

// request is an APNs request; a header set to nil is not sent.
type request struct {
	method string
	path   string
	header map[string][]string
	body   string
}

func (f *fixture) validRequest(t *testing.T) request {
	return request{
		method: http.MethodPost,
		path:   "/3/device/" + devTok,
		header: map[string][]string{
			"authorization":  {f.bearer(t)},
			"apns-topic":     {topic},
			"apns-push-type": {"alert"},
		},
		body: `{"aps":{"alert":"hi"}}`,
	}
}

type response struct {
	status    int
	reason    string
	apnsID    string
	timestamp int64
}

func (f *fixture) do(t *testing.T, c *http.Client, r request) response {
	t.Helper()
	req, err := http.NewRequest(r.method, f.srv.URL()+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("%s %s: protocol %s, want HTTP/2", r.method, r.path, resp.Proto)
	}
	got := response{status: resp.StatusCode, apnsID: resp.Header.Get("apns-id")}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > 0 {
		var e struct {
			Reason    string `json:"reason"`
			Timestamp int64  `json:"timestamp"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("error body %q: %v", body, err)
		}
		got.reason, got.timestamp = e.Reason, e.Timestamp
	}
	return got
}

func TestRequestChecks(t *testing.T) {
	f := newFixture(t)
	other, otherID, err := apnsiotest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sign := func(keyPEM []byte, keyID, team string, iat time.Time) string {
		s, err := apnsiotest.SignToken(keyPEM, keyID, team, iat)
		if err != nil {
			t.Fatal(err)
		}
		return "bearer " + s
	}
	hs256, err := (&jwt.Token{
		Header: map[string]any{"alg": "HS256", "kid": f.keyID},
		Claims: jwt.MapClaims{"iss": teamID, "iat": time.Now().Unix()},
		Method: jwt.SigningMethodHS256,
	}).SignedString([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	const id = "123e4567-e89b-12d3-a456-426614174000"

	tests := []struct {
		name       string
		edit       func(*request)
		wantStatus int
		wantReason string
	}{
		{"valid", func(r *request) {}, 200, ""},
		{"100 hex digit token", func(r *request) { r.path = "/3/device/" + strings.Repeat("ab", 50) }, 200, ""},
		{"uppercase token", func(r *request) { r.path = "/3/device/" + strings.ToUpper(devTok) }, 200, ""},
		{"no push type", func(r *request) { r.header["apns-push-type"] = nil }, 200, ""},
		{"apns-id echoed", func(r *request) { r.header["apns-id"] = []string{id} }, 200, ""},
		{"GET", func(r *request) { r.method = http.MethodGet; r.body = "" }, 405, "MethodNotAllowed"},
		{"DELETE", func(r *request) { r.method = http.MethodDelete }, 405, "MethodNotAllowed"},
		{"bad path", func(r *request) { r.path = "/2/device/" + devTok }, 404, "BadPath"},
		{"no token", func(r *request) { r.path = "/3/device/" }, 400, "MissingDeviceToken"},
		{"short token", func(r *request) { r.path = "/3/device/abcd" }, 400, "BadDeviceToken"},
		{"odd token", func(r *request) { r.path = "/3/device/" + devTok + "a" }, 400, "BadDeviceToken"},
		{"non-hex token", func(r *request) { r.path = "/3/device/" + strings.Repeat("g", 64) }, 400, "BadDeviceToken"},
		{"long token", func(r *request) { r.path = "/3/device/" + strings.Repeat("ab", 101) }, 400, "BadDeviceToken"},
		{"no topic", func(r *request) { r.header["apns-topic"] = nil }, 400, "MissingTopic"},
		{"empty label topic", func(r *request) { r.header["apns-topic"] = []string{"com..app"} }, 400, "BadTopic"},
		{"topic with space", func(r *request) { r.header["apns-topic"] = []string{"com.example app"} }, 400, "BadTopic"},
		{"unknown push type", func(r *request) { r.header["apns-push-type"] = []string{"banana"} }, 400, "InvalidPushType"},
		{"voip without .voip topic", func(r *request) { r.header["apns-push-type"] = []string{"voip"} }, 400, "InvalidPushType"},
		{"voip", func(r *request) {
			r.header["apns-push-type"] = []string{"voip"}
			r.header["apns-topic"] = []string{topic + ".voip"}
		}, 200, ""},
		{"liveactivity", func(r *request) {
			r.header["apns-push-type"] = []string{"liveactivity"}
			r.header["apns-topic"] = []string{topic + ".push-type.liveactivity"}
		}, 200, ""},
		{"bad apns-id", func(r *request) { r.header["apns-id"] = []string{"nope"} }, 400, "BadMessageId"},
		{"priority 7", func(r *request) { r.header["apns-priority"] = []string{"7"} }, 400, "BadPriority"},
		{"priority 1", func(r *request) { r.header["apns-priority"] = []string{"1"} }, 200, ""},
		{"priority 5", func(r *request) { r.header["apns-priority"] = []string{"5"} }, 200, ""},
		{"priority 10", func(r *request) { r.header["apns-priority"] = []string{"10"} }, 200, ""},
		{"background priority 10", func(r *request) {
			r.header["apns-push-type"] = []string{"background"}
			r.header["apns-priority"] = []string{"10"}
		}, 400, "BadPriority"},
		{"background priority 5", func(r *request) {
			r.header["apns-push-type"] = []string{"background"}
			r.header["apns-priority"] = []string{"5"}
		}, 200, ""},
		{"expiration word", func(r *request) { r.header["apns-expiration"] = []string{"soon"} }, 400, "BadExpirationDate"},
		{"expiration negative", func(r *request) { r.header["apns-expiration"] = []string{"-1"} }, 400, "BadExpirationDate"},
		{"expiration 0", func(r *request) { r.header["apns-expiration"] = []string{"0"} }, 200, ""},
		{"collapse id 64 bytes", func(r *request) { r.header["apns-collapse-id"] = []string{strings.Repeat("c", 64)} }, 200, ""},
		{"collapse id 65 bytes", func(r *request) { r.header["apns-collapse-id"] = []string{strings.Repeat("c", 65)} }, 400, "BadCollapseId"},
		{"duplicate topic", func(r *request) { r.header["apns-topic"] = []string{topic, topic} }, 400, "DuplicateHeaders"},
		{"payload 4096", func(r *request) { r.body = payloadOfSize(4096) }, 200, ""},
		{"payload 4097", func(r *request) { r.body = payloadOfSize(4097) }, 413, "PayloadTooLarge"},
		{"voip payload 5120", func(r *request) {
			r.header["apns-push-type"] = []string{"voip"}
			r.header["apns-topic"] = []string{topic + ".voip"}
			r.body = payloadOfSize(5120)
		}, 200, ""},
		{"voip payload 5121", func(r *request) {
			r.header["apns-push-type"] = []string{"voip"}
			r.header["apns-topic"] = []string{topic + ".voip"}
			r.body = payloadOfSize(5121)
		}, 413, "PayloadTooLarge"},
		{"payload 1 MB", func(r *request) { r.body = payloadOfSize(1 << 20) }, 413, "PayloadTooLarge"},
		{"empty payload", func(r *request) { r.body = "" }, 400, "PayloadEmpty"},
		{"not JSON", func(r *request) { r.body = "hello" }, 400, "BadPayload"},
		{"JSON array", func(r *request) { r.body = "[1]" }, 400, "BadPayload"},
		{"no authorization", func(r *request) { r.header["authorization"] = nil }, 403, "MissingProviderToken"},
		{"basic auth", func(r *request) { r.header["authorization"] = []string{"basic dXNlcg=="} }, 403, "InvalidProviderToken"},
		{"garbage token", func(r *request) { r.header["authorization"] = []string{"bearer garbage"} }, 403, "InvalidProviderToken"},
		{"wrong key, same key ID", func(r *request) {
			r.header["authorization"] = []string{sign(other, f.keyID, teamID, time.Now())}
		}, 403, "InvalidProviderToken"},
		{"unknown key ID", func(r *request) {
			r.header["authorization"] = []string{sign(other, otherID, teamID, time.Now())}
		}, 403, "InvalidProviderToken"},
		{"wrong team", func(r *request) {
			r.header["authorization"] = []string{sign(f.keyPEM, f.keyID, "OTHERTEAM1", time.Now())}
		}, 403, "InvalidProviderToken"},
		{"token issued 2h ago", func(r *request) {
			r.header["authorization"] = []string{sign(f.keyPEM, f.keyID, teamID, time.Now().Add(-2*time.Hour))}
		}, 403, "ExpiredProviderToken"},
		{"token issued in 1h", func(r *request) {
			r.header["authorization"] = []string{sign(f.keyPEM, f.keyID, teamID, time.Now().Add(time.Hour))}
		}, 403, "InvalidProviderToken"},
		{"HS256 token", func(r *request) { r.header["authorization"] = []string{"bearer " + hs256} }, 403, "InvalidProviderToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.validRequest(t)
			tt.edit(&r)
			got := f.do(t, f.client, r)
			if got.status != tt.wantStatus || got.reason != tt.wantReason {
				t.Errorf("%s %s = %d %q, want %d %q", r.method, r.path, got.status, got.reason, tt.wantStatus, tt.wantReason)
			}
			if ids := r.header["apns-id"]; len(ids) == 1 && ids[0] == id {
				if got.apnsID != id {
					t.Errorf("apns-id = %q, want the request's %q", got.apnsID, id)
				}
			} else if len(got.apnsID) != 36 {
				t.Errorf("apns-id = %q, want a generated UUID", got.apnsID)
			}
		})
	}
}

// payloadOfSize is a JSON object of exactly n bytes.
func payloadOfSize(n int) string {
	const head, tail = `{"aps":{},"x":"`, `"}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

func TestGeneratedIDsAreUnique(t *testing.T) {
	f := newFixture(t)
	seen := map[string]bool{}
	for range 50 {
		got := f.do(t, f.client, f.validRequest(t))
		if seen[got.apnsID] {
			t.Fatalf("apns-id %q answered twice", got.apnsID)
		}
		seen[got.apnsID] = true
	}
}

func TestTopics(t *testing.T) {
	f := newFixture(t, apnsiotest.WithTopics(topic))
	tests := []struct {
		topic, pushType string
		wantStatus      int
		wantReason      string
	}{
		{topic, "alert", 200, ""},
		{topic + ".voip", "voip", 200, ""},
		{"com.example.other", "alert", 400, "TopicDisallowed"},
		{"com.example.other.voip", "voip", 400, "TopicDisallowed"},
	}
	for _, tt := range tests {
		r := f.validRequest(t)
		r.header["apns-topic"] = []string{tt.topic}
		r.header["apns-push-type"] = []string{tt.pushType}
		got := f.do(t, f.client, r)
		if got.status != tt.wantStatus || got.reason != tt.wantReason {
			t.Errorf("POST topic %s = %d %q, want %d %q", tt.topic, got.status, got.reason, tt.wantStatus, tt.wantReason)
		}
	}
}

func TestTokenState(t *testing.T) {
	f := newFixture(t)
	unregistered := strings.Repeat("1", 64)
	expired := strings.Repeat("2", 64)
	bound := strings.Repeat("3", 64)
	f.srv.Unregister(unregistered)
	f.srv.Expire(expired)
	f.srv.BindToken(bound, "com.example.other")

	before := time.Now().UnixMilli()
	r := f.validRequest(t)
	r.path = "/3/device/" + unregistered
	got := f.do(t, f.client, r)
	if got.status != 410 || got.reason != "Unregistered" {
		t.Errorf("POST unregistered token = %d %q, want 410 Unregistered", got.status, got.reason)
	}
	if got.timestamp < before-1000 || got.timestamp > time.Now().UnixMilli() {
		t.Errorf("Unregistered timestamp = %d, want about %d (ms)", got.timestamp, before)
	}

	r.path = "/3/device/" + expired
	if got := f.do(t, f.client, r); got.status != 410 || got.reason != "ExpiredToken" || got.timestamp != 0 {
		t.Errorf("POST expired token = %d %q timestamp %d, want 410 ExpiredToken, no timestamp", got.status, got.reason, got.timestamp)
	}

	r.path = "/3/device/" + bound
	if got := f.do(t, f.client, r); got.status != 400 || got.reason != "DeviceTokenNotForTopic" {
		t.Errorf("POST bound token, other topic = %d %q, want 400 DeviceTokenNotForTopic", got.status, got.reason)
	}
	r.header["apns-topic"] = []string{"com.example.other"}
	if got := f.do(t, f.client, r); got.status != 200 {
		t.Errorf("POST bound token, its topic = %d %q, want 200", got.status, got.reason)
	}
	if got := f.srv.Count(); got != 1 {
		t.Errorf("Count() = %d, want 1", got)
	}
}

func TestFailNext(t *testing.T) {
	f := newFixture(t)
	f.srv.FailNext(2, 503, "ServiceUnavailable")
	var got []response
	for range 3 {
		r := f.do(t, f.client, f.validRequest(t))
		r.apnsID = ""
		got = append(got, r)
	}
	want := []response{{status: 503, reason: "ServiceUnavailable"}, {status: 503, reason: "ServiceUnavailable"}, {status: 200}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(response{})); diff != "" {
		t.Errorf("responses after FailNext(2, 503) (-want +got):\n%s", diff)
	}
	if c, r := f.srv.Count(), f.srv.Requests(); c != 1 || r != 3 {
		t.Errorf("Count(), Requests() = %d, %d, want 1, 3", c, r)
	}

	// Authentication comes first: a rejected token does not use up a failure.
	f.srv.FailNext(1, 429, "TooManyRequests")
	r := f.validRequest(t)
	r.header["authorization"] = nil
	if got := f.do(t, f.client, r); got.status != 403 {
		t.Errorf("unauthenticated POST during FailNext = %d %q, want 403", got.status, got.reason)
	}
	if got := f.do(t, f.client, f.validRequest(t)); got.status != 429 || got.reason != "TooManyRequests" {
		t.Errorf("POST after FailNext(1, 429) = %d %q, want 429 TooManyRequests", got.status, got.reason)
	}
}

func TestRecording(t *testing.T) {
	f := newFixture(t, apnsiotest.WithRecordLimit(2), apnsiotest.WithTokenCountLimit(2))
	const id = "123e4567-e89b-12d3-a456-426614174000"
	r := f.validRequest(t)
	r.header["apns-id"] = []string{id}
	r.header["apns-priority"] = []string{"10"}
	r.header["apns-expiration"] = []string{"1700000000"}
	r.header["apns-collapse-id"] = []string{"score"}
	f.do(t, f.client, r)

	tokens := []string{strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)}
	for _, tok := range tokens {
		r := f.validRequest(t)
		r.path = "/3/device/" + tok
		f.do(t, f.client, r)
	}

	got := f.srv.Received()
	want := []apnsiotest.Notification{
		{
			Token: devTok, Topic: topic, PushType: "alert", Priority: "10", Expiration: "1700000000",
			CollapseID: "score", ApnsID: id, Payload: []byte(`{"aps":{"alert":"hi"}}`), KeyID: f.keyID, TeamID: teamID,
		},
		{Token: tokens[0], Topic: topic, PushType: "alert", Payload: []byte(`{"aps":{"alert":"hi"}}`), KeyID: f.keyID, TeamID: teamID},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(apnsiotest.Notification{}, "Received", "ApnsID")); diff != "" {
		t.Errorf("Received() (-want +got):\n%s", diff)
	}
	if len(got) == 2 && (got[0].ApnsID != id || len(got[1].ApnsID) != 36 || got[0].Received.IsZero()) {
		t.Errorf("Received() = %+v, want the request's apns-id first, a generated one second, and receive times", got)
	}
	if c := f.srv.Count(); c != 4 {
		t.Errorf("Count() = %d, want 4", c)
	}
	wantByToken := map[string]int{devTok: 1, tokens[0]: 1, tokens[1]: 0 /* past the token count limit */}
	for tok, want := range wantByToken {
		if got := f.srv.CountByToken(tok); got != want {
			t.Errorf("CountByToken(%s) = %d, want %d", tok, got, want)
		}
	}

	f.srv.Reset()
	if c, n, rq := f.srv.Count(), len(f.srv.Received()), f.srv.Requests(); c != 0 || n != 0 || rq != 0 {
		t.Errorf("after Reset: Count(), len(Received()), Requests() = %d, %d, %d, want 0, 0, 0", c, n, rq)
	}
}

func TestRejectsHTTP1(t *testing.T) {
	f := newFixture(t)
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: f.srv.RootCAs()},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
	}}
	req, err := http.NewRequest(http.MethodPost, f.srv.URL()+"/3/device/"+devTok, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 1 || resp.StatusCode != 505 || !bytes.Contains(body, []byte("HTTP2Required")) {
		t.Errorf("HTTP/1.1 POST = %s %d %s, want HTTP/1.1 505 HTTP2Required", resp.Proto, resp.StatusCode, body)
	}
}

func TestMaxConcurrentStreamsAdvertised(t *testing.T) {
	for _, tt := range []struct {
		opts []apnsiotest.Option
		want uint32
	}{
		{nil, apnsiotest.DefaultMaxConcurrentStreams},
		{[]apnsiotest.Option{apnsiotest.WithMaxConcurrentStreams(7)}, 7},
	} {
		f := newFixture(t, tt.opts...)
		if got := advertisedMaxStreams(t, f.srv); got != tt.want {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", got, tt.want)
		}
	}
}

// advertisedMaxStreams reads the server's first SETTINGS frame off a raw
// HTTP/2 connection.
func advertisedMaxStreams(t *testing.T, srv *apnsiotest.Server) uint32 {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL(), "https://"), &tls.Config{RootCAs: srv.RootCAs(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN protocol = %q, want h2", p)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if sf, ok := frame.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
			if !ok {
				t.Fatal("SETTINGS has no MAX_CONCURRENT_STREAMS")
			}
			return v
		}
	}
}

func TestLatency(t *testing.T) {
	const d = 80 * time.Millisecond
	f := newFixture(t, apnsiotest.WithLatency(d))
	start := time.Now()
	f.do(t, f.client, f.validRequest(t))
	if got := time.Since(start); got < d {
		t.Errorf("POST with WithLatency(%v) took %v, want at least %v", d, got, d)
	}
	f.srv.SetLatency(0)
	start = time.Now()
	f.do(t, f.client, f.validRequest(t))
	if got := time.Since(start); got >= d {
		t.Errorf("POST after SetLatency(0) took %v, want less than %v", got, d)
	}
}

func TestCAFile(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := f.srv.WriteCAFile(path); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pem, f.srv.CertPEM()) {
		t.Errorf("CA file = %q, want CertPEM() %q", pem, f.srv.CertPEM())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	c := &http.Client{Transport: apnsio.NewTransport(&tls.Config{RootCAs: pool})}
	if got := f.do(t, c, f.validRequest(t)); got.status != 200 {
		t.Errorf("POST trusting the CA file = %d %q, want 200", got.status, got.reason)
	}

	// Another server's CA does not vouch for this one.
	g := newFixture(t)
	c = &http.Client{Transport: apnsio.NewTransport(&tls.Config{RootCAs: g.srv.RootCAs()})}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL()+"/3/device/"+devTok, strings.NewReader(`{}`))
	_, err = c.Do(req)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("POST trusting another server's CA: error %v, want x509.UnknownAuthorityError", err)
	}
}

func TestClientCertificate(t *testing.T) {
	certPEM, keyPEM, err := apnsiotest.GenerateClientCert(topic)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, apnsiotest.WithClientCA(pool))
	c := &http.Client{Transport: apnsio.NewTransport(&tls.Config{RootCAs: f.srv.RootCAs(), Certificates: []tls.Certificate{cert}})}

	tests := []struct {
		name       string
		edit       func(*request)
		wantStatus int
		wantReason string
	}{
		{"no token needed", func(r *request) { r.header["authorization"] = nil }, 200, ""},
		{"topic defaults to the certificate's", func(r *request) {
			r.header["authorization"] = nil
			r.header["apns-topic"] = nil
		}, 200, ""},
		{"voip topic of the certificate's app", func(r *request) {
			r.header["authorization"] = nil
			r.header["apns-topic"] = []string{topic + ".voip"}
			r.header["apns-push-type"] = []string{"voip"}
		}, 200, ""},
		{"other topic", func(r *request) {
			r.header["authorization"] = nil
			r.header["apns-topic"] = []string{"com.example.other"}
		}, 400, "TopicDisallowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.srv.Reset()
			r := f.validRequest(t)
			tt.edit(&r)
			got := f.do(t, c, r)
			if got.status != tt.wantStatus || got.reason != tt.wantReason {
				t.Errorf("POST = %d %q, want %d %q", got.status, got.reason, tt.wantStatus, tt.wantReason)
			}
			if tt.wantStatus == 200 {
				rec := f.srv.Received()
				if len(rec) != 1 || !strings.HasPrefix(rec[0].Topic, topic) || rec[0].KeyID != "" {
					t.Errorf("Received() = %+v, want one notification for %s without a key ID", rec, topic)
				}
			}
		})
	}

	// Without a certificate, the connection still needs a provider token.
	r := f.validRequest(t)
	r.header["authorization"] = nil
	if got := f.do(t, f.client, r); got.status != 403 || got.reason != "MissingProviderToken" {
		t.Errorf("POST without certificate or token = %d %q, want 403 MissingProviderToken", got.status, got.reason)
	}

	// A certificate from an unknown CA fails the handshake.
	strangerPEM, strangerKey, err := apnsiotest.GenerateClientCert(topic)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := tls.X509KeyPair(strangerPEM, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	c = &http.Client{Transport: apnsio.NewTransport(&tls.Config{RootCAs: f.srv.RootCAs(), Certificates: []tls.Certificate{stranger}})}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL()+"/3/device/"+devTok, strings.NewReader(`{}`))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("POST with an unknown client certificate = %d, want a TLS error", resp.StatusCode)
	}
}

func TestClientCertRequired(t *testing.T) {
	certPEM, _, err := apnsiotest.GenerateClientCert(topic)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	f := newFixture(t, apnsiotest.WithClientCA(pool), apnsiotest.WithClientCertRequired())
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL()+"/3/device/"+devTok, strings.NewReader(`{}`))
	req.Header.Set("authorization", f.bearer(t))
	if resp, err := f.client.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("POST without a client certificate = %d, want a TLS error", resp.StatusCode)
	}
}

func TestNewServerErrors(t *testing.T) {
	tests := []struct {
		name string
		opts []apnsiotest.Option
	}{
		{"bad p8", []apnsiotest.Option{apnsiotest.WithP8([]byte("not a key"), "K", teamID)}},
		{"no team", []apnsiotest.Option{apnsiotest.WithTokenKey("K", "", nil)}},
		{"zero streams", []apnsiotest.Option{apnsiotest.WithMaxConcurrentStreams(0)}},
		{"negative record limit", []apnsiotest.Option{apnsiotest.WithRecordLimit(-1)}},
		{"cert required without CA", []apnsiotest.Option{apnsiotest.WithClientCertRequired()}},
		{"bad listen address", []apnsiotest.Option{apnsiotest.WithListenAddr("256.0.0.1:0")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := apnsiotest.NewServer(tt.opts...)
			if err == nil {
				srv.Close()
				t.Fatal("NewServer() = nil error, want an error")
			}
			if !strings.HasPrefix(err.Error(), "apnsiotest: ") {
				t.Errorf("NewServer() error %q, want the apnsiotest: prefix", err)
			}
		})
	}
}

// TestApns2Client drives the server with the client the senders use.
func TestApns2Client(t *testing.T) {
	f := newFixture(t)
	key, err := token.AuthKeyFromBytes(f.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: f.keyID, TeamID: teamID})
	c.Host = f.srv.URL()
	c.HTTPClient.Transport = apnsio.NewTransport(&tls.Config{RootCAs: f.srv.RootCAs()})
	defer c.CloseIdleConnections()

	n := &apns2.Notification{DeviceToken: devTok, Topic: topic, Payload: []byte(`{"aps":{"alert":"hi"}}`), Priority: apns2.PriorityHigh}
	res, err := c.PushWithContext(context.Background(), n)
	if err != nil {
		t.Fatalf("Push() = %v", err)
	}
	if !res.Sent() || len(res.ApnsID) != 36 {
		t.Errorf("Push() = %+v, want sent with an apns-id", res)
	}

	f.srv.Unregister(devTok)
	res, err = c.PushWithContext(context.Background(), n)
	if err != nil {
		t.Fatalf("Push() = %v", err)
	}
	if res.StatusCode != 410 || res.Reason != apns2.ReasonUnregistered || time.Since(res.Timestamp.Time) > time.Minute {
		t.Errorf("Push() to an unregistered token = %+v, want 410 Unregistered with a recent timestamp", res)
	}
}
