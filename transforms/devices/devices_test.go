package devices

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
)

const app = "com.example.news"

func token(i int) string { return fmt.Sprintf("%064x", i) }

func registerEvent(user, device string, i int, tags ...string) pushflow.DeviceEvent {
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: user, DeviceID: device, Platform: pushflow.PlatformIOS,
		Token: token(i), Tags: tags, At: time.Date(2026, 11, 22, 9, 0, i, 0, time.UTC)}
}

func unregister(user, device string) pushflow.DeviceEvent {
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpUnregister, App: app, UserID: user, DeviceID: device}
}

// newFixture starts a redis-server and an applyFn on it.
func newFixture(t *testing.T, flushSize int) (*applyFn, *redisio.Registry) {
	t.Helper()
	addr := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	fn := &applyFn{RedisAddr: addr, FlushSize: flushSize}
	fn.Setup()
	t.Cleanup(fn.Teardown)
	return fn, redisio.New(c)
}

// deviceIDs returns the ids of the registered devices among ids.
func deviceIDs(t *testing.T, reg *redisio.Registry, ids ...string) []string {
	t.Helper()
	devs, err := reg.Devices(context.Background(), app, ids)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for id := range devs {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func TestApplyFnFinishBundle(t *testing.T) {
	fn, reg := newFixture(t, 500)
	ctx := metrics.SetPTransformID(metrics.SetBundleID(context.Background(), "b1"), "devices")
	for _, ev := range []pushflow.DeviceEvent{
		registerEvent("u1", "d1", 1, "sports"),
		registerEvent("u1", "d2", 2),
		registerEvent("u2", "d3", 3, "news"),
		{V: 1, Op: pushflow.OpSettings, App: app, UserID: "u2", Settings: pushflow.Settings{Timezone: "Europe/Berlin", OptOut: []string{"marketing"}}},
		unregister("u1", "d2"),
	} {
		if err := fn.ProcessElement(ctx, ev, mustNotEmit); err != nil {
			t.Fatalf("ProcessElement(%s %s) = %v", ev.Op, ev.DeviceID, err)
		}
	}
	// Buffered: nothing is written before the bundle finishes.
	if got := deviceIDs(t, reg, "d1", "d2", "d3"); len(got) != 0 {
		t.Errorf("devices before FinishBundle = %v, want none (buffered)", got)
	}
	if err := fn.FinishBundle(ctx, mustNotEmit); err != nil {
		t.Fatalf("FinishBundle() = %v", err)
	}
	if diff := cmp.Diff([]string{"d1", "d3"}, deviceIDs(t, reg, "d1", "d2", "d3")); diff != "" {
		t.Errorf("devices after FinishBundle (-want +got):\n%s", diff)
	}
	bg := context.Background()
	settings, err := reg.Settings(bg, app, []string{"u2"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]pushflow.Settings{"u2": {Timezone: "Europe/Berlin", OptOut: []string{"marketing"}}}, settings); diff != "" {
		t.Errorf("settings after FinishBundle (-want +got):\n%s", diff)
	}
	if tagged, err := reg.TagUsers(bg, app, "sports"); err != nil || !slices.Equal(tagged, []string{"u1"}) {
		t.Errorf("TagUsers(sports) = %v, %v, want [u1]", tagged, err)
	}
	if known, err := reg.AppKnown(bg, app); err != nil || !known {
		t.Errorf("AppKnown = %v, %v, want true", known, err)
	}
	counters := map[string]int64{}
	for _, c := range metrics.ResultsExtractor(ctx).AllMetrics().Counters() {
		counters[c.Name()] += c.Result()
	}
	if diff := cmp.Diff(map[string]int64{"registry_register": 3, "registry_settings": 1, "registry_unregister": 1}, counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}

	// The buffer was emptied: the next bundle applies only its own events.
	if err := fn.ProcessElement(bg, unregister("u2", "d3"), mustNotEmit); err != nil {
		t.Fatal(err)
	}
	if err := fn.FinishBundle(bg, mustNotEmit); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"d1"}, deviceIDs(t, reg, "d1", "d2", "d3")); diff != "" {
		t.Errorf("devices after the second bundle (-want +got):\n%s", diff)
	}
	// An empty bundle writes nothing and succeeds.
	if err := fn.FinishBundle(bg, mustNotEmit); err != nil {
		t.Errorf("FinishBundle() of an empty bundle = %v", err)
	}
}

