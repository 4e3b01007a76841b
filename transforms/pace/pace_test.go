package pace

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/util/reflectx"
	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// fakeState is an in-memory state.Provider with Value and Bag state, as the
// SDK harness would give a DoFn for one key.
type fakeState struct {
	values  map[string]any
	bags    map[string][]any
	reads   int            // bag reads, to check when the DoFn reads its bags
	readsOf map[string]int // bag reads per bag
}

func newFakeState() *fakeState {
	return &fakeState{values: map[string]any{}, bags: map[string][]any{}, readsOf: map[string]int{}}
}

func (f *fakeState) ReadValueState(id string) (any, []state.Transaction, error) {
	return f.values[id], nil, nil
}
func (f *fakeState) WriteValueState(t state.Transaction) error { f.values[t.Key] = t.Val; return nil }
func (f *fakeState) ClearValueState(t state.Transaction) error { delete(f.values, t.Key); return nil }
func (f *fakeState) ReadBagState(id string) ([]any, []state.Transaction, error) {
	f.reads++
	f.readsOf[id]++
	return slices.Clone(f.bags[id]), nil, nil
}
func (f *fakeState) WriteBagState(t state.Transaction) error {
	f.bags[t.Key] = append(f.bags[t.Key], t.Val)
	return nil
}
func (f *fakeState) ClearBagState(t state.Transaction) error { delete(f.bags, t.Key); return nil }

func (f *fakeState) CreateAccumulatorFn(string) reflectx.Func { panic("not used") }
func (f *fakeState) AddInputFn(string) reflectx.Func          { panic("not used") }
func (f *fakeState) MergeAccumulatorsFn(string) reflectx.Func { panic("not used") }
func (f *fakeState) ExtractOutputFn(string) reflectx.Func     { panic("not used") }
func (f *fakeState) ReadMapStateValue(string, any) (any, []state.Transaction, error) {
	panic("not used")
}
func (f *fakeState) ReadMapStateKeys(string) ([]any, []state.Transaction, error) { panic("not used") }
func (f *fakeState) WriteMapState(state.Transaction) error                       { panic("not used") }
func (f *fakeState) ClearMapStateKey(state.Transaction) error                    { panic("not used") }
func (f *fakeState) ClearMapState(state.Transaction) error                       { panic("not used") }
func (f *fakeState) ReadOrderedListState(string) ([]any, []state.Transaction, error) {
	panic("not used")
}
func (f *fakeState) WriteOrderedListState(state.Transaction) error { panic("not used") }
func (f *fakeState) ClearOrderedListState(state.Transaction) error { panic("not used") }

// fakeTimers records the one pending timer of the key.
type fakeTimers struct {
	set  bool
	at   time.Time
	sets int
}

func (f *fakeTimers) Set(t timers.TimerMap) {
	if t.Clear {
		f.set = false
		return
	}
	f.set, f.at = true, t.FireTimestamp.ToTime()
	f.sets++
}

// harness drives one key of a paceFn with a fake clock.
type harness struct {
	t   *testing.T
	fn  *paceFn
	key int             // the shard the harness drives; 0 unless set
	ctx context.Context // of the firings; context.Background() unless set
	now time.Time
	sp  *fakeState
	tp  *fakeTimers
	out []release
	// refills counts the firings that read the inbox (either bag).
	refills int
}

type release struct {
	At    time.Duration // since the start of the test
	Batch recipient.Batch
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, ctx: context.Background(), now: t0, sp: newFakeState(), tp: &fakeTimers{}}
	cfg.Clock = func() time.Time { return h.now }
	h.fn = newFn(cfg.withDefaults("test"))
	h.fn.Setup()
	t.Cleanup(h.fn.Teardown)
	return h
}

func (h *harness) emit(b recipient.Batch) { h.out = append(h.out, release{h.now.Sub(t0), b}) }

func (h *harness) add(bs ...recipient.Batch) {
	h.t.Helper()
	for _, b := range bs {
		if err := h.fn.ProcessElement(h.sp, h.tp, h.key, b, h.emit); err != nil {
			h.t.Fatalf("ProcessElement(%s/%d) = %v", b.Request.Req.ID, b.Seq, err)
		}
	}
}

