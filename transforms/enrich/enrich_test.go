package enrich

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

const app = "com.example.news"

func token(i int) string { return fmt.Sprintf("%064x", i) }

func registerEvent(user, device, platform string, i int) pushflow.DeviceEvent {
	return registerIn(app, user, device, platform, i)
}

func registerIn(app, user, device, platform string, i int) pushflow.DeviceEvent {
	tok := token(i)
	if platform == pushflow.PlatformAndroid {
		tok = fmt.Sprintf("fcm:%s:APA91b%d", device, i)
	}
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: user, DeviceID: device, Platform: platform, Token: tok,
		At: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
}

type out struct {
	Batches []recipient.Batch
	Events  []pushflow.DeliveryEvent
}

type fixture struct {
	reg *redisio.Registry
	fn  *tokensFn
}

func newFixture(t testing.TB, events ...pushflow.DeviceEvent) *fixture {
	t.Helper()
	addr := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	reg := redisio.New(c)
	if err := reg.Apply(context.Background(), events); err != nil {
		t.Fatalf("seed registry: %v", err)
	}
	fn := &tokensFn{RedisAddr: addr}
	fn.Setup()
	t.Cleanup(fn.Teardown)
	return &fixture{reg: reg, fn: fn}
}

// run runs b through f.fn as a bundle of its own.
func (f *fixture) run(t *testing.T, b recipient.Batch) (out, time.Time, time.Time) {
	t.Helper()
	before := time.Now()
	got, _ := runBundle(t, f.fn, []input{{TS: 7, B: b}})
	after := time.Now()
	var o out
	for _, e := range got {
		if e.TS != 7 {
			t.Errorf("output at %v, want the input's timestamp 7", e.TS)
		}
		if e.Batch != nil {
			o.Batches = append(o.Batches, *e.Batch)
		} else {
			o.Events = append(o.Events, *e.Event)
		}
	}
	return o, before, after
}

// input is one element of a bundle.
type input struct {
	TS beam.EventTime
	B  recipient.Batch
}

// emitted is one output of the DoFn: a batch or an event, with its
// timestamp.
type emitted struct {
	TS    beam.EventTime
	Batch *recipient.Batch
	Event *pushflow.DeliveryEvent
}

// runBundle runs ins through fn as one bundle, as the runner does:
// StartBundle, ProcessElement for each input, FinishBundle. It returns the
// outputs in the order emitted and, for each input, how many outputs there
// were when its ProcessElement returned.
func runBundle(t testing.TB, fn *tokensFn, ins []input) (outs []emitted, afterEach []int) {
	t.Helper()
	ctx := context.Background()
	emit := func(ts beam.EventTime, b recipient.Batch) { outs = append(outs, emitted{TS: ts, Batch: &b}) }
	events := func(ts beam.EventTime, e pushflow.DeliveryEvent) { outs = append(outs, emitted{TS: ts, Event: &e}) }
	fn.StartBundle(ctx, emit, events)
	for _, in := range ins {
		if err := fn.ProcessElement(ctx, in.TS, in.B, emit, events); err != nil {
			t.Fatalf("ProcessElement(%s) = %v, want nil", in.B.Request.Req.ID, err)
		}
		afterEach = append(afterEach, len(outs))
	}
	if err := fn.FinishBundle(ctx, emit, events); err != nil {
		t.Fatalf("FinishBundle() = %v, want nil", err)
	}
	return outs, afterEach
}

func batch(seq int, rs ...recipient.Recipient) recipient.Batch {
	return request("r-1", app, seq, rs...)
}

// request is batch seq of request id of app.
func request(id, app string, seq int, rs ...recipient.Recipient) recipient.Batch {
	return recipient.Batch{
		Request: recipient.Request{
			Req:        pushflow.PushRequest{V: 1, ID: id, App: app, Campaign: "demo", Category: "news", Priority: pushflow.PriorityNormal},
			Source:     recipient.Source{Topic: pushflow.TopicRequests, Partition: 0, Offset: 3},
			ReceivedAt: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
		},
		Recipients: rs,
		Seq:        seq,
	}
}