func TestApplyFnFlushSize(t *testing.T) {
	fn, reg := newFixture(t, 2)
	ctx := context.Background()
	steps := []struct {
		ev   pushflow.DeviceEvent
		want []string // registered devices after ProcessElement
	}{
		{registerEvent("u1", "d1", 1), nil},
		{registerEvent("u1", "d2", 2), []string{"d1", "d2"}}, // 2 buffered: flushed
		{registerEvent("u2", "d3", 3), []string{"d1", "d2"}},
		{unregister("u1", "d1"), []string{"d2", "d3"}},
		{registerEvent("u3", "d4", 4), []string{"d2", "d3"}},
	}
	for i, s := range steps {
		if err := fn.ProcessElement(ctx, s.ev, mustNotEmit); err != nil {
			t.Fatalf("step %d: ProcessElement = %v", i, err)
		}
		if diff := cmp.Diff(s.want, deviceIDs(t, reg, "d1", "d2", "d3", "d4")); diff != "" {
			t.Errorf("step %d (%s %s): devices (-want +got):\n%s", i, s.ev.Op, s.ev.DeviceID, diff)
		}
	}
	if err := fn.FinishBundle(ctx, mustNotEmit); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"d2", "d3", "d4"}, deviceIDs(t, reg, "d1", "d2", "d3", "d4")); diff != "" {
		t.Errorf("devices after FinishBundle (-want +got):\n%s", diff)
	}
}

// TestApplyFnOrder checks events of one user are applied in arrival order
// within a flush: register, unregister, register again leaves the device.
func TestApplyFnOrder(t *testing.T) {
	fn, reg := newFixture(t, 100)
	ctx := context.Background()
	for _, ev := range []pushflow.DeviceEvent{registerEvent("u1", "d1", 1), unregister("u1", "d1"), registerEvent("u1", "d1", 11), registerEvent("u1", "d2", 2), unregister("u1", "d2")} {
		if err := fn.ProcessElement(ctx, ev, mustNotEmit); err != nil {
			t.Fatal(err)
		}
	}
	if err := fn.FinishBundle(ctx, mustNotEmit); err != nil {
		t.Fatal(err)
	}
	devs, err := reg.UserDevices(ctx, app, []string{"u1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range devs["u1"] {
		got = append(got, d.ID+"="+d.Token)
	}
	if diff := cmp.Diff([]string{"d1=" + token(11)}, got); diff != "" {
		t.Errorf("u1's devices (-want +got):\n%s", diff)
	}
}

func TestApplyFnError(t *testing.T) {
	fn, reg := newFixture(t, 3)
	ctx := context.Background()
	bad := pushflow.DeviceEvent{V: 1, Op: "explode", App: app, UserID: "u1"}
	for _, ev := range []pushflow.DeviceEvent{registerEvent("u1", "d1", 1), bad} {
		if err := fn.ProcessElement(ctx, ev, mustNotEmit); err != nil {
			t.Fatalf("ProcessElement before the flush = %v, want nil", err)
		}
	}
	err := fn.ProcessElement(ctx, registerEvent("u2", "d2", 2), mustNotEmit)
	const want = "devices: apply 3 events: redisio: apply event 1: unknown op \"explode\": invalid device event"
	if err == nil || err.Error() != want {
		t.Errorf("ProcessElement(third event, with an invalid one buffered) = %v, want %q", err, want)
	}
	if !errors.Is(err, redisio.ErrInvalidEvent) {
		t.Errorf("error %v does not wrap redisio.ErrInvalidEvent", err)
	}
	// Apply checks every event first: nothing of the batch was written.
	if got := deviceIDs(t, reg, "d1", "d2"); len(got) != 0 {
		t.Errorf("devices after a failed flush = %v, want none", got)
	}
	// The failed batch is dropped (the runner retries the bundle): the next
	// flush carries only new events.
	if err := fn.ProcessElement(ctx, registerEvent("u3", "d3", 3), mustNotEmit); err != nil {
		t.Fatal(err)
	}
	if err := fn.FinishBundle(ctx, mustNotEmit); err != nil {
		t.Fatalf("FinishBundle after a failed flush = %v, want nil", err)
	}
	if diff := cmp.Diff([]string{"d3"}, deviceIDs(t, reg, "d1", "d2", "d3")); diff != "" {
		t.Errorf("devices (-want +got):\n%s", diff)
	}
}

func TestApplyFnRedisDown(t *testing.T) {
	fn := &applyFn{RedisAddr: "127.0.0.1:1", FlushSize: 10}
	fn.Setup()
	defer fn.Teardown()
	// Fail fast: the same DoFn on a client that does not retry (Setup's
	// retries only make the test slower).
	fn.reg.Close()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { down.Close() })
	fn.reg = redisio.New(down)
	ctx := context.Background()
	if err := fn.ProcessElement(ctx, registerEvent("u1", "d1", 1), mustNotEmit); err != nil {
		t.Fatalf("ProcessElement = %v, want nil (buffered)", err)
	}
	err := fn.FinishBundle(ctx, mustNotEmit)
	if err == nil || !strings.HasPrefix(err.Error(), "devices: apply 1 events: ") {
		t.Errorf("FinishBundle with Redis down = %v, want an error prefixed %q", err, "devices: apply 1 events: ")
	}
}

// mustNotEmit is the sink's output emitter: a sink never emits (its output
// only exists for package stageout).
func mustNotEmit(int) { panic("sink emitted an element") }