// fire advances the clock to the timer (plus late) and fires it.
func (h *harness) fire(late time.Duration) {
	h.t.Helper()
	if !h.tp.set {
		h.t.Fatal("fire: no timer set")
	}
	h.tp.set = false
	if at := h.tp.at.Add(late); at.After(h.now) {
		h.now = at
	}
	reads := h.sp.reads
	if err := h.fn.OnTimer(h.ctx, h.sp, h.tp, h.key, timers.Context{Family: "slot"}, h.emit); err != nil {
		h.t.Fatalf("OnTimer = %v", err)
	}
	if h.sp.reads > reads {
		h.refills++
	}
}

// drain fires the timer until none is set, and returns how many firings.
func (h *harness) drain(late time.Duration) int {
	h.t.Helper()
	n := 0
	for h.tp.set {
		h.fire(late)
		if n++; n > 100000 {
			h.t.Fatal("drain: timer never stops")
		}
	}
	return n
}

// batches returns the batches of one request of campaign c: n recipients
// cut into batches of size, users named "<id>-u<i>".
func batches(id, campaign string, n, size int) []recipient.Batch {
	req := recipient.Request{Req: pushflow.PushRequest{V: 1, ID: id, App: "com.example.news", Campaign: campaign,
		Priority: pushflow.PriorityBulk, Notification: pushflow.Notification{Title: "t"}}}
	var out []recipient.Batch
	for i := 0; i < n; i += size {
		b := recipient.Batch{Request: req, Seq: len(out)}
		for j := i; j < min(i+size, n); j++ {
			b.Recipients = append(b.Recipients, recipient.Recipient{UserID: fmt.Sprintf("%s-u%d", id, j)})
		}
		out = append(out, b)
	}
	return out
}

// perFiring sums released recipients per (firing time, campaign).
func perFiring(rs []release) map[time.Duration]map[string]int {
	m := map[time.Duration]map[string]int{}
	for _, r := range rs {
		if m[r.At] == nil {
			m[r.At] = map[string]int{}
		}
		m[r.At][r.Batch.Request.Req.Campaign] += len(r.Batch.Recipients)
	}
	return m
}

// users lists released users of request id, in release order.
func users(rs []release, id string) []string {
	var us []string
	for _, r := range rs {
		if r.Batch.Request.Req.ID == id {
			for _, u := range r.Batch.Recipients {
				us = append(us, u.UserID)
			}
		}
	}
	return us
}

func wantUsers(id string, n int) []string {
	us := make([]string, n)
	for i := range us {
		us[i] = fmt.Sprintf("%s-u%d", id, i)
	}
	return us
}

