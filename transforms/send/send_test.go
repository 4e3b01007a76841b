package send

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/connectors/fcmio"
	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

const (
	app    = "com.example.news"
	teamID = "PUSHFLOW01"
)

func token(i int) string { return fmt.Sprintf("%064x", i) }

type fixture struct {
	addr string // redis-server's
	srv  *apnsiotest.Server
	reg  *redisio.Registry
	fn   *sendFn
}

// newFixture starts a redis-server holding events and an APNs-protocol
// server, and a sendFn set up on both.
func newFixture(t testing.TB, events ...pushflow.DeviceEvent) *fixture {
	t.Helper()
	return newFixtureWith(t, nil, events...)
}

// newFixtureWith is newFixture with options for the APNs server.
func newFixtureWith(t testing.TB, srvOpts []apnsiotest.Option, events ...pushflow.DeviceEvent) *fixture {
	t.Helper()
	addr := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	reg := redisio.New(c)
	if err := reg.Apply(context.Background(), events); err != nil {
		t.Fatalf("seed registry: %v", err)
	}

	keyPEM, keyID, err := apnsiotest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := apnsiotest.NewServer(append([]apnsiotest.Option{apnsiotest.WithP8(keyPEM, keyID, teamID)}, srvOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "key.p8")
	if err := srv.WriteCAFile(caPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	fn := &sendFn{Cfg: Config{RedisAddr: addr, APNs: apnsio.Config{
		Endpoint: srv.URL(), CAFile: caPath, KeyFile: keyPath, KeyID: keyID, TeamID: teamID,
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	}, RetryMaxAttempts: 1}} // no retry lane: a transient failure fails at once (retry_test.go has the lane)
	if err := fn.Cfg.APNs.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := fn.Setup(); err != nil {
		t.Fatalf("Setup() = %v", err)
	}
	t.Cleanup(fn.Teardown)
	return &fixture{addr: addr, srv: srv, reg: reg, fn: fn}
}

// unexpectedRetry is the retry output of a sendFn whose tests expect no
// device to be sent to the retry lane.
func unexpectedRetry(t testing.TB) func(beam.EventTime, recipient.Batch) {
	return func(_ beam.EventTime, b recipient.Batch) {
		t.Errorf("send: %d devices of %s sent to the retry lane, want none", len(b.Recipients), b.Request.Req.ID)
	}
}

// run sends b alone in a bundle and returns its events.
func (f *fixture) run(t *testing.T, b recipient.Batch) []pushflow.DeliveryEvent {
	t.Helper()
	return events(f.bundle(t, stamped{ts: 1, b: b}))
}

// stamped is a batch or an event with its element timestamp.
type stamped struct {
	ts beam.EventTime
	b  recipient.Batch
	ev pushflow.DeliveryEvent
}

// bundle runs one bundle over in on f.fn as the runner does (StartBundle,
// ProcessElement per batch, FinishBundle) and returns the events with
// their timestamps, in emission order.
func (f *fixture) bundle(t testing.TB, in ...stamped) []stamped {
	t.Helper()
	out, _ := runBundle(t, f.fn, in)
	return out
}

// runBundle runs one bundle over in on fn and returns the events, and how
// many of them had been emitted after each ProcessElement call.
func runBundle(t testing.TB, fn *sendFn, in []stamped) (out []stamped, emitted []int) {
	t.Helper()
	ctx := context.Background()
	emit := func(ts beam.EventTime, ev pushflow.DeliveryEvent) { out = append(out, stamped{ts: ts, ev: ev}) }
	fn.StartBundle(ctx, emit, unexpectedRetry(t))
	for _, s := range in {
		if err := fn.ProcessElement(ctx, s.ts, s.b, emit, unexpectedRetry(t)); err != nil {
			t.Fatalf("ProcessElement(%s) = %v, want nil", s.b.Request.Req.ID, err)
		}
		emitted = append(emitted, len(out))
	}
	if err := fn.FinishBundle(ctx, emit, unexpectedRetry(t)); err != nil {
		t.Fatalf("FinishBundle() = %v, want nil", err)
	}
	return out, emitted
}

func events(ss []stamped) []pushflow.DeliveryEvent {
	evs := make([]pushflow.DeliveryEvent, len(ss))
	for i, s := range ss {
		evs[i] = s.ev
	}
	return evs
}

// enableFCM starts an FCM-protocol server and sets f.fn up again to send
// Android devices to it.
func (f *fixture) enableFCM(t testing.TB) *fcmiotest.Server {
	t.Helper()
	fcm, err := fcmiotest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fcm.Close)
	f.fn.Teardown()
	f.fn.Cfg.FCMEnabled = true
	f.fn.Cfg.FCM = fcmio.Config{Endpoint: fcm.URL(), ProjectID: "test-project", BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if err := f.fn.Setup(); err != nil {
		t.Fatalf("Setup() = %v", err)
	}
	return fcm
}

func registerEvent(user, device, platform string, i int) pushflow.DeviceEvent {
	tok := token(i)
	if platform == pushflow.PlatformAndroid {
		tok = "fcm:" + device
	}
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: user, DeviceID: device, Platform: platform, Token: tok}
}

func ios(user, device string, i int) recipient.Recipient {
	return recipient.Recipient{UserID: user, DeviceID: device, Platform: pushflow.PlatformIOS, Token: token(i)}
}

func batch(id string, offset int64, rs ...recipient.Recipient) recipient.Batch {
	return recipient.Batch{
		Request: recipient.Request{
			Req: pushflow.PushRequest{V: 1, ID: id, App: app, Campaign: "demo", Category: "news", Priority: pushflow.PriorityNormal,
				Target: pushflow.Target{Users: []string{"u1"}}, Notification: pushflow.Notification{Title: "Match starts", Body: "Kick-off"},
				TTLSeconds: 3600},
			Source:     recipient.Source{Topic: pushflow.TopicRequests, Partition: 0, Offset: offset},
			ReceivedAt: time.Now(),
		},
		Recipients: rs,
	}
}

// event is the expected send-stage event of r; times, latency, provider
// id and attempts are compared apart.
func event(b recipient.Batch, r recipient.Recipient, outcome, reason string) pushflow.DeliveryEvent {
	return b.Event(time.Time{}, r, pushflow.StageSend, outcome, reason)
}

var opts = cmp.Options{
	cmpopts.IgnoreFields(pushflow.DeliveryEvent{}, "EventID", "EventTime", "LatencyMs", "ProviderID", "Attempts"),
	cmpopts.SortSlices(func(a, b pushflow.DeliveryEvent) bool { return a.DeviceID < b.DeviceID }),
	cmpopts.EquateEmpty(),
}

// checkSent checks every sent event carries an apns-id the server answered
// and the given number of attempts.
func (f *fixture) checkSent(t *testing.T, evs []pushflow.DeliveryEvent, attempts int) {
	t.Helper()
	ids := map[string]bool{}
	for _, n := range f.srv.Received() {
		ids[n.ApnsID] = true
	}
	for _, ev := range evs {
		if ev.Outcome != pushflow.OutcomeSent {
			continue
		}
		if ev.ProviderID == "" || !ids[ev.ProviderID] {
			t.Errorf("sent event %s/%s has provider id %q, want one of the server's apns-ids", ev.RequestID, ev.DeviceID, ev.ProviderID)
		}
		if ev.Attempts != attempts {
			t.Errorf("sent event %s/%s has %d attempts, want %d", ev.RequestID, ev.DeviceID, ev.Attempts, attempts)
		}
	}
}

func TestSendFnSent(t *testing.T) {
	f := newFixture(t)
	topicOverride := ios("u2", "d3", 3)
	topicOverride.Topic = "com.example.news.beta"
	b := batch("r-1", 10, ios("u1", "d1", 1), ios("u1", "d2", 2), topicOverride)
	before := time.Now()
	got := f.run(t, b)
	want := []pushflow.DeliveryEvent{
		event(b, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
		event(b, ios("u1", "d2", 2), pushflow.OutcomeSent, ""),
		event(b, topicOverride, pushflow.OutcomeSent, ""),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("send(3 ios devices) mismatch (-want +got):\n%s", diff)
	}
	f.checkSent(t, got, 1)
	for _, ev := range got {
		if ev.EventTime.Before(before.UTC().Truncate(time.Microsecond)) || ev.LatencyMs < 0 {
			t.Errorf("event %s: EventTime %v, LatencyMs %d; want after the call started, non-negative", ev.DeviceID, ev.EventTime, ev.LatencyMs)
		}
	}
	if n := f.srv.Count(); n != 3 {
		t.Errorf("server accepted %d notifications, want 3", n)
	}
	topics := map[string]string{}
	for _, n := range f.srv.Received() {
		topics[n.Token] = n.Topic
	}
	wantTopics := map[string]string{token(1): app, token(2): app, token(3): "com.example.news.beta"}
	if diff := cmp.Diff(wantTopics, topics); diff != "" {
		t.Errorf("apns-topic by token (-want +got):\n%s", diff)
	}
}

func TestSendFnUnregistered(t *testing.T) {
	f := newFixture(t, registerEvent("u5", "d6", pushflow.PlatformIOS, 6), registerEvent("u5", "d7", pushflow.PlatformIOS, 7))
	ctx := context.Background()
	f.srv.Unregister(token(6))
	b := batch("r-410", 11, ios("u5", "d6", 6), ios("u5", "d7", 7))
	got := f.run(t, b)
	want := []pushflow.DeliveryEvent{
		event(b, ios("u5", "d6", 6), pushflow.OutcomeFailed, "Unregistered"),
		event(b, ios("u5", "d7", 7), pushflow.OutcomeSent, ""),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("send(unregistered token) mismatch (-want +got):\n%s", diff)
	}
	for _, ev := range got {
		if ev.DeviceID == "d6" && ev.Attempts != 1 {
			t.Errorf("410 event attempts = %d, want 1 (not retried)", ev.Attempts)
		}
	}
	devs, err := f.reg.Devices(ctx, app, []string{"d6", "d7"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := devs["d6"]; ok {
		t.Errorf("Devices(d6) after a 410 = %+v, want the device gone", devs["d6"])
	}
	if _, ok := devs["d7"]; !ok {
		t.Errorf("Devices(d7) = absent, want the other device kept")
	}
	byUser, err := f.reg.UserDevices(ctx, app, []string{"u5"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range byUser["u5"] {
		ids = append(ids, d.ID)
	}
	if diff := cmp.Diff([]string{"d7"}, ids); diff != "" {
		t.Errorf("UserDevices(u5) after a 410 on d6 (-want +got):\n%s", diff)
	}
}

// TestSendFnUnregisteredStaleToken checks a 410 for an old token does not
// remove a device that re-registered with a new token meanwhile.
func TestSendFnUnregisteredStaleToken(t *testing.T) {
	f := newFixture(t, registerEvent("u5", "d6", pushflow.PlatformIOS, 6))
	ctx := context.Background()
	f.srv.Unregister(token(6))
	if err := f.reg.Apply(ctx, []pushflow.DeviceEvent{registerEvent("u5", "d6", pushflow.PlatformIOS, 60)}); err != nil {
		t.Fatal(err)
	}
	got := f.run(t, batch("r-stale", 12, ios("u5", "d6", 6)))
	if len(got) != 1 || got[0].Reason != "Unregistered" {
		t.Fatalf("send(old token) = %+v, want one Unregistered event", got)
	}
	devs, err := f.reg.Devices(ctx, app, []string{"d6"})
	if err != nil {
		t.Fatal(err)
	}
	if devs["d6"].Token != token(60) {
		t.Errorf("Devices(d6).Token = %q, want the new token %q kept", devs["d6"].Token, token(60))
	}
}

func TestSendFnAndroid(t *testing.T) {
	f := newFixture(t)
	android := recipient.Recipient{UserID: "u4", DeviceID: "d5", Platform: pushflow.PlatformAndroid, Token: "fcm:d5"}
	unknown := recipient.Recipient{UserID: "u4", DeviceID: "d5b", Platform: "", Token: "x"}
	b := batch("r-android", 13, android, unknown, ios("u1", "d1", 1))
	got := f.run(t, b)
	want := []pushflow.DeliveryEvent{
		event(b, android, pushflow.OutcomeFailed, pushflow.ReasonNoProvider),
		event(b, unknown, pushflow.OutcomeFailed, pushflow.ReasonNoProvider),
		event(b, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("send(android) mismatch (-want +got):\n%s", diff)
	}
	if n := f.srv.Requests(); n != 1 {
		t.Errorf("server got %d requests, want 1 (android never reaches APNs)", n)
	}
	for _, ev := range got {
		if ev.Platform == pushflow.PlatformAndroid && (ev.Attempts != 0 || ev.ProviderID != "") {
			t.Errorf("android event attempts %d provider id %q, want 0 and empty", ev.Attempts, ev.ProviderID)
		}
	}
}

func TestSendFnExpired(t *testing.T) {
	f := newFixture(t)
	b := batch("r-expired", 14, ios("u1", "d1", 1), recipient.Recipient{UserID: "u4", DeviceID: "d5", Platform: pushflow.PlatformAndroid, Token: "fcm:d5"})
	b.Request.Req.TTLSeconds = 1
	b.Request.ReceivedAt = time.Now().Add(-time.Hour)
	got := f.run(t, b)
	want := []pushflow.DeliveryEvent{
		event(b, b.Recipients[0], pushflow.OutcomeDropped, pushflow.ReasonExpired),
		event(b, b.Recipients[1], pushflow.OutcomeDropped, pushflow.ReasonExpired),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("send(expired) mismatch (-want +got):\n%s", diff)
	}
	for _, ev := range got {
		if ev.LatencyMs < time.Hour.Milliseconds() {
			t.Errorf("expired event LatencyMs = %d, want >= 1h", ev.LatencyMs)
		}
	}
	if n, r := f.srv.Count(), f.srv.Requests(); n != 0 || r != 0 {
		t.Errorf("server accepted %d of %d requests, want none sent", n, r)
	}

	// The TTL counts from created_at when the producer set it.
	b = batch("r-created", 15, ios("u1", "d1", 1))
	b.Request.Req.TTLSeconds = 60
	b.Request.Req.CreatedAt = time.Now().Add(-2 * time.Minute)
	if got := f.run(t, b); len(got) != 1 || got[0].Reason != pushflow.ReasonExpired {
		t.Errorf("send(created 2m ago, ttl 60s) = %+v, want dropped expired", got)
	}
	// No TTL never expires.
	b = batch("r-nottl", 16, ios("u1", "d1", 1))
	b.Request.Req.TTLSeconds = 0
	b.Request.ReceivedAt = time.Now().Add(-30 * 24 * time.Hour)
	if got := f.run(t, b); len(got) != 1 || got[0].Outcome != pushflow.OutcomeSent {
		t.Errorf("send(no ttl, received 30d ago) = %+v, want sent", got)
	}
}

func TestSendFnExpiration(t *testing.T) {
	f := newFixture(t)
	b := batch("r-exp", 17, ios("u1", "d1", 1))
	b.Request.Req.TTLSeconds = 600
	if got := f.run(t, b); len(got) != 1 || got[0].Outcome != pushflow.OutcomeSent {
		t.Fatalf("send = %+v, want sent", got)
	}
	recv := f.srv.Received()
	if len(recv) != 1 {
		t.Fatalf("server received %d, want 1", len(recv))
	}
	want := fmt.Sprint(b.Request.ReceivedAt.Add(600 * time.Second).Unix())
	if recv[0].Expiration != want {
		t.Errorf("apns-expiration = %q, want %q (request time + ttl)", recv[0].Expiration, want)
	}
}

func TestSendFnDedup(t *testing.T) {
	f := newFixture(t)
	rs := []recipient.Recipient{ios("u1", "d1", 1), ios("u2", "d3", 3)}

	first := batch("r-3", 20, rs...)
	sent := f.run(t, first)
	if len(sent) != 2 || sent[0].Outcome != pushflow.OutcomeSent || sent[1].Outcome != pushflow.OutcomeSent {
		t.Fatalf("first send = %+v, want 2 sent", sent)
	}
	// A replay of the same Kafka record (after a crash or a bundle failure)
	// re-emits the recorded outcomes — the very same events, provider ids
	// and all — and sends nothing.
	replay := first
	got := f.run(t, replay)
	if diff := cmp.Diff(sent, got, cmpopts.EquateApproxTime(time.Millisecond)); diff != "" {
		t.Errorf("send(replay from the same source) mismatch (-first +replay):\n%s", diff)
	}
	if n := f.srv.Count(); n != 2 {
		t.Errorf("server accepted %d after a replay, want 2 (effectively once)", n)
	}

	// The same request submitted again (another record) is a duplicate,
	// except for a device the first copy did not reach.
	again := batch("r-3", 21, rs[0], ios("u3", "d4", 4))
	got = f.run(t, again)
	want := []pushflow.DeliveryEvent{
		event(again, rs[0], pushflow.OutcomeDropped, pushflow.ReasonDuplicate),
		event(again, ios("u3", "d4", 4), pushflow.OutcomeSent, ""),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("send(same request from another source) mismatch (-want +got):\n%s", diff)
	}
	if n := f.srv.Count(); n != 3 {
		t.Errorf("server accepted %d, want 3 (the duplicate not sent)", n)
	}

	// Another request id to the same devices is not a duplicate.
	other := batch("r-other", 21, rs...)
	if got := f.run(t, other); len(got) != 2 || got[0].Outcome != pushflow.OutcomeSent || got[1].Outcome != pushflow.OutcomeSent {
		t.Errorf("send(other request, same devices) = %+v, want 2 sent", got)
	}
}

func TestSendFnRetries(t *testing.T) {
	f := newFixture(t)
	f.srv.FailNext(2, 503, "ServiceUnavailable")
	b := batch("r-retry", 30, ios("u1", "d1", 1))
	got := f.run(t, b)
	if diff := cmp.Diff([]pushflow.DeliveryEvent{event(b, ios("u1", "d1", 1), pushflow.OutcomeSent, "")}, got, opts); diff != "" {
		t.Errorf("send(after 2 x 503) mismatch (-want +got):\n%s", diff)
	}
	f.checkSent(t, got, 3)
	if n, r := f.srv.Count(), f.srv.Requests(); n != 1 || r != 3 {
		t.Errorf("server accepted %d of %d requests, want 1 of 3", n, r)
	}

	// More failures than attempts: failed with the provider's reason.
	f.srv.Reset()
	f.srv.FailNext(10, 503, "ServiceUnavailable")
	b = batch("r-retry-out", 31, ios("u1", "d1", 1))
	got = f.run(t, b)
	if diff := cmp.Diff([]pushflow.DeliveryEvent{event(b, ios("u1", "d1", 1), pushflow.OutcomeFailed, "ServiceUnavailable")}, got, opts); diff != "" {
		t.Errorf("send(after 10 x 503) mismatch (-want +got):\n%s", diff)
	}
	if len(got) == 1 && got[0].Attempts != apnsio.DefaultMaxAttempts {
		t.Errorf("attempts = %d, want %d (the default maximum)", got[0].Attempts, apnsio.DefaultMaxAttempts)
	}
	f.srv.FailNext(0, 0, "")

	// A permanent error is not retried.
	f.srv.Reset()
	b = batch("r-bad-token", 32, recipient.Recipient{UserID: "u1", DeviceID: "dx", Platform: pushflow.PlatformIOS, Token: "abc"})
	got = f.run(t, b)
	if len(got) != 1 || got[0].Outcome != pushflow.OutcomeFailed || got[0].Reason != "BadDeviceToken" || got[0].Attempts != 1 {
		t.Errorf("send(bad token) = %+v, want failed BadDeviceToken after 1 attempt", got)
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ttl      int64
		received time.Time
		created  time.Time
		want     bool
	}{
		{0, now.Add(-365 * 24 * time.Hour), time.Time{}, false},
		{60, now.Add(-59 * time.Second), time.Time{}, false},
		{60, now.Add(-60 * time.Second), time.Time{}, false}, // exactly at the deadline
		{60, now.Add(-61 * time.Second), time.Time{}, true},
		{60, now, now.Add(-61 * time.Second), true}, // created_at wins
		{60, now.Add(-61 * time.Second), now, false},
	} {
		r := recipient.Request{Req: pushflow.PushRequest{TTLSeconds: tt.ttl, CreatedAt: tt.created}, ReceivedAt: tt.received}
		if got := Expired(r, now); got != tt.want {
			t.Errorf("Expired(ttl %d, received %v, created %v) = %v, want %v", tt.ttl, tt.received, tt.created, got, tt.want)
		}
	}
}

// TestSendFnFCM sends Android devices through FCM: sent with the message
// name, and UNREGISTERED removes the token, while iOS devices of the same
// batch go to APNs.
func TestSendFnFCM(t *testing.T) {
	live, gone := fcmiotest.Token(1), fcmiotest.Token(2)
	f := newFixture(t,
		pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: "u4", DeviceID: "d5", Platform: pushflow.PlatformAndroid, Token: live},
		pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: "u5", DeviceID: "d6", Platform: pushflow.PlatformAndroid, Token: gone},
	)
	fcm := f.enableFCM(t)
	fcm.Unregister(gone)

	a := recipient.Recipient{UserID: "u4", DeviceID: "d5", Platform: pushflow.PlatformAndroid, Token: live}
	g := recipient.Recipient{UserID: "u5", DeviceID: "d6", Platform: pushflow.PlatformAndroid, Token: gone}
	b := batch("r-fcm", 21, a, g, ios("u1", "d1", 1))
	got := f.run(t, b)
	want := []pushflow.DeliveryEvent{
		event(b, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
		event(b, a, pushflow.OutcomeSent, ""),
		event(b, g, pushflow.OutcomeFailed, "UNREGISTERED"),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("send(fcm) mismatch (-want +got):\n%s", diff)
	}
	for _, ev := range got {
		if ev.DeviceID == "d5" && !strings.HasPrefix(ev.ProviderID, "projects/test-project/messages/") {
			t.Errorf("FCM sent event provider id = %q, want the FCM message name", ev.ProviderID)
		}
	}
	if fcm.Count() != 1 || fcm.CountByToken(live) != 1 {
		t.Errorf("FCM server accepted %d (live token %d), want 1 and 1", fcm.Count(), fcm.CountByToken(live))
	}
	if f.srv.Count() != 1 {
		t.Errorf("APNs server accepted %d, want 1 (android never reaches APNs)", f.srv.Count())
	}
	devs, err := f.reg.Devices(context.Background(), app, []string{"d5", "d6"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := devs["d6"]; ok {
		t.Errorf("d6 still registered after UNREGISTERED, want its token removed")
	}
	if _, ok := devs["d5"]; !ok {
		t.Errorf("d5 removed, want it kept")
	}
}
