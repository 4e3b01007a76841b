package filter

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

const app = "com.example.news"

func TestDecide(t *testing.T) {
	// 2026-11-22 is in winter: Berlin is UTC+1, Shanghai UTC+8, New York UTC-5.
	at := func(hhmm string) time.Time {
		tm, err := time.Parse(time.RFC3339, "2026-11-22T"+hhmm+":00Z")
		if err != nil {
			panic(err)
		}
		return tm
	}
	night := pushflow.Settings{Timezone: "Europe/Berlin", QuietHours: "22:00-08:00"}
	lunch := pushflow.Settings{Timezone: "Asia/Shanghai", QuietHours: "12:00-13:30"}
	news := pushflow.PushRequest{Category: "news", Priority: pushflow.PriorityNormal}
	realtime := pushflow.PushRequest{Category: "live", Priority: pushflow.PriorityRealtime}
	settings := func(s pushflow.Settings) State { return State{Settings: map[string]pushflow.Settings{"u": s}} }
	interest := func(score float64) State {
		return State{Settings: map[string]pushflow.Settings{}, Interest: map[string]float64{"u": score}}
	}

	for _, tt := range []struct {
		name    string
		cfg     Config
		req     pushflow.PushRequest
		st      State
		now     time.Time
		want    Decision
		wantErr string
	}{
		{name: "no settings", req: news, st: State{}, now: at("12:00"), want: ""},
		{name: "opt-out of the category", req: pushflow.PushRequest{Category: "marketing"}, st: settings(pushflow.Settings{OptOut: []string{"sports", "marketing"}}), now: at("12:00"), want: pushflow.ReasonOptOut},
		{name: "opt-out of another category", req: news, st: settings(pushflow.Settings{OptOut: []string{"marketing"}}), now: at("12:00"), want: ""},
		{name: "no category is never opted out", req: pushflow.PushRequest{}, st: settings(pushflow.Settings{OptOut: []string{"marketing"}}), now: at("12:00"), want: ""},
		{name: "opt-out wins over realtime", req: pushflow.PushRequest{Category: "live", Priority: pushflow.PriorityRealtime}, st: settings(pushflow.Settings{OptOut: []string{"live"}}), now: at("12:00"), want: pushflow.ReasonOptOut},
		{name: "opt-out reported before quiet hours", req: news, st: settings(pushflow.Settings{Timezone: "Europe/Berlin", QuietHours: "22:00-08:00", OptOut: []string{"news"}}), now: at("23:00"), want: pushflow.ReasonOptOut},

		// 22:30Z is 23:30 in Berlin; 06:59Z is 07:59; 07:00Z is 08:00 (end is exclusive).
		{name: "quiet hours across midnight, late", req: news, st: settings(night), now: at("22:30"), want: pushflow.ReasonQuietHours},
		{name: "quiet hours across midnight, early", req: news, st: settings(night), now: at("06:59"), want: pushflow.ReasonQuietHours},
		{name: "quiet hours end is exclusive", req: news, st: settings(night), now: at("07:00"), want: ""},
		{name: "quiet hours start is inclusive", req: news, st: settings(night), now: at("21:00"), want: pushflow.ReasonQuietHours},
		{name: "before quiet hours", req: news, st: settings(night), now: at("20:59"), want: ""},
		// The same instant is lunch in Shanghai (04:30Z = 12:30 CST) and not in Berlin (05:30).
		{name: "timezone decides", req: news, st: settings(lunch), now: at("04:30"), want: pushflow.ReasonQuietHours},
		{name: "same instant elsewhere", req: news, st: settings(pushflow.Settings{Timezone: "Europe/Berlin", QuietHours: "12:00-13:30"}), now: at("04:30"), want: ""},
		{name: "no timezone is UTC", req: news, st: settings(pushflow.Settings{QuietHours: "12:00-13:30"}), now: at("12:15"), want: pushflow.ReasonQuietHours},
		{name: "realtime ignores quiet hours", req: realtime, st: settings(night), now: at("22:30"), want: ""},
		{name: "QuietHoursForRealtime", cfg: Config{QuietHoursForRealtime: true}, req: realtime, st: settings(night), now: at("22:30"), want: pushflow.ReasonQuietHours},
		{name: "QuietHoursForRealtime outside quiet hours", cfg: Config{QuietHoursForRealtime: true}, req: realtime, st: settings(night), now: at("12:00"), want: ""},
		{name: "bulk honours quiet hours", req: pushflow.PushRequest{Category: "news", Priority: pushflow.PriorityBulk}, st: settings(night), now: at("22:30"), want: pushflow.ReasonQuietHours},

		{name: "interest below minimum", cfg: Config{MinInterest: 0.5}, req: news, st: interest(0.2), now: at("12:00"), want: ReasonLowInterest},
		{name: "interest at minimum", cfg: Config{MinInterest: 0.5}, req: news, st: interest(0.5), now: at("12:00"), want: ""},
		{name: "interest above minimum", cfg: Config{MinInterest: 0.5}, req: news, st: interest(0.9), now: at("12:00"), want: ""},
		{name: "unknown interest is kept", cfg: Config{MinInterest: 0.5}, req: news, st: State{Interest: map[string]float64{"other": 0.1}}, now: at("12:00"), want: ""},
		{name: "interest rule off", cfg: Config{}, req: news, st: interest(0.01), now: at("12:00"), want: ""},
		{name: "interest not loaded", cfg: Config{MinInterest: 0.5}, req: news, st: State{}, now: at("12:00"), want: ""},
		{name: "quiet hours reported before interest", cfg: Config{MinInterest: 0.5}, req: news,
			st: State{Settings: map[string]pushflow.Settings{"u": night}, Interest: map[string]float64{"u": 0.1}}, now: at("22:30"), want: pushflow.ReasonQuietHours},

		{name: "bad timezone", req: news, st: settings(pushflow.Settings{Timezone: "Mars/Olympus", QuietHours: "22:00-08:00"}), now: at("12:00"),
			wantErr: `user u: timezone: want an IANA time zone name, got "Mars/Olympus"`},
		{name: "bad quiet hours", req: news, st: settings(pushflow.Settings{QuietHours: "late"}), now: at("12:00"), wantErr: "user u: "},
		{name: "bad timezone does not matter for realtime", req: realtime, st: settings(pushflow.Settings{Timezone: "Mars/Olympus", QuietHours: "22:00-08:00"}), now: at("12:00"), want: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(tt.cfg, tt.req, tt.st, "u", tt.now)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || got != "" {
					t.Errorf("Decide() = %q, %v, want \"\", error prefixed %q", got, err, tt.wantErr)
				}
				return
			}
			if got != tt.want || err != nil {
				t.Errorf("Decide(%+v, %+v, %v) = %q, %v, want %q, nil", tt.cfg, tt.st.Settings["u"], tt.now, got, err, tt.want)
			}
		})
	}
}