func TestFnSingleCampaignCeiling(t *testing.T) {
	h := newHarness(t, Config{Slot: 50 * time.Millisecond, CampaignQPS: map[string]int{"solo": 1000}, GlobalQPS: 5000})
	h.add(batches("r1", "solo", 230, 40)...)
	if !h.tp.set || !h.tp.at.Equal(t0) {
		t.Fatalf("after the first element: timer set=%v at %v, want set at now %v", h.tp.set, h.tp.at, t0)
	}
	if h.tp.sets != 1 {
		t.Errorf("timer set %d times for 6 elements, want once", h.tp.sets)
	}
	h.drain(0)
	// 1000/s in 50 ms slots = 50 per slot: 230 = 4×50 + 30, at 0, 50, ... 200 ms.
	want := map[time.Duration]map[string]int{}
	for i, n := range []int{50, 50, 50, 50, 30} {
		want[time.Duration(i)*50*time.Millisecond] = map[string]int{"solo": n}
	}
	if diff := cmp.Diff(want, perFiring(h.out)); diff != "" {
		t.Errorf("released per firing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantUsers("r1", 230), users(h.out, "r1")); diff != "" {
		t.Errorf("users out of order or not exactly once (-want +got):\n%s", diff)
	}
	for _, r := range h.out {
		if len(r.Batch.Recipients) > 40 || r.Batch.Request.Req.ID != "r1" {
			t.Errorf("released batch %d of %s with %d recipients; want a piece of a 40-recipient batch", r.Batch.Seq, r.Batch.Request.Req.ID, len(r.Batch.Recipients))
		}
	}
	for _, id := range []string{"pending", "open"} {
		if n := len(h.sp.bags[id]); n != 0 {
			t.Errorf("%s after drain = %d entries, want 0", id, n)
		}
	}
}

func TestFnEvenSharesAndRedistribution(t *testing.T) {
	h := newHarness(t, Config{Slot: 50 * time.Millisecond, GlobalQPS: 2000, CampaignQPS: map[string]int{"slow": 200}})
	h.add(batches("a1", "a", 300, 25)...)
	h.add(batches("b1", "b", 300, 60)...)
	h.add(batches("s1", "slow", 100, 100)...)
	h.drain(0)
	// 100 per slot; slow gets its ceiling 10 (200/s), a and b share the
	// other 90 → 45 each; when a and b run out, slow keeps its 10.
	want := map[time.Duration]map[string]int{}
	for i := range 10 {
		switch at := time.Duration(i) * 50 * time.Millisecond; {
		case i < 6:
			want[at] = map[string]int{"a": 45, "b": 45, "slow": 10}
		case i == 6:
			want[at] = map[string]int{"a": 30, "b": 30, "slow": 10}
		default:
			want[at] = map[string]int{"slow": 10}
		}
	}
	if diff := cmp.Diff(want, perFiring(h.out)); diff != "" {
		t.Errorf("released per firing (-want +got):\n%s", diff)
	}
	for _, id := range []string{"a1", "b1"} {
		if diff := cmp.Diff(wantUsers(id, 300), users(h.out, id)); diff != "" {
			t.Errorf("%s users (-want +got):\n%s", id, diff)
		}
	}
}

func TestFnEqualSharesRotateRemainder(t *testing.T) {
	h := newHarness(t, Config{Slot: 50 * time.Millisecond, GlobalQPS: 2000})
	for _, c := range []string{"x", "y", "z"} {
		h.add(batches(c+"1", c, 300, 50)...)
	}
	h.drain(0)
	for at, got := range perFiring(h.out) {
		lo, hi := 300, 0
		for _, n := range got {
			lo, hi = min(lo, n), max(hi, n)
		}
		if len(got) == 3 && hi-lo > 1 {
			t.Errorf("slot at %v: shares %v differ by more than 1", at, got)
		}
	}
	// 900 at 100/slot = 9 slots; with rotation every campaign gets its
	// 300 within those 9 slots (no campaign is left with a tail).
	if got := len(perFiring(h.out)); got != 9 {
		t.Errorf("released in %d slots, want 9", got)
	}
}

func TestFnLateTimerCatchesUpBounded(t *testing.T) {
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 100, CatchUp: 300 * time.Millisecond})
	h.add(batches("r", "c", 1000, 1000)...) // one big batch
	h.fire(0)                               // slot 0 at t0: 10
	h.fire(150 * time.Millisecond)          // due at 100 ms, fires at 250 ms: slots 1, 2 → 20
	h.fire(2 * time.Second)                 // due at 300 ms, fires at 2.3 s: 20 slots missed, catch-up 3 + current → 40
	h.fire(0)                               // on the boundary 2.4 s → 10
	want := map[time.Duration]map[string]int{
		0:                       {"c": 10},
		250 * time.Millisecond:  {"c": 20},
		2300 * time.Millisecond: {"c": 40},
		2400 * time.Millisecond: {"c": 10},
	}
	if diff := cmp.Diff(want, perFiring(h.out)); diff != "" {
		t.Errorf("released per firing (-want +got):\n%s", diff)
	}
	if want := t0.Add(2500 * time.Millisecond); !h.tp.at.Equal(want) {
		t.Errorf("next timer at %v, want the next slot boundary %v", h.tp.at.Sub(t0), want.Sub(t0))
	}
}