func device(user, id, platform string, i int) recipient.Recipient {
	r := registerEvent(user, id, platform, i)
	return recipient.Recipient{UserID: user, DeviceID: id, Platform: platform, Token: r.Token}
}

// checkEvents checks the events' times and then clears them so the events
// compare exactly.
func checkEvents(t *testing.T, evs []pushflow.DeliveryEvent, before, after time.Time) {
	t.Helper()
	for i := range evs {
		if evs[i].EventTime.Before(before.UTC().Truncate(time.Microsecond)) || evs[i].EventTime.After(after) {
			t.Errorf("event %d EventTime %v, want within the call", i, evs[i].EventTime)
		}
		evs[i].EventTime, evs[i].LatencyMs = time.Time{}, 0
	}
}

func dropped(b recipient.Batch, r recipient.Recipient, reason string) pushflow.DeliveryEvent {
	ev := b.Event(time.Time{}, r, pushflow.StageEnrich, pushflow.OutcomeDropped, reason)
	ev.EventTime, ev.LatencyMs = time.Time{}, 0
	return ev
}

func TestTokensFnUsers(t *testing.T) {
	f := newFixture(t,
		registerEvent("one", "d1", pushflow.PlatformIOS, 1),
		registerEvent("two", "d3", pushflow.PlatformAndroid, 3),
		registerEvent("two", "d2", pushflow.PlatformIOS, 2),
	)
	in := batch(4, recipient.Recipient{UserID: "none"}, recipient.Recipient{UserID: "two"}, recipient.Recipient{UserID: "one"})
	got, before, after := f.run(t, in)
	checkEvents(t, got.Events, before, after)
	want := out{
		// A user's devices are in device id order; the batch keeps its Seq.
		Batches: []recipient.Batch{in.With([]recipient.Recipient{
			device("two", "d2", pushflow.PlatformIOS, 2),
			device("two", "d3", pushflow.PlatformAndroid, 3),
			device("one", "d1", pushflow.PlatformIOS, 1),
		})},
		Events: []pushflow.DeliveryEvent{dropped(in, recipient.Recipient{UserID: "none"}, pushflow.ReasonNoDevice)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("enrich(users with 0, 2, 1 devices) mismatch (-want +got):\n%s", diff)
	}
	if len(got.Batches) == 1 && got.Batches[0].Seq != 4 {
		t.Errorf("Seq = %d, want 4", got.Batches[0].Seq)
	}
}

func TestTokensFnDevices(t *testing.T) {
	f := newFixture(t,
		registerEvent("u1", "d1", pushflow.PlatformIOS, 1),
		registerEvent("u1", "d2", pushflow.PlatformIOS, 2),
		registerEvent("u3", "d4", pushflow.PlatformIOS, 4),
	)
	// d4 is unregistered between expansion and enrichment.
	if err := f.reg.Apply(context.Background(), []pushflow.DeviceEvent{{V: 1, Op: pushflow.OpUnregister, App: app, UserID: "u3", DeviceID: "d4"}}); err != nil {
		t.Fatal(err)
	}
	in := batch(0,
		recipient.Recipient{UserID: "u1", DeviceID: "d2"},
		recipient.Recipient{UserID: "u3", DeviceID: "d4"},
		recipient.Recipient{UserID: "u2"}, // never registered
		recipient.Recipient{UserID: "u1", DeviceID: "d1"},
	)
	got, before, after := f.run(t, in)
	checkEvents(t, got.Events, before, after)
	want := out{
		// A device recipient gets only that device, not its user's others.
		Batches: []recipient.Batch{in.With([]recipient.Recipient{
			device("u1", "d2", pushflow.PlatformIOS, 2),
			device("u1", "d1", pushflow.PlatformIOS, 1),
		})},
		Events: []pushflow.DeliveryEvent{
			dropped(in, recipient.Recipient{UserID: "u3", DeviceID: "d4"}, pushflow.ReasonNoDevice),
			dropped(in, recipient.Recipient{UserID: "u2"}, pushflow.ReasonNoDevice),
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("enrich(devices) mismatch (-want +got):\n%s", diff)
	}
}

// TestTokensFnRemovedToken checks a device whose token was removed after an
// APNs 410 is dropped as no_device, whether addressed by user or by id.
func TestTokensFnRemovedToken(t *testing.T) {
	f := newFixture(t, registerEvent("u5", "d6", pushflow.PlatformIOS, 6))
	if removed, err := f.reg.RemoveToken(context.Background(), app, "d6", token(6)); err != nil || !removed {
		t.Fatalf("RemoveToken = %v, %v, want true", removed, err)
	}
	in := batch(0, recipient.Recipient{UserID: "u5"}, recipient.Recipient{UserID: "u5", DeviceID: "d6"})
	got, before, after := f.run(t, in)
	checkEvents(t, got.Events, before, after)
	want := out{Events: []pushflow.DeliveryEvent{
		dropped(in, recipient.Recipient{UserID: "u5"}, pushflow.ReasonNoDevice),
		dropped(in, recipient.Recipient{UserID: "u5", DeviceID: "d6"}, pushflow.ReasonNoDevice),
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("enrich(removed token) mismatch (-want +got):\n%s", diff)
	}
}

func TestTokensFnOtherApp(t *testing.T) {
	f := newFixture(t, registerEvent("u1", "d1", pushflow.PlatformIOS, 1))
	in := batch(0, recipient.Recipient{UserID: "u1"}, recipient.Recipient{UserID: "u1", DeviceID: "d1"})
	in.Request.Req.App = "com.example.other"
	got, _, _ := f.run(t, in)
	if len(got.Batches) != 0 || len(got.Events) != 2 {
		t.Errorf("enrich(u1 of another app) = %d batches, %d events, want 0 batches, 2 no_device events", len(got.Batches), len(got.Events))
	}
}

func TestTokensFnRedisDown(t *testing.T) {
	fn := &tokensFn{RedisAddr: "127.0.0.1:1"}
	fn.Setup()
	defer fn.Teardown()
	// Fail fast: the same DoFn on a client that does not retry (Setup's
	// retries only make the test slower).
	fn.reg.Close()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { down.Close() })
	fn.reg = redisio.New(down)
	emit := func(beam.EventTime, recipient.Batch) { t.Error("emitted a batch with Redis down") }
	events := func(beam.EventTime, pushflow.DeliveryEvent) { t.Error("emitted an event with Redis down") }
	ctx := context.Background()
	err := fn.ProcessElement(ctx, 0, batch(0, recipient.Recipient{UserID: "u1"}), emit, events)
	if err == nil || !strings.HasPrefix(err.Error(), "enrich: r-1: ") {
		t.Errorf("ProcessElement with Redis down = %v, want an error prefixed %q", err, "enrich: r-1: ")
	}

	// Buffered across requests, the error names the requests of the
	// failed read, and the failed flush leaves nothing buffered.
	fn.FlushRecipients = DefaultFlushRecipients
	fn.StartBundle(ctx, emit, events)
	for _, b := range []recipient.Batch{
		request("r-2", app, 0, recipient.Recipient{UserID: "u1"}),
		request("r-3", app, 0, recipient.Recipient{UserID: "u2"}),
		request("r-2", app, 1, recipient.Recipient{UserID: "u3"}),
	} {
		if err := fn.ProcessElement(ctx, 0, b, emit, events); err != nil {
			t.Fatalf("ProcessElement(%s) = %v, want nil (buffered)", b.Request.Req.ID, err)
		}
	}
	err = fn.FinishBundle(ctx, emit, events)
	if err == nil || !strings.HasPrefix(err.Error(), "enrich: r-2, r-3: ") {
		t.Errorf("FinishBundle with Redis down = %v, want an error prefixed %q", err, "enrich: r-2, r-3: ")
	}
	if err := fn.FinishBundle(ctx, emit, events); err != nil {
		t.Errorf("FinishBundle after a failed flush = %v, want nil (nothing buffered)", err)
	}

	// A bundle that failed elsewhere leaves its buffer behind: StartBundle
	// drops it, so the next bundle reads nothing of it.
	if err := fn.ProcessElement(ctx, 0, batch(0, recipient.Recipient{UserID: "u1"}), emit, events); err != nil {
		t.Fatalf("ProcessElement = %v, want nil (buffered)", err)
	}
	fn.StartBundle(ctx, emit, events)
	if err := fn.FinishBundle(ctx, emit, events); err != nil {
		t.Errorf("FinishBundle of an empty bundle = %v, want nil (StartBundle cleared the buffer)", err)
	}
}

// pipelineHook counts the registry reads a client sends: pipelines of
// HGETALLs, each one round trip (not the connection handshakes, which
// go-redis also sends as pipelines).
type pipelineHook struct{ n atomic.Int64 }

func (h *pipelineHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "hgetall" {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// countingFn is a tokensFn on addr whose pipelines are counted.
func countingFn(t *testing.T, addr string, flush int) (*tokensFn, *pipelineHook) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	h := &pipelineHook{}
	c.AddHook(h)
	return &tokensFn{RedisAddr: addr, FlushRecipients: flush, reg: redisio.New(c)}, h
}

// TestTokensFnAcrossRequests resolves batches of several requests of two
// apps in one bundle, and checks the outputs are those of one bundle per
// batch, in the same order, each at its batch's timestamp, from one read
// per app and kind of recipient.
func TestTokensFnAcrossRequests(t *testing.T) {
	const other = "com.example.other"
	f := newFixture(t,
		registerEvent("u1", "d1", pushflow.PlatformIOS, 1),
		registerEvent("u2", "d2", pushflow.PlatformIOS, 2),
		registerEvent("u2", "d3", pushflow.PlatformAndroid, 3),
		registerEvent("u3", "d4", pushflow.PlatformIOS, 4),
		registerEvent("u5", "d5", pushflow.PlatformIOS, 5),
		registerEvent("u6", "d5", pushflow.PlatformIOS, 6), // d5 changes owner: u5 → u6
		registerIn(other, "u1", "o1", pushflow.PlatformAndroid, 11),
	)
	if err := f.reg.Apply(context.Background(), []pushflow.DeviceEvent{{V: 1, Op: pushflow.OpUnregister, App: app, UserID: "u3", DeviceID: "d4"}}); err != nil {
		t.Fatal(err)
	}
	u := func(id string) recipient.Recipient { return recipient.Recipient{UserID: id} }
	d := func(user, id string) recipient.Recipient { return recipient.Recipient{UserID: user, DeviceID: id} }
	ins := []input{
		{TS: 10, B: request("r1", app, 0, u("u1"), u("u2"), u("none"))},
		{TS: 20, B: request("r2", other, 0, u("u1"), u("u9"))}, // u1 of another app
		{TS: 30, B: request("r3", app, 0, u("u1"), d("u5", "d5"))},
		{TS: 40, B: request("r4", app, 3, d("u1", "d1"), d("u3", "d4"), u("u2"))},
		{TS: 50, B: request("r5", app, 0, u("none"))}, // only a drop
		{TS: 60, B: request("r6", app, 0)},            // empty: nothing
		{TS: 70, B: request("r7", other, 0, d("u1", "o1"), u("u1"), u("u1"))},
		{TS: 80, B: request("r1", app, 1, u("u2"), d("u1", "d1"))}, // r1 again, later batch
	}
	norm := func(outs []emitted) []emitted {
		for _, e := range outs {
			if e.Event != nil {
				e.Event.EventTime, e.Event.LatencyMs = time.Time{}, 0
			}
		}
		return outs
	}

	perBatchFn, perBatchTrips := countingFn(t, f.fn.RedisAddr, 1)
	var want []emitted
	for _, in := range ins {
		got, _ := runBundle(t, perBatchFn, []input{in})
		want = append(want, norm(got)...)
	}
	bundleFn, bundleTrips := countingFn(t, f.fn.RedisAddr, DefaultFlushRecipients)
	got, afterEach := runBundle(t, bundleFn, ins)
	got = norm(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("one bundle of %d batches mismatch with one bundle per batch (-want +got):\n%s", len(ins), diff)
	}
	if afterEach[len(ins)-1] != 0 {
		t.Errorf("%d outputs before FinishBundle, want 0 (%d recipients < FlushRecipients)", afterEach[len(ins)-1], DefaultFlushRecipients)
	}

	// Spot-check the shared result (the per-batch path is the old code):
	// owner change, the other app's devices, the drops.
	var kept, drops []string
	for _, e := range got {
		if e.Batch != nil {
			for _, r := range e.Batch.Recipients {
				kept = append(kept, fmt.Sprintf("%s/%d@%d:%s/%s", e.Batch.Request.Req.ID, e.Batch.Seq, e.TS, r.UserID, r.DeviceID))
			}
		} else {
			drops = append(drops, fmt.Sprintf("%s@%d:%s/%s:%s", e.Event.RequestID, e.TS, e.Event.UserID, e.Event.DeviceID, e.Event.Reason))
		}
	}
	wantKept := []string{
		"r1/0@10:u1/d1", "r1/0@10:u2/d2", "r1/0@10:u2/d3",
		"r2/0@20:u1/o1",
		"r3/0@30:u1/d1", "r3/0@30:u6/d5",
		"r4/3@40:u1/d1", "r4/3@40:u2/d2", "r4/3@40:u2/d3",
		"r7/0@70:u1/o1", "r7/0@70:u1/o1", "r7/0@70:u1/o1",
		"r1/1@80:u2/d2", "r1/1@80:u2/d3", "r1/1@80:u1/d1",
	}
	wantDrops := []string{
		"r1@10:none/:no_device",
		"r2@20:u9/:no_device",
		"r4@40:u3/d4:no_device",
		"r5@50:none/:no_device",
	}
	if diff := cmp.Diff(wantKept, kept); diff != "" {
		t.Errorf("kept recipients mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantDrops, drops); diff != "" {
		t.Errorf("dropped recipients mismatch (-want +got):\n%s", diff)
	}

	// One bundle: users and device ids of each of the two apps, 4 round
	// trips; one bundle per batch: one per batch and kind (r3, r4, r7 and
	// r1/1 read both; r6 reads nothing).
	if n := bundleTrips.n.Load(); n != 4 {
		t.Errorf("one bundle of %d batches sent %d pipelines, want 4", len(ins), n)
	}
	if n := perBatchTrips.n.Load(); n != 11 {
		t.Errorf("one bundle per batch sent %d pipelines, want 11", n)
	}
}

// TestTokensFnFlushRecipients checks ProcessElement flushes once the
// buffered recipients reach FlushRecipients, and FinishBundle flushes the
// rest.
func TestTokensFnFlushRecipients(t *testing.T) {
	f := newFixture(t,
		registerEvent("u1", "d1", pushflow.PlatformIOS, 1),
		registerEvent("u2", "d2", pushflow.PlatformIOS, 2),
	)
	fn, trips := countingFn(t, f.fn.RedisAddr, 3)
	ins := []input{
		{TS: 1, B: request("a", app, 0, recipient.Recipient{UserID: "u1"}, recipient.Recipient{UserID: "u2"})}, // 2 buffered
		{TS: 2, B: request("b", app, 0, recipient.Recipient{UserID: "u1"}, recipient.Recipient{UserID: "u9"})}, // 4 ≥ 3: flush a, b
		{TS: 3, B: request("c", app, 0, recipient.Recipient{UserID: "u2"})},                                    // 1 buffered
		{TS: 4, B: request("d", app, 0, recipient.Recipient{UserID: "u9"})},                                    // 2 buffered
	}
	got, afterEach := runBundle(t, fn, ins)
	// a: its batch; b: the u9 drop, then its batch; c: its batch; d: a drop.
	if want := []int{0, 3, 3, 3}; !slices.Equal(afterEach, want) {
		t.Errorf("outputs after each ProcessElement = %v, want %v", afterEach, want)
	}
	var seen []string
	for _, e := range got {
		if e.Batch != nil {
			seen = append(seen, fmt.Sprintf("batch %s@%d", e.Batch.Request.Req.ID, e.TS))
		} else {
			seen = append(seen, fmt.Sprintf("event %s@%d", e.Event.RequestID, e.TS))
		}
	}
	want := []string{"batch a@1", "event b@2", "batch b@2", "batch c@3", "event d@4"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("outputs mismatch (-want +got):\n%s", diff)
	}
	if n := trips.n.Load(); n != 2 {
		t.Errorf("%d pipelines, want 2 (one per flush)", n)
	}
}