// beamContext returns a context carrying a Beam metrics store, as the
// runner's is, and a function reading its counters by name.
func beamContext() (context.Context, func() map[string]int64) {
	ctx := metrics.SetPTransformID(metrics.SetBundleID(context.Background(), "bundle"), "filter")
	return ctx, func() map[string]int64 {
		out := map[string]int64{}
		for _, c := range metrics.ResultsExtractor(ctx).AllMetrics().Counters() {
			out[c.Name()] += c.Result()
		}
		return out
	}
}

type fixture struct {
	reg *redisio.Registry
	fn  *rulesFn
	ctx context.Context
}

func newFixture(t *testing.T, cfg Config, now time.Time, events ...pushflow.DeviceEvent) *fixture {
	t.Helper()
	cfg.RedisAddr = redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
	t.Cleanup(func() { c.Close() })
	reg := redisio.New(c)
	ctx := context.Background()
	if err := reg.Apply(ctx, events); err != nil {
		t.Fatalf("seed registry: %v", err)
	}
	fn := &rulesFn{Cfg: cfg, now: func() time.Time { return now }}
	fn.Setup()
	t.Cleanup(fn.Teardown)
	return &fixture{reg: reg, fn: fn, ctx: ctx}
}

type out struct {
	Kept   []recipient.Batch
	Events []pushflow.DeliveryEvent
}

// emitted is one output of the DoFn, in the order it was emitted.
type emitted struct {
	TS    beam.EventTime
	Kept  *recipient.Batch
	Event *pushflow.DeliveryEvent
}

// input is one input element of a bundle.
type input struct {
	TS beam.EventTime
	B  recipient.Batch
}

// bundle runs one bundle over in as the runner does (StartBundle,
// ProcessElement per element, FinishBundle) and returns what it emitted, in
// order, and after[i], how many outputs there were when ProcessElement(in[i])
// returned.
func (f *fixture) bundle(ctx context.Context, in ...input) (outs []emitted, after []int, err error) {
	emit := func(ts beam.EventTime, b recipient.Batch) { outs = append(outs, emitted{TS: ts, Kept: &b}) }
	events := func(ts beam.EventTime, e pushflow.DeliveryEvent) { outs = append(outs, emitted{TS: ts, Event: &e}) }
	f.fn.StartBundle(ctx, emit, events)
	for _, x := range in {
		if err := f.fn.ProcessElement(ctx, x.TS, x.B, emit, events); err != nil {
			return outs, after, err
		}
		after = append(after, len(outs))
	}
	return outs, after, f.fn.FinishBundle(ctx, emit, events)
}