func TestFnNoBurstAfterIdle(t *testing.T) {
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 100})
	h.add(batches("r1", "c", 4, 4)...)
	h.drain(0) // 4 released at t0; no timer left
	if h.tp.set {
		t.Fatal("timer still set after the backlog drained")
	}
	// A batch arriving in the same slot waits for the next slot boundary.
	h.now = t0.Add(30 * time.Millisecond)
	h.add(batches("r2", "c", 30, 30)...)
	if want := t0.Add(100 * time.Millisecond); !h.tp.at.Equal(want) {
		t.Errorf("timer at %v, want the next slot boundary %v", h.tp.at.Sub(t0), want.Sub(t0))
	}
	h.drain(0)
	// After a long idle, a new batch starts a new period at once, with one
	// slot of budget: no saved-up burst.
	h.now = t0.Add(time.Hour + 7*time.Millisecond)
	h.out = nil
	h.add(batches("r3", "c", 30, 30)...)
	h.fire(0)
	if diff := cmp.Diff(map[time.Duration]map[string]int{time.Hour + 7*time.Millisecond: {"c": 10}}, perFiring(h.out)); diff != "" {
		t.Errorf("first firing after idle (-want +got):\n%s", diff)
	}
}

func TestFnFractionalRatesOverShards(t *testing.T) {
	// 1000/s over 16 shards in 100 ms slots is 6.25 per slot per shard: the
	// shard must release exactly 62 or 63 per second, never run ahead.
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, Shards: 16, GlobalQPS: 1000})
	h.add(batches("r", "c", 500, 7)...)
	h.drain(0)
	var cum int
	for _, r := range h.out {
		cum += len(r.Batch.Recipients)
		if limit := 62.5*(r.At.Seconds()+0.1) + 1e-9; float64(cum) > limit {
			t.Fatalf("released %d by %v, more than 62.5/s allows (%.2f)", cum, r.At, limit)
		}
	}
	last := h.out[len(h.out)-1].At
	if rate := float64(500-6) / last.Seconds(); rate < 62 || rate > 63 {
		t.Errorf("shard rate = %.2f/s, want 62.5/s", rate)
	}
}

func TestFnUnlimitedAndEmpty(t *testing.T) {
	h := newHarness(t, Config{})
	empty := recipient.Batch{Request: recipient.Request{Req: pushflow.PushRequest{ID: "e"}}}
	h.add(empty)
	if len(h.out) != 1 || h.tp.set {
		t.Fatalf("empty batch: out %d, timer %v; want passed through at once without a timer", len(h.out), h.tp.set)
	}
	h.add(batches("r", "c", 1000, 100)...)
	if n := h.drain(0); n != 1 {
		t.Errorf("no limits: %d firings, want 1", n)
	}
	if got := len(users(h.out, "r")); got != 1000 {
		t.Errorf("released %d, want 1000", got)
	}
}

func TestFnEarlyFiringStillAdvances(t *testing.T) {
	// Timers have millisecond resolution and runner and SDK clocks may
	// differ: a firing slightly before the boundary is the next slot.
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 100})
	h.add(batches("r", "c", 30, 30)...)
	h.fire(0)
	h.now = h.tp.at.Add(-2 * time.Millisecond)
	h.tp.at = h.now
	h.fire(0)
	if got := len(users(h.out, "r")); got != 20 {
		t.Errorf("released %d after two firings, want 20", got)
	}
}

func TestFnReadsInboxOnlyOnRefill(t *testing.T) {
	h := newHarness(t, Config{Slot: 50 * time.Millisecond, GlobalQPS: 1000})
	h.add(batches("r", "c", 200, 10)...) // small batches: to "open"
	if h.sp.reads != 0 || len(h.sp.bags["open"]) != 20 {
		t.Errorf("20 small batches: %d bag reads, %d entries in open; want 0 reads (appends only) and 20", h.sp.reads, len(h.sp.bags["open"]))
	}
	h.add(batches("big", "c", 300, 300)...)
	if h.sp.reads != 1 || h.sp.readsOf["open"] != 1 {
		t.Errorf("ProcessElement read bags %v, want \"open\" once (appends only, but a large batch moves its campaign's open batches to \"pending\")", h.sp.readsOf)
	}
	if got, want := len(h.sp.bags["pending"]), 2; got != want || len(h.sp.bags["open"]) != 0 {
		t.Errorf("inbox = %d entries in pending, %d in open; want %d (the 20 small batches coalesced, the large one) and 0",
			got, len(h.sp.bags["open"]), want)
	}
	h.sp.reads = 0
	h.add(batches("r2", "c", 40, 10)...)
	h.fire(0) // the first firing refills the empty ready queue: 540 < 20 slots of 50
	if h.sp.reads != 2 || h.refills != 1 {
		t.Errorf("first firing read bags %d times (%v), want each once (refill)", h.sp.reads, h.sp.readsOf)
	}
	if got := len(h.sp.bags["pending"]) + len(h.sp.bags["open"]); got != 0 {
		t.Errorf("inbox after the refill holds %d entries, want 0 (all moved to ready)", got)
	}
	n := h.drain(0)
	if h.refills != 1 {
		t.Errorf("%d more firings with a sufficient ready queue and nothing new read the inbox %d times, want 0", n, h.refills-1)
	}
	if got := len(users(h.out, "big")) + len(users(h.out, "r2")); got != 340 {
		t.Errorf("released %d of big and r2, want 340", got)
	}
	if got := len(users(h.out, "r")); got != 200 || n != 10 {
		t.Errorf("released %d in %d more firings, want 200 in 10", got, n)
	}
	if _, ok := h.sp.values["ready"]; ok {
		t.Errorf("ready queue not cleared after the drain")
	}
}

