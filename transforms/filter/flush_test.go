package filter

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

const otherApp = "com.example.other"

// kept and ev are the expected outputs of in.
func kept(in input, rs ...recipient.Recipient) emitted {
	b := in.B.With(rs)
	return emitted{TS: in.TS, Kept: &b}
}

func ev(in input, r recipient.Recipient, reason string, now time.Time) emitted {
	e := dropped(in.B, r, reason, now)
	return emitted{TS: in.TS, Event: &e}
}

// inputs stamps batches with distinct timestamps 1s, 2s, ...
func inputs(bs ...recipient.Batch) []input {
	in := make([]input, len(bs))
	for i, b := range bs {
		in[i] = input{TS: beam.EventTime(1000 * (i + 1)), B: b}
	}
	return in
}

// TestFilterFnOneBundleEqualsOneBundlePerBatch filters batches of several
// requests (two apps, three categories, realtime and normal, the same users
// in several requests, two batches of one request, an empty batch) in one
// bundle, and one bundle per batch with FlushRecipients -1 (the old
// behaviour), on two fresh Redis servers seeded alike: both emit the same
// outputs in the same order, each at its input's timestamp, update the same
// counters and leave the same frequency counts.
func TestFilterFnOneBundleEqualsOneBundlePerBatch(t *testing.T) {
	now := time.Date(2026, 11, 22, 22, 30, 0, 0, time.UTC) // 23:30 in Berlin
	owlA, owlB := recipient.Recipient{UserID: "night-owl", DeviceID: "dA"}, recipient.Recipient{UserID: "night-owl", DeviceID: "dB"}
	u1a, u1b := recipient.Recipient{UserID: "u1", DeviceID: "d1"}, recipient.Recipient{UserID: "u1", DeviceID: "d2"}
	u2a, u2b := recipient.Recipient{UserID: "u2", DeviceID: "d1"}, recipient.Recipient{UserID: "u2", DeviceID: "d2"}
	N, RT := pushflow.PriorityNormal, pushflow.PriorityRealtime
	in := inputs(
		batch("r-1", "news", N, 0, u1a, owlA, user("bored"), u1b),       // 0
		batchOf(otherApp, "r-2", "news", N, 0, u1a),                     // 1: another app counts apart
		batch("r-3", "news", N, 0, u1a, user("keen")),                   // 2: u1's second news: capped
		batch("r-4", "sports", N, 0, u1a, user("bored")),                // 3: another category counts apart
		batch("r-5", "news", RT, 0, u1a, owlB),                          // 4: realtime: counted, never capped
		batch("r-1", "news", N, 1, user("keen"), user("no-news")),       // 5: r-1's second batch
		batch("r-6", "news", N, 0, owlA),                                // 6: quiet hours, not counted
		batch("r-7", "", N, 0, u2a, u2b),                                // 7: no category: "_"
		batch("r-8", "", N, 0, u2a),                                     // 8: capped
		batch("r-9", "news", N, 0),                                      // 9: empty
		batchOf(otherApp, "r-10", "news", N, 0, user("night-owl"), u1b), // 10: no settings in otherApp
	)
	const (
		quiet = pushflow.ReasonQuietHours
		capd  = pushflow.ReasonFrequencyCap
	)
	want := []emitted{
		ev(in[0], owlA, quiet, now), ev(in[0], user("bored"), ReasonLowInterest, now), kept(in[0], u1a, u1b),
		kept(in[1], u1a),
		ev(in[2], u1a, capd, now), kept(in[2], user("keen")),
		kept(in[3], u1a, user("bored")),
		kept(in[4], u1a, owlB),
		ev(in[5], user("keen"), capd, now), ev(in[5], user("no-news"), pushflow.ReasonOptOut, now),
		ev(in[6], owlA, quiet, now),
		kept(in[7], u2a, u2b),
		ev(in[8], u2a, capd, now),
		ev(in[10], u1b, capd, now), kept(in[10], user("night-owl")),
	}
	wantCounters := map[string]int64{
		"filter_kept": 11, "filter_dropped_quiet_hours": 2, "filter_dropped_low_interest": 1,
		"filter_dropped_opt_out": 1, "filter_dropped_frequency_cap": 4,
	}

	seed := func(flush int) *fixture {
		f := newFixture(t, Config{FrequencyCap: 1, MinInterest: 0.5, FlushRecipients: flush}, now,
			settingsEvent("night-owl", pushflow.Settings{Timezone: "Europe/Berlin", QuietHours: "22:00-08:00"}),
			settingsEvent("no-news", pushflow.Settings{OptOut: []string{"news"}}),
		)
		if err := f.reg.SetInterestScores(f.ctx, app, map[string]map[string]float64{
			"bored": {"news": 0.1, "sports": 0.9},
			"keen":  {"news": 0.8},
		}); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// finalCounts reads (and bumps) the frequency counters the batches left.
	finalCounts := func(f *fixture) map[string]int64 {
		got := map[string]int64{}
		for _, k := range []struct{ app, category string }{{app, "news"}, {app, "sports"}, {app, "_"}, {otherApp, "news"}} {
			c, err := f.reg.IncrFrequency(f.ctx, k.app, k.category, now.Format("20060102"), []string{"u1", "u2", "keen", "night-owl", "bored"})
			if err != nil {
				t.Fatal(err)
			}
			for u, n := range c {
				got[k.app+"/"+k.category+"/"+u] = n - 1
			}
		}
		return got
	}

	batched := seed(0)
	ctx, counters := beamContext()
	got, after, err := batched.bundle(ctx, in...)
	if err != nil {
		t.Fatalf("one bundle: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("one bundle of %d batches (-want +got):\n%s", len(in), diff)
	}
	if after[len(after)-1] != 0 {
		t.Errorf("one bundle emitted %d outputs before FinishBundle, want 0 (under FlushRecipients)", after[len(after)-1])
	}
	if diff := cmp.Diff(wantCounters, counters()); diff != "" {
		t.Errorf("one bundle: counters (-want +got):\n%s", diff)
	}

	perBatch := seed(-1)
	ctx, counters = beamContext()
	var gotPer []emitted
	for _, x := range in {
		o, _, err := perBatch.bundle(ctx, x)
		if err != nil {
			t.Fatalf("bundle of %s: %v", x.B.Request.Req.ID, err)
		}
		gotPer = append(gotPer, o...)
	}
	if diff := cmp.Diff(want, gotPer); diff != "" {
		t.Errorf("one bundle per batch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantCounters, counters()); diff != "" {
		t.Errorf("one bundle per batch: counters (-want +got):\n%s", diff)
	}

	wantCounts := map[string]int64{
		app + "/news/u1": 3, app + "/news/keen": 2, app + "/news/night-owl": 1, app + "/news/u2": 0, app + "/news/bored": 0,
		app + "/sports/u1": 1, app + "/sports/bored": 1, app + "/sports/u2": 0, app + "/sports/keen": 0, app + "/sports/night-owl": 0,
		app + "/_/u2": 2, app + "/_/u1": 0, app + "/_/keen": 0, app + "/_/night-owl": 0, app + "/_/bored": 0,
		otherApp + "/news/u1": 2, otherApp + "/news/night-owl": 1, otherApp + "/news/u2": 0, otherApp + "/news/keen": 0, otherApp + "/news/bored": 0,
	}
	if diff := cmp.Diff(wantCounts, finalCounts(batched)); diff != "" {
		t.Errorf("frequency counts after one bundle (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantCounts, finalCounts(perBatch)); diff != "" {
		t.Errorf("frequency counts after one bundle per batch (-want +got):\n%s", diff)
	}
}

// TestFilterFnFrequencyCapInOneBundle checks the cap counts occurrences in
// arrival order within a flush: with cap 1, of two news requests to u1 in one
// bundle the first is kept and the second dropped, while a sports request in
// the same bundle keeps u1; realtime requests are counted, never capped.
func TestFilterFnFrequencyCapInOneBundle(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, Config{FrequencyCap: 1}, now)
	in := inputs(
		batch("n-1", "news", pushflow.PriorityNormal, 0, user("u1")),
		batch("s-1", "sports", pushflow.PriorityNormal, 0, user("u1")),
		batch("n-2", "news", pushflow.PriorityNormal, 0, user("u1")),
		batch("live-1", "live", pushflow.PriorityRealtime, 0, user("u1")),
		batch("live-2", "live", pushflow.PriorityRealtime, 0, user("u1")),
		batch("live-3", "live", pushflow.PriorityNormal, 0, user("u1")),
	)
	got, _, err := f.bundle(context.Background(), in...)
	if err != nil {
		t.Fatal(err)
	}
	want := []emitted{
		kept(in[0], user("u1")),
		kept(in[1], user("u1")),
		ev(in[2], user("u1"), pushflow.ReasonFrequencyCap, now),
		kept(in[3], user("u1")),
		kept(in[4], user("u1")),
		ev(in[5], user("u1"), pushflow.ReasonFrequencyCap, now),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("one bundle, cap 1 (-want +got):\n%s", diff)
	}
}

// TestFilterFnFlushRecipients checks when outputs appear: ProcessElement
// flushes once FlushRecipients recipients are buffered, FinishBundle
// flushes the rest.
func TestFilterFnFlushRecipients(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	in := inputs(
		batch("a", "news", pushflow.PriorityNormal, 0, user("u1"), user("u2")),
		batch("b", "news", pushflow.PriorityNormal, 0, user("u3")),
		batch("c", "news", pushflow.PriorityNormal, 0), // empty: no output
		batch("d", "news", pushflow.PriorityNormal, 0, user("u4"), user("u5")),
	)
	want := []emitted{kept(in[0], user("u1"), user("u2")), kept(in[1], user("u3")), kept(in[3], user("u4"), user("u5"))}
	for _, tt := range []struct {
		flush     int
		wantAfter []int // outputs emitted when each ProcessElement returned
	}{
		{flush: 0, wantAfter: []int{0, 0, 0, 0}}, // the default, 1000
		{flush: 3, wantAfter: []int{0, 2, 2, 2}}, // a+b reach 3; c+d (2) wait for FinishBundle
		{flush: 2, wantAfter: []int{1, 1, 1, 3}}, // a reaches 2; b+c+d reach 3
		{flush: 1, wantAfter: []int{1, 2, 2, 3}}, // every batch, as before batching
		{flush: -1, wantAfter: []int{1, 2, 2, 3}},
	} {
		t.Run(fmt.Sprintf("FlushRecipients=%d", tt.flush), func(t *testing.T) {
			f := newFixture(t, Config{FlushRecipients: tt.flush}, now)
			got, after, err := f.bundle(context.Background(), in...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantAfter, after); diff != "" {
				t.Errorf("outputs emitted after each ProcessElement (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFilterFnStartBundleClears checks a batch left buffered by a bundle
// that never finished (it failed) is not emitted by the next one.
func TestFilterFnStartBundleClears(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, Config{}, now)
	noEmit := func(beam.EventTime, recipient.Batch) { t.Error("emitted a batch before FinishBundle") }
	noEvent := func(beam.EventTime, pushflow.DeliveryEvent) { t.Error("emitted an event before FinishBundle") }
	f.fn.StartBundle(context.Background(), noEmit, noEvent)
	if err := f.fn.ProcessElement(context.Background(), 1000, batch("lost", "news", pushflow.PriorityNormal, 0, user("u1")), noEmit, noEvent); err != nil {
		t.Fatal(err)
	}
	in := inputs(batch("retried", "news", pushflow.PriorityNormal, 0, user("u2")))
	got, _, err := f.bundle(context.Background(), in...)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]emitted{kept(in[0], user("u2"))}, got); diff != "" {
		t.Errorf("next bundle (-want +got):\n%s", diff)
	}
}

// TestFilterFnRedisError checks a failed Redis read fails the flush with an
// error naming the requests it was for, emits nothing, and leaves the next
// bundle unaffected.
func TestFilterFnRedisError(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, Config{}, now)
	c := redis.NewClient(&redis.Options{Addr: f.fn.Cfg.RedisAddr})
	defer c.Close()
	// Written behind the registry's back: not JSON, so Settings fails.
	if err := c.Set(f.ctx, "pf:u:{"+app+":bad}:settings", "{", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		in      []recipient.Batch
		wantErr string
	}{
		{name: "one request", in: []recipient.Batch{batch("r-1", "news", pushflow.PriorityNormal, 0, user("bad"))}, wantErr: "filter: r-1: redisio: settings of "},
		{name: "two requests of the app", in: []recipient.Batch{
			batch("r-1", "news", pushflow.PriorityNormal, 0, user("u1")),
			batchOf(otherApp, "r-other", "news", pushflow.PriorityNormal, 0, user("bad")),
			batch("r-2", "sports", pushflow.PriorityNormal, 0, user("bad")),
		}, wantErr: "filter: r-1, r-2: redisio: settings of "},
		{name: "many requests", in: []recipient.Batch{
			batch("r-1", "news", pushflow.PriorityNormal, 0, user("u1")),
			batch("r-1", "news", pushflow.PriorityNormal, 1, user("u2")),
			batch("r-2", "news", pushflow.PriorityNormal, 0, user("u3")),
			batch("r-3", "news", pushflow.PriorityNormal, 0, user("u4")),
			batch("r-4", "news", pushflow.PriorityNormal, 0, user("bad")),
			batch("r-5", "news", pushflow.PriorityNormal, 0, user("u5")),
		}, wantErr: "filter: r-1, r-2, r-3 and 2 more requests: redisio: settings of "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := f.bundle(context.Background(), inputs(tt.in...)...)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("filter(%s) = %v, want an error prefixed %q", tt.name, err, tt.wantErr)
			}
			if len(got) != 0 {
				t.Errorf("filter(%s) emitted %d outputs, want none", tt.name, len(got))
			}
		})
	}
	in := inputs(batch("next", "news", pushflow.PriorityNormal, 0, user("u1")))
	got, _, err := f.bundle(context.Background(), in...)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]emitted{kept(in[0], user("u1"))}, got); diff != "" {
		t.Errorf("bundle after a failed one (-want +got):\n%s", diff)
	}
}