// run filters b alone in a bundle and checks every output carries b's
// timestamp.
func (f *fixture) run(t *testing.T, ctx context.Context, b recipient.Batch) out {
	t.Helper()
	const ts = beam.EventTime(1_763_800_000_000)
	outs, _, err := f.bundle(ctx, input{ts, b})
	if err != nil {
		t.Fatalf("filter(%s) = %v, want nil", b.Request.Req.ID, err)
	}
	var o out
	for _, e := range outs {
		if e.TS != ts {
			t.Errorf("filter(%s) emitted %+v at %v, want the input's timestamp %v", b.Request.Req.ID, e, e.TS, ts)
		}
		if e.Kept != nil {
			o.Kept = append(o.Kept, *e.Kept)
		} else {
			o.Events = append(o.Events, *e.Event)
		}
	}
	return o
}

func batch(id, category, priority string, seq int, rs ...recipient.Recipient) recipient.Batch {
	return batchOf(app, id, category, priority, seq, rs...)
}

func batchOf(app, id, category, priority string, seq int, rs ...recipient.Recipient) recipient.Batch {
	return recipient.Batch{
		Request: recipient.Request{
			Req:        pushflow.PushRequest{V: 1, ID: id, App: app, Category: category, Priority: priority, Target: pushflow.Target{Broadcast: true}, Notification: pushflow.Notification{Title: "t"}},
			Source:     recipient.Source{Topic: pushflow.TopicRequests, Offset: 5},
			ReceivedAt: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC),
		},
		Recipients: rs,
		Seq:        seq,
	}
}

func user(id string) recipient.Recipient { return recipient.Recipient{UserID: id} }

func dropped(b recipient.Batch, r recipient.Recipient, reason string, now time.Time) pushflow.DeliveryEvent {
	return b.Event(now, r, pushflow.StageFilter, pushflow.OutcomeDropped, reason)
}

func settingsEvent(user string, s pushflow.Settings) pushflow.DeviceEvent {
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpSettings, App: app, UserID: user, Settings: s}
}

func TestFilterFnRules(t *testing.T) {
	now := time.Date(2026, 11, 22, 22, 30, 0, 0, time.UTC) // 23:30 in Berlin, 06:30 next day in Shanghai
	f := newFixture(t, Config{MinInterest: 0.5}, now,
		settingsEvent("night-owl", pushflow.Settings{Timezone: "Europe/Berlin", QuietHours: "22:00-08:00"}),
		settingsEvent("early-bird", pushflow.Settings{Timezone: "Asia/Shanghai", QuietHours: "22:00-06:00"}),
		settingsEvent("no-marketing", pushflow.Settings{OptOut: []string{"marketing"}}),
		settingsEvent("no-news", pushflow.Settings{OptOut: []string{"news"}}),
	)
	if err := f.reg.SetInterestScores(f.ctx, app, map[string]map[string]float64{
		"bored": {"news": 0.1, "sports": 0.9},
		"keen":  {"news": 0.8},
	}); err != nil {
		t.Fatal(err)
	}
	// Two devices of night-owl: both are dropped, each with its own event.
	owlA := recipient.Recipient{UserID: "night-owl", DeviceID: "dA"}
	owlB := recipient.Recipient{UserID: "night-owl", DeviceID: "dB"}
	b := batch("r-1", "news", pushflow.PriorityNormal, 3,
		owlA, user("early-bird"), user("no-marketing"), user("no-news"), user("bored"), user("keen"), user("stranger"), owlB)
	ctx, counters := beamContext()
	got := f.run(t, ctx, b)
	want := out{
		Kept: []recipient.Batch{b.With([]recipient.Recipient{user("early-bird"), user("no-marketing"), user("keen"), user("stranger")})},
		Events: []pushflow.DeliveryEvent{
			dropped(b, owlA, pushflow.ReasonQuietHours, now),
			dropped(b, user("no-news"), pushflow.ReasonOptOut, now),
			dropped(b, user("bored"), ReasonLowInterest, now),
			dropped(b, owlB, pushflow.ReasonQuietHours, now),
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filter(news at %v) mismatch (-want +got):\n%s", now, diff)
	}
	if len(got.Kept) == 1 && got.Kept[0].Seq != 3 {
		t.Errorf("kept batch Seq = %d, want 3 (the input's)", got.Kept[0].Seq)
	}
	wantCounters := map[string]int64{
		"filter_kept": 4, "filter_dropped_quiet_hours": 2, "filter_dropped_opt_out": 1, "filter_dropped_low_interest": 1,
	}
	if diff := cmp.Diff(wantCounters, counters()); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}

	// A batch where everyone is dropped emits no batch at all.
	all := batch("r-2", "news", pushflow.PriorityNormal, 0, user("night-owl"), user("no-news"))
	got = f.run(t, context.Background(), all)
	if len(got.Kept) != 0 || len(got.Events) != 2 {
		t.Errorf("filter(all dropped) = %d batches, %d events, want 0 batches, 2 events", len(got.Kept), len(got.Events))
	}
}