func TestFnLargeBacklogReadsInboxRarely(t *testing.T) {
	// 100,000 recipients of one campaign in 1-recipient batches, 1000/s in
	// 100 ms slots: every firing releases exactly 100 from the ready queue
	// and reads the inbox only to refill it (≈ every 19 slots).
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 1000})
	h.add(batches("big", "c", 100_000, 1)...)
	if got, want := len(h.sp.bags["pending"])+len(h.sp.bags["open"]), 100_000/coalesceTarget; got > want {
		t.Errorf("inbox holds %d entries for 100,000 one-recipient batches, want at most %d (coalesced)", got, want)
	}
	for i := range 50 {
		before := len(h.out)
		h.fire(0)
		got := 0
		for _, r := range h.out[before:] {
			got += len(r.Batch.Recipients)
		}
		if got != 100 {
			t.Fatalf("firing %d released %d, want exactly the slot budget 100", i, got)
		}
	}
	if h.refills > 5 {
		t.Errorf("50 firings read the inbox %d times, want at most 5", h.refills)
	}
	t.Logf("50 firings, %d inbox reads", h.refills)
	if diff := cmp.Diff(wantUsers("big", 5000), users(h.out, "big")); diff != "" {
		t.Errorf("users out of order (-want +got):\n%s", diff)
	}
}

func TestFnNewCampaignAdmittedWithinRefillEvery(t *testing.T) {
	// A has 50,000 pending; B (300) arrives right after a refill. B must
	// start releasing within RefillEvery + 1 slot of its arrival and then
	// get an even share of every slot.
	slot := 100 * time.Millisecond
	h := newHarness(t, Config{Slot: slot, GlobalQPS: 1000})
	h.add(batches("a1", "a", 50_000, 70)...)
	h.fire(0) // refill at t0
	h.now = t0.Add(10 * time.Millisecond)
	arrived := h.now.Sub(t0)
	h.add(batches("b1", "b", 300, 30)...)
	h.drain(0)

	var firstB time.Duration = -1
	fs := perFiring(h.out)
	var ats []time.Duration
	for at := range fs {
		ats = append(ats, at)
	}
	slices.Sort(ats)
	for _, at := range ats {
		got := fs[at]
		if got["a"]+got["b"] != 100 && got["a"] > 0 {
			t.Errorf("slot at %v released %v, want the whole budget 100", at, got)
		}
		if got["b"] > 0 && firstB < 0 {
			firstB = at
		}
		if firstB >= 0 && at < firstB+6*slot && (got["a"] != 50 || got["b"] != 50) {
			t.Errorf("slot at %v released %v once B started at %v, want 50 each", at, got, firstB)
		}
	}
	if bound := arrived + refillEverySlots*slot + slot; firstB < 0 || firstB > bound {
		t.Errorf("B arrived at %v and first released at %v, want by %v", arrived, firstB, bound)
	}
	t.Logf("B arrived at %v, first released at %v", arrived, firstB)
	for id, n := range map[string]int{"a1": 50_000, "b1": 300} {
		if diff := cmp.Diff(wantUsers(id, n), users(h.out, id)); diff != "" {
			t.Errorf("%s users out of order or not exactly once (-want +got):\n%s", id, diff)
		}
	}
	if n := len(h.sp.bags["pending"]) + len(h.sp.bags["open"]); n != 0 {
		t.Errorf("inbox after drain = %d entries, want 0", n)
	}
}

