package send

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// ordered compares events in order; times, latency, provider id and
// attempts are compared apart.
var ordered = cmp.Options{
	cmpopts.IgnoreFields(pushflow.DeliveryEvent{}, "EventTime", "LatencyMs", "ProviderID", "Attempts"),
	cmpopts.EquateEmpty(),
}

func timestamps(ss []stamped) []beam.EventTime {
	ts := make([]beam.EventTime, len(ss))
	for i, s := range ss {
		ts[i] = s.ts
	}
	return ts
}

// TestSendFnBundleSameAsPerBatch sends batches of several requests (two
// apps, categories and priorities, the same user in two requests, an
// expired one, a duplicate submission, a replay, unregistered tokens, a
// device without provider, an empty batch) in one bundle, and checks the
// events, their order and timestamps are those of one bundle per batch.
func TestSendFnBundleSameAsPerBatch(t *testing.T) {
	live, gone := fcmiotest.Token(1), fcmiotest.Token(2)
	seed := []pushflow.DeviceEvent{
		{V: 1, Op: pushflow.OpRegister, App: app, UserID: "u4", DeviceID: "d5", Platform: pushflow.PlatformAndroid, Token: live},
		{V: 1, Op: pushflow.OpRegister, App: app, UserID: "u6", DeviceID: "d8", Platform: pushflow.PlatformAndroid, Token: gone},
		registerEvent("u5", "d6", pushflow.PlatformIOS, 6),
	}
	android := func(user, device, tok string) recipient.Recipient {
		return recipient.Recipient{UserID: user, DeviceID: device, Platform: pushflow.PlatformAndroid, Token: tok}
	}
	unknown := recipient.Recipient{UserID: "u7", DeviceID: "d7", Platform: "", Token: "x"}

	b1 := batch("r-a", 10, ios("u1", "d1", 1), android("u4", "d5", live), ios("u1", "d2", 2))
	b2 := batch("r-b", 11, ios("u1", "d1", 1))
	b2.Request.Req.App, b2.Request.Req.Category, b2.Request.Req.Priority = "com.example.sport", "sport", pushflow.PriorityRealtime
	b3 := batch("r-c", 12, ios("u2", "d3", 3), android("u4", "d5", live))
	b3.Request.Req.TTLSeconds = 1
	b3.Request.ReceivedAt = time.Now().Add(-time.Hour)
	b4 := batch("r-a", 13, ios("u3", "d4", 4), ios("u1", "d1", 1)) // r-a submitted again
	b5 := batch("r-d", 14, android("u6", "d8", gone), ios("u5", "d6", 6), unknown)
	b6 := batch("r-e", 15)
	b7 := b2 // a replay of b2's record
	in := []stamped{{ts: 100, b: b1}, {ts: 200, b: b2}, {ts: 300, b: b3}, {ts: 400, b: b4}, {ts: 500, b: b5}, {ts: 600, b: b6}, {ts: 700, b: b7}}

	want := []pushflow.DeliveryEvent{
		event(b1, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
		event(b1, ios("u1", "d2", 2), pushflow.OutcomeSent, ""),
		event(b1, android("u4", "d5", live), pushflow.OutcomeSent, ""),
		event(b2, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
		event(b3, ios("u2", "d3", 3), pushflow.OutcomeDropped, pushflow.ReasonExpired),
		event(b3, android("u4", "d5", live), pushflow.OutcomeDropped, pushflow.ReasonExpired),
		event(b4, ios("u1", "d1", 1), pushflow.OutcomeDropped, pushflow.ReasonDuplicate),
		event(b4, ios("u3", "d4", 4), pushflow.OutcomeSent, ""),
		event(b5, unknown, pushflow.OutcomeFailed, pushflow.ReasonNoProvider),
		event(b5, ios("u5", "d6", 6), pushflow.OutcomeFailed, "Unregistered"),
		event(b5, android("u6", "d8", gone), pushflow.OutcomeFailed, "UNREGISTERED"),
		event(b7, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
	}
	wantTS := []beam.EventTime{100, 100, 100, 200, 300, 300, 400, 400, 500, 500, 500, 700}

	type run struct {
		f   *fixture
		fcm *fcmiotest.Server
		out []stamped
	}
	setup := func(flush int) run {
		f := newFixture(t, seed...)
		fcm := f.enableFCM(t)
		fcm.Unregister(gone)
		f.srv.Unregister(token(6))
		f.fn.Cfg.FlushRecipients = flush
		return run{f: f, fcm: fcm}
	}
	perBatch := setup(-1)
	for _, s := range in {
		perBatch.out = append(perBatch.out, perBatch.f.bundle(t, s)...)
	}
	bundled := setup(0)
	bundled.out = bundled.f.bundle(t, in...)

	for _, r := range []struct {
		name string
		run
	}{{"one bundle per batch", perBatch}, {"one bundle", bundled}} {
		if diff := cmp.Diff(want, events(r.out), ordered); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", r.name, diff)
		}
		if diff := cmp.Diff(wantTS, timestamps(r.out)); diff != "" {
			t.Errorf("%s: event timestamps (-want +got):\n%s", r.name, diff)
		}
		// APNs: b1 2, b2 1, b4 1 (b7 replays b2's recorded outcome, and
		// the 410 is not accepted); FCM: b1 1.
		if n, m := r.f.srv.Count(), r.fcm.Count(); n != 4 || m != 1 {
			t.Errorf("%s: APNs accepted %d, FCM %d; want 4 and 1", r.name, n, m)
		}
		devs, err := r.f.reg.Devices(context.Background(), app, []string{"d5", "d6", "d8"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := devs["d5"]; !ok || len(devs) != 1 {
			t.Errorf("%s: devices left = %v, want only d5 (d6 and d8 unregistered)", r.name, devs)
		}
	}
	if diff := cmp.Diff(events(perBatch.out), events(bundled.out), ordered); diff != "" {
		t.Errorf("one bundle vs one bundle per batch (-per batch +bundle):\n%s", diff)
	}
}

// pipelineHook counts the pipelines a Redis client sends.
type pipelineHook struct{ n atomic.Int64 }

func (h *pipelineHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestSendFnFlushRecipients checks when a bundle's batches are sent:
// ProcessElement flushes once FlushRecipients recipients are buffered,
// FinishBundle flushes the rest, and each flush claims in one round trip.
func TestSendFnFlushRecipients(t *testing.T) {
	for _, tt := range []struct {
		flush     int
		emitted   []int // events after each ProcessElement
		pipelines int64
	}{
		{flush: 0, emitted: []int{0, 0, 0}, pipelines: 1},
		{flush: 3, emitted: []int{0, 3, 3}, pipelines: 2},
		{flush: 4, emitted: []int{0, 0, 5}, pipelines: 1},
		{flush: 1, emitted: []int{2, 3, 5}, pipelines: 3},
		{flush: -1, emitted: []int{2, 3, 5}, pipelines: 3},
	} {
		f := newFixture(t)
		c := redis.NewClient(&redis.Options{Addr: f.addr})
		t.Cleanup(func() { c.Close() })
		h := &pipelineHook{}
		c.AddHook(h)
		f.fn.reg = redisio.New(c)
		if _, err := f.fn.reg.ClaimEach(context.Background(), []string{"warm-up"}, []string{"x"}); err != nil {
			t.Fatal(err)
		}
		h.n.Store(0)
		f.fn.Cfg.FlushRecipients = tt.flush

		b1 := batch("r-1", 1, ios("u1", "d1", 1), ios("u2", "d2", 2))
		b2 := batch("r-2", 2, ios("u1", "d1", 1))
		b3 := batch("r-3", 3, ios("u1", "d1", 1), ios("u3", "d3", 3))
		out, emitted := runBundle(t, f.fn, []stamped{{ts: 1, b: b1}, {ts: 2, b: b2}, {ts: 3, b: b3}})
		if diff := cmp.Diff(tt.emitted, emitted); diff != "" {
			t.Errorf("FlushRecipients %d: events emitted after each ProcessElement (-want +got):\n%s", tt.flush, diff)
		}
		want := []pushflow.DeliveryEvent{
			event(b1, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
			event(b1, ios("u2", "d2", 2), pushflow.OutcomeSent, ""),
			event(b2, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
			event(b3, ios("u1", "d1", 1), pushflow.OutcomeSent, ""),
			event(b3, ios("u3", "d3", 3), pushflow.OutcomeSent, ""),
		}
		if diff := cmp.Diff(want, events(out), ordered); diff != "" {
			t.Errorf("FlushRecipients %d: events (-want +got):\n%s", tt.flush, diff)
		}
		if diff := cmp.Diff([]beam.EventTime{1, 1, 2, 3, 3}, timestamps(out)); diff != "" {
			t.Errorf("FlushRecipients %d: event timestamps (-want +got):\n%s", tt.flush, diff)
		}
		// Two round trips per flush: the claims, then the recorded outcomes.
		if n := h.n.Load(); n != 2*tt.pipelines {
			t.Errorf("FlushRecipients %d: %d Redis round trips, want %d (two per flush)", tt.flush, n, 2*tt.pipelines)
		}
		if n := f.srv.Count(); n != 5 {
			t.Errorf("FlushRecipients %d: APNs accepted %d, want 5", tt.flush, n)
		}
	}
}

// TestSendFnFlushRedisError checks a failed claim fails the flush with an
// error naming the requests, sends nothing, and leaves the next bundle
// clean; batches that need no claim (expired) need no Redis.
func TestSendFnFlushRedisError(t *testing.T) {
	f := newFixture(t)
	good := f.fn.reg
	c := redis.NewClient(&redis.Options{Addr: f.addr})
	f.fn.reg = redisio.New(c)
	c.Close() // every command now fails

	ctx := context.Background()
	var out []stamped
	emit := func(ts beam.EventTime, ev pushflow.DeliveryEvent) { out = append(out, stamped{ts: ts, ev: ev}) }
	expired := batch("r-old", 9, ios("u1", "d1", 1))
	expired.Request.Req.TTLSeconds = 1
	expired.Request.ReceivedAt = time.Now().Add(-time.Hour)
	f.fn.StartBundle(ctx, emit, unexpectedRetry(t))
	for i, b := range []recipient.Batch{
		batch("r-1", 1, ios("u1", "d1", 1)), expired, batch("r-2", 2, ios("u1", "d1", 1)),
		batch("r-3", 3, ios("u1", "d1", 1)), batch("r-4", 4, ios("u1", "d1", 1)), batch("r-5", 5),
	} {
		if err := f.fn.ProcessElement(ctx, beam.EventTime(i), b, emit, unexpectedRetry(t)); err != nil {
			t.Fatalf("ProcessElement(%s) = %v, want nil (buffered)", b.Request.Req.ID, err)
		}
	}
	err := f.fn.FinishBundle(ctx, emit, unexpectedRetry(t))
	if err == nil || !strings.HasPrefix(err.Error(), "send: r-1, r-2, r-3 and 1 more requests: redisio: claim 4 dedup keys: ") {
		t.Errorf("FinishBundle() with Redis down = %v, want send: r-1, r-2, r-3 and 1 more requests: redisio: claim 4 dedup keys: ...", err)
	}
	if len(out) != 0 || f.srv.Requests() != 0 {
		t.Errorf("failed flush emitted %d events and sent %d requests, want none", len(out), f.srv.Requests())
	}

	// One batch: named alone, as before batching.
	if out := runBundleErr(t, f.fn, batch("r-6", 6, ios("u1", "d1", 1)), "send: r-6: redisio: claim 1 dedup keys: "); len(out) != 0 {
		t.Errorf("failed flush of r-6 emitted %+v, want nothing", out)
	}

	// Expired batches alone are dropped without Redis.
	out, _ = runBundle(t, f.fn, []stamped{{ts: 7, b: expired}})
	if len(out) != 1 || out[0].ev.Reason != pushflow.ReasonExpired || out[0].ts != 7 {
		t.Errorf("bundle(expired) with Redis down = %+v, want one expired event at 7", out)
	}

	// The failed bundles left nothing behind.
	f.fn.reg = good
	b := batch("r-7", 7, ios("u1", "d1", 1))
	out, _ = runBundle(t, f.fn, []stamped{{ts: 8, b: b}})
	if diff := cmp.Diff([]pushflow.DeliveryEvent{event(b, ios("u1", "d1", 1), pushflow.OutcomeSent, "")}, events(out), ordered); diff != "" {
		t.Errorf("bundle after failed bundles (-want +got):\n%s", diff)
	}
}

// runBundleErr runs a bundle of b on fn, which must fail with an error
// starting with prefix, and returns what it emitted.
func runBundleErr(t *testing.T, fn *sendFn, b recipient.Batch, prefix string) []stamped {
	t.Helper()
	ctx := context.Background()
	var out []stamped
	emit := func(ts beam.EventTime, ev pushflow.DeliveryEvent) { out = append(out, stamped{ts: ts, ev: ev}) }
	fn.StartBundle(ctx, emit, unexpectedRetry(t))
	if err := fn.ProcessElement(ctx, 0, b, emit, unexpectedRetry(t)); err != nil {
		t.Fatalf("ProcessElement(%s) = %v, want nil (buffered)", b.Request.Req.ID, err)
	}
	if err := fn.FinishBundle(ctx, emit, unexpectedRetry(t)); err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("FinishBundle() = %v, want an error starting with %q", err, prefix)
	}
	return out
}