func TestFilterFnFrequencyCap(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, Config{FrequencyCap: 2}, now)
	ctx, counters := beamContext()

	// Three normal requests of one category to u1: the third is capped.
	var got []out
	for i := range 3 {
		got = append(got, f.run(t, ctx, batch(fmt.Sprintf("n-%d", i), "news", pushflow.PriorityNormal, 0, user("u1"))))
	}
	b2 := batch("n-2", "news", pushflow.PriorityNormal, 0, user("u1"))
	want := []out{
		{Kept: []recipient.Batch{batch("n-0", "news", pushflow.PriorityNormal, 0, user("u1"))}},
		{Kept: []recipient.Batch{batch("n-1", "news", pushflow.PriorityNormal, 0, user("u1"))}},
		{Events: []pushflow.DeliveryEvent{dropped(b2, user("u1"), pushflow.ReasonFrequencyCap, now)}},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("3 news requests to u1 with cap 2 (-want +got):\n%s", diff)
	}
	if c := counters()["filter_dropped_frequency_cap"]; c != 1 {
		t.Errorf("filter_dropped_frequency_cap = %d, want 1", c)
	}

	// Another category has its own count; so does another user.
	if o := f.run(t, context.Background(), batch("s-0", "sports", pushflow.PriorityNormal, 0, user("u1"), user("u2"))); len(o.Events) != 0 || len(o.Kept) != 1 || len(o.Kept[0].Recipients) != 2 {
		t.Errorf("sports to u1, u2 = %+v, want both kept", o)
	}

	// Realtime requests are never capped, but they count: after three of
	// them, a normal request of the same category is over the cap.
	for i := range 3 {
		o := f.run(t, context.Background(), batch(fmt.Sprintf("rt-%d", i), "live", pushflow.PriorityRealtime, 0, user("u3")))
		if len(o.Events) != 0 || len(o.Kept) != 1 {
			t.Errorf("realtime request %d to u3 = %+v, want kept", i, o)
		}
	}
	counts, err := f.reg.IncrFrequency(f.ctx, app, "live", now.Format("20060102"), []string{"u3"})
	if err != nil {
		t.Fatal(err)
	}
	if counts["u3"] != 4 {
		t.Errorf("u3's live count after 3 realtime requests (+1 here) = %d, want 4", counts["u3"])
	}
	if o := f.run(t, context.Background(), batch("n-live", "live", pushflow.PriorityNormal, 0, user("u3"))); len(o.Kept) != 0 || len(o.Events) != 1 || o.Events[0].Reason != pushflow.ReasonFrequencyCap {
		t.Errorf("normal live request to u3 after realtime ones = %+v, want dropped frequency_cap", o)
	}

	// The cap is per UTC day: the next day u1 gets news again.
	f.fn.now = func() time.Time { return now.Add(24 * time.Hour) }
	if o := f.run(t, context.Background(), batch("n-tomorrow", "news", pushflow.PriorityNormal, 0, user("u1"))); len(o.Kept) != 1 || len(o.Events) != 0 {
		t.Errorf("news to u1 the next day = %+v, want kept", o)
	}

	// A user's devices count once per request: two devices of u4 in one
	// batch are one notification of the user's.
	f.fn.now = func() time.Time { return now }
	d1, d2 := recipient.Recipient{UserID: "u4", DeviceID: "d1"}, recipient.Recipient{UserID: "u4", DeviceID: "d2"}
	for i := range 2 {
		if o := f.run(t, context.Background(), batch(fmt.Sprintf("dev-%d", i), "news", pushflow.PriorityNormal, 0, d1, d2)); len(o.Kept) != 1 || len(o.Kept[0].Recipients) != 2 {
			t.Errorf("request %d to u4's two devices = %+v, want both kept", i, o)
		}
	}
	if o := f.run(t, context.Background(), batch("dev-2", "news", pushflow.PriorityNormal, 0, d1, d2)); len(o.Kept) != 0 || len(o.Events) != 2 {
		t.Errorf("third request to u4's two devices = %+v, want both dropped frequency_cap", o)
	}
}