func TestFnCappedCampaignDoesNotStallReadyQueue(t *testing.T) {
	// A capped campaign's part of the ready queue drains slowly; when the
	// uncapped one empties its part, the firing must refill rather than
	// release only the capped campaign's 10.
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 1000, CampaignQPS: map[string]int{"slow": 100}})
	h.add(batches("f1", "fast", 20_000, 50)...)
	h.add(batches("s1", "slow", 20_000, 50)...)
	for i := range 100 {
		before := len(h.out)
		h.fire(0)
		got := map[string]int{}
		for _, r := range h.out[before:] {
			got[r.Batch.Request.Req.Campaign] += len(r.Batch.Recipients)
		}
		if got["fast"] != 90 || got["slow"] != 10 {
			t.Fatalf("firing %d released %v, want fast 90 and slow 10", i, got)
		}
	}
	if h.refills > 12 {
		t.Errorf("100 firings read the inbox %d times, want at most 12", h.refills)
	}
	t.Logf("100 firings, %d inbox reads", h.refills)
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Shards: -1}, "Shards"},
		{Config{Slot: -time.Second}, "Slot"},
		{Config{Slot: time.Microsecond}, "Slot"},
		{Config{GlobalQPS: -1}, "GlobalQPS"},
		{Config{DefaultCampaignQPS: -1}, "DefaultCampaignQPS"},
		{Config{CampaignQPS: map[string]int{"c": -5}}, `CampaignQPS["c"]`},
		{Config{CatchUp: -time.Second}, "CatchUp"},
		{Config{Clock: time.Now}, "Clock"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, _ := r.(string); !strings.HasPrefix(msg, "pace.Paced: ") || !strings.Contains(msg, tc.want) {
					t.Errorf("Paced(%+v) panicked with %v, want a pace.Paced: panic naming %s", tc.cfg, r, tc.want)
				}
			}()
			_, s := beam.NewPipelineWithRoot()
			Paced(s, beam.Create(s, batches("r", "c", 1, 1)[0]), tc.cfg)
		})
	}
	got := Config{}.withDefaults("x")
	if got.Shards != 1 || got.Slot != DefaultSlot || got.CatchUp != DefaultCatchUpSlots*DefaultSlot || got.Lane != DefaultLane || got.RedisAddr != "" {
		t.Errorf("defaults = %+v, want Shards 1, Slot %v, CatchUp %v, Lane %q, no RedisAddr", got, DefaultSlot, DefaultCatchUpSlots*DefaultSlot, DefaultLane)
	}
}

func TestShardSpreadsBatchesOfARequest(t *testing.T) {
	counts := make([]int, 8)
	for _, b := range batches("req-42", "c", 80*10, 10) {
		s := Shard(b, 8)
		if s2 := Shard(b, 8); s2 != s {
			t.Fatalf("Shard is not deterministic: %d then %d", s, s2)
		}
		counts[s]++
	}
	for s, n := range counts {
		if n != 10 {
			t.Errorf("shard %d got %d of 80 batches, want 10 (round-robin over seq)", s, n)
		}
	}
	if s := Shard(recipient.Batch{Seq: 5}, 1); s != 0 {
		t.Errorf("Shard(_, 1) = %d, want 0", s)
	}
}

func TestFnDefaultAndExplicitCeilings(t *testing.T) {
	// slot 100 ms: the default 100/s is 10 per slot; "vip" set to 0 has no
	// ceiling (0 overrides the default); "named" has its own 50/s = 5.
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, DefaultCampaignQPS: 100,
		CampaignQPS: map[string]int{"vip": 0, "named": 50}})
	h.add(batches("v", "vip", 500, 100)...)
	h.add(batches("d", "other", 500, 100)...)
	h.add(batches("n", "named", 500, 100)...)
	h.fire(0)
	if diff := cmp.Diff(map[time.Duration]map[string]int{0: {"vip": 500, "other": 10, "named": 5}}, perFiring(h.out)); diff != "" {
		t.Errorf("first firing (-want +got):\n%s", diff)
	}
}
