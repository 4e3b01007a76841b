package enrich

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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

func newFixture(t *testing.T, events ...pushflow.DeviceEvent) *fixture {
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

func (f *fixture) run(t *testing.T, b recipient.Batch) (out, time.Time, time.Time) {
	t.Helper()
	var o out
	before := time.Now()
	if err := f.fn.ProcessElement(context.Background(), b,
		func(b recipient.Batch) { o.Batches = append(o.Batches, b) },
		func(e pushflow.DeliveryEvent) { o.Events = append(o.Events, e) }); err != nil {
		t.Fatalf("ProcessElement(%s) = %v, want nil", b.Request.Req.ID, err)
	}
	return o, before, time.Now()
}

func batch(seq int, rs ...recipient.Recipient) recipient.Batch {
	return recipient.Batch{
		Request: recipient.Request{
			Req:        pushflow.PushRequest{V: 1, ID: "r-1", App: app, Campaign: "demo", Category: "news", Priority: pushflow.PriorityNormal},
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
	err := fn.ProcessElement(context.Background(), batch(0, recipient.Recipient{UserID: "u1"}),
		func(recipient.Batch) { t.Error("emitted a batch with Redis down") },
		func(pushflow.DeliveryEvent) { t.Error("emitted an event with Redis down") })
	if err == nil || !strings.HasPrefix(err.Error(), "enrich: r-1: ") {
		t.Errorf("ProcessElement with Redis down = %v, want an error prefixed %q", err, "enrich: r-1: ")
	}
}