// TestFilterFnFrequencyCapSkipsDropped checks a user dropped by another rule
// is not counted against the cap.
func TestFilterFnFrequencyCapSkipsDropped(t *testing.T) {
	quiet := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
	f := newFixture(t, Config{FrequencyCap: 1}, quiet, settingsEvent("u1", pushflow.Settings{QuietHours: "22:00-07:00"}))
	for i := range 3 {
		if o := f.run(t, context.Background(), batch(fmt.Sprintf("q-%d", i), "news", pushflow.PriorityNormal, 0, user("u1"))); len(o.Events) != 1 || o.Events[0].Reason != pushflow.ReasonQuietHours {
			t.Fatalf("request %d in quiet hours = %+v, want dropped quiet_hours", i, o)
		}
	}
	f.fn.now = func() time.Time { return quiet.Add(-2 * time.Hour) } // 21:00, same day
	if o := f.run(t, context.Background(), batch("after", "news", pushflow.PriorityNormal, 0, user("u1"))); len(o.Kept) != 1 {
		t.Errorf("first request outside quiet hours = %+v, want kept (quiet-hour drops do not count)", o)
	}
}

// TestFilterFnBadSettings checks settings that cannot be evaluated keep the
// user rather than failing the batch.
func TestFilterFnBadSettings(t *testing.T) {
	now := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
	f := newFixture(t, Config{}, now)
	// Written behind the registry's back: Apply would have rejected it.
	c := redis.NewClient(&redis.Options{Addr: f.fn.Cfg.RedisAddr})
	defer c.Close()
	if err := c.Set(f.ctx, "pf:u:{"+app+":u1}:settings", `{"timezone":"Mars/Olympus","quiet_hours":"22:00-07:00"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	b := batch("r-bad", "news", pushflow.PriorityNormal, 0, user("u1"))
	got := f.run(t, context.Background(), b)
	if diff := cmp.Diff(out{Kept: []recipient.Batch{b}}, got); diff != "" {
		t.Errorf("filter(bad settings) mismatch (-want +got):\n%s", diff)
	}
}

// TestFilterFnReplayRecallsDecisions checks a replayed request (after a
// crash) takes its first run's decisions even though the rules would now
// decide otherwise: a user dropped in quiet hours stays dropped (same event
// time), and a user kept before quiet hours began stays kept.
func TestFilterFnReplayRecallsDecisions(t *testing.T) {
	quiet := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
	f := newFixture(t, Config{}, quiet,
		settingsEvent("u1", pushflow.Settings{QuietHours: "22:00-07:00"}),
		settingsEvent("u2", pushflow.Settings{QuietHours: "23:30-07:00"}))
	first := batch("r-replay", "news", pushflow.PriorityNormal, 0, user("u1"), user("u2"))
	o := f.run(t, context.Background(), first)
	if len(o.Events) != 1 || o.Events[0].UserID != "u1" || o.Events[0].Reason != pushflow.ReasonQuietHours || len(o.Kept) != 1 {
		t.Fatalf("first run at 23:00 = %+v, want u1 dropped quiet_hours and u2 kept", o)
	}
	// The restart happens at 23:45: u1 is still in quiet hours, u2 now too;
	// at 07:30 neither would be. Both replays decide as the first run did.
	for _, at := range []time.Time{quiet.Add(45 * time.Minute), quiet.Add(8*time.Hour + 30*time.Minute)} {
		f.fn.now = func() time.Time { return at }
		replay := first
		replay.Request.Replayed = true
		got := f.run(t, context.Background(), replay)
		if diff := cmp.Diff(o, got, cmpopts.IgnoreFields(recipient.Request{}, "Replayed")); diff != "" {
			t.Errorf("replay at %s (-first +replay):\n%s", at.Format("15:04"), diff)
		}
	}
	// A request that is not a replay is decided afresh.
	f.fn.now = func() time.Time { return quiet.Add(8*time.Hour + 30*time.Minute) }
	if got := f.run(t, context.Background(), batch("r-new", "news", pushflow.PriorityNormal, 0, user("u1"), user("u2"))); len(got.Events) != 0 || len(got.Kept) != 1 || len(got.Kept[0].Recipients) != 2 {
		t.Errorf("a new request at 07:30 = %+v, want both kept", got)
	}
}
