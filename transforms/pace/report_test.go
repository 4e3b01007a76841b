package pace

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// reports reads the pacer's backlog reports back from a Redis: raw, with
// HGETALL on the key redisio documents (pf:pace:<lane>:<shard>), and
// through redisio.Registry.Backlog, what the expansion reads.
type reports struct {
	t    testing.TB
	c    *redis.Client
	reg  *redisio.Registry
	lane string
}

func newReports(t testing.TB, addr, lane string) *reports {
	c := redis.NewClient(&redis.Options{Addr: addr})
	reg := redisio.New(c)
	t.Cleanup(func() { c.Close() })
	return &reports{t: t, c: c, reg: reg, lane: lane}
}

func (r *reports) key(shard int) string { return "pf:pace:" + r.lane + ":" + strconv.Itoa(shard) }

// hash returns shard's report; nil when there is none.
func (r *reports) hash(shard int) map[string]int64 {
	r.t.Helper()
	raw, err := r.c.HGetAll(context.Background(), r.key(shard)).Result()
	if err != nil {
		r.t.Fatalf("HGETALL %s: %v", r.key(shard), err)
	}
	if len(raw) == 0 {
		return nil
	}
	m := make(map[string]int64, len(raw))
	for f, v := range raw {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			r.t.Fatalf("HGETALL %s: field %q = %q: %v", r.key(shard), f, v, err)
		}
		// Counts are "c:<campaign>"; "t" is the newest emission time.
		if c, ok := strings.CutPrefix(f, "c:"); ok {
			m[c] = n
		} else if f != "t" {
			r.t.Fatalf("HGETALL %s: unexpected field %q", r.key(shard), f)
		}
	}
	return m
}

// backlog is campaign's sum over shards, as the expansion reads it.
func (r *reports) backlog(campaign string, shards int) int64 {
	r.t.Helper()
	n, err := r.reg.Backlog(context.Background(), r.lane, campaign, shards)
	if err != nil {
		r.t.Fatalf("Backlog(%q, %q, %d): %v", r.lane, campaign, shards, err)
	}
	return n
}

// pendingOf returns the recipients added minus those released, per
// campaign, leaving out campaigns with none: what the key holds.
func pendingOf(added map[string]int64, out []release) map[string]int64 {
	m := map[string]int64{}
	for c, n := range added {
		m[c] = n
	}
	for _, r := range out {
		m[r.Batch.Request.Req.Campaign] -= int64(len(r.Batch.Recipients))
	}
	for c, n := range m {
		if n == 0 {
			delete(m, c)
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// inboxBy sums the inbox's recipients per campaign, in both bags ("pending"
// and "open"); nil when empty.
func (h *harness) inboxBy() map[string]int64 {
	var m map[string]int64
	for _, id := range []string{"pending", "open"} {
		for _, v := range h.sp.bags[id] {
			for _, b := range v.(pendingEntry).Batches {
				if m == nil {
					m = map[string]int64{}
				}
				m[b.Request.Req.Campaign] += int64(len(b.Recipients))
			}
		}
	}
	return m
}

func (h *harness) pos() slotState {
	h.t.Helper()
	pos, ok := h.sp.values["pos"].(slotState)
	if !ok {
		h.t.Fatalf("no position state")
	}
	return pos
}

func (h *harness) ready() []pendingEntry {
	ready, _ := h.sp.values["ready"].([]pendingEntry)
	return ready
}

func TestFnReportsBacklog(t *testing.T) {
	// 100 per slot, b capped at 30: a gets 70 (batches of 80, so nearly
	// every firing splits one), the refill target is 2100 (of 4500), so
	// refills leave batches in the inbox and split one of each campaign
	// between the inbox and the ready queue. c arrives later.
	addr := redistest.Start(t)
	const lane = "test-lane"
	h := newHarness(t, Config{Slot: 100 * time.Millisecond, GlobalQPS: 1000, CampaignQPS: map[string]int{"b": 300},
		RedisAddr: addr, Lane: lane})
	rep := newReports(t, addr, lane)
	added := map[string]int64{}
	size := map[string]int{} // request/seq → recipients as added
	add := func(bs []recipient.Batch) {
		t.Helper()
		h.add(bs...)
		for _, b := range bs {
			added[b.Request.Req.Campaign] += int64(len(b.Recipients))
			size[b.Request.Req.ID+"/"+strconv.Itoa(b.Seq)] = len(b.Recipients)
		}
	}
	add(batches("a1", "a", 3000, 80))
	add(batches("b1", "b", 1500, 45))
	if got := h.pos().WaitingBy; !cmp.Equal(got, map[string]int64{"a": 3000, "b": 1500}) {
		t.Errorf("WaitingBy after adding = %v, want a 3000, b 1500", got)
	}
	if got := rep.hash(0); got != nil {
		t.Errorf("report before any firing = %v, want none (firings report)", got)
	}

	var refillSplit, releaseSplit, bothTiers bool
	firings := 0
	for h.tp.set {
		if firings == 10 {
			h.now = h.now.Add(10 * time.Millisecond)
			add(batches("c1", "c", 400, 30))
		}
		before := len(h.out)
		h.fire(0)
		firings++

		pos := h.pos()
		inbox := h.inboxBy()
		if !cmp.Equal(pos.WaitingBy, inbox, cmpEmptyMap) {
			t.Fatalf("firing %d: WaitingBy = %v, want the inbox's %v", firings, pos.WaitingBy, inbox)
		}
		var sum int64
		for c, n := range pos.WaitingBy {
			if n <= 0 {
				t.Errorf("firing %d: WaitingBy[%q] = %d, want no zero or negative entries", firings, c, n)
			}
			sum += n
		}
		if sum != pos.Waiting {
			t.Errorf("firing %d: WaitingBy sums to %d, Waiting = %d", firings, sum, pos.Waiting)
		}

		want := pendingOf(added, h.out)
		if diff := cmp.Diff(want, rep.hash(0)); diff != "" {
			t.Fatalf("firing %d: report (-pending +reported):\n%s", firings, diff)
		}
		for _, c := range []string{"a", "b", "c"} {
			if got := rep.backlog(c, 1); got != want[c] {
				t.Errorf("firing %d: Backlog(%q) = %d, want %d", firings, c, got, want[c])
			}
		}
		if firings == 1 {
			if ttl := rep.c.PTTL(context.Background(), rep.key(0)).Val(); ttl <= 0 || ttl > ReportTTL {
				t.Errorf("report TTL = %v, want in (0, %v]", ttl, ReportTTL)
			}
		}

		ready := h.ready()
		bothTiers = bothTiers || (len(ready) > 0 && len(inbox) > 0)
		for _, it := range ready {
			for _, v := range h.sp.bags["pending"] {
				refillSplit = refillSplit || v.(pendingEntry).N == it.N
			}
		}
		for _, r := range h.out[before:] {
			releaseSplit = releaseSplit || len(r.Batch.Recipients) < size[r.Batch.Request.Req.ID+"/"+strconv.Itoa(r.Batch.Seq)]
		}
	}
	if !bothTiers || !refillSplit || !releaseSplit {
		t.Errorf("scenario did not cover: both tiers non-empty %v, a batch split by a refill %v, a batch split by a release %v", bothTiers, refillSplit, releaseSplit)
	}
	if h.refills < 2 {
		t.Errorf("%d refills, want several", h.refills)
	}
	t.Logf("%d firings, %d refills", firings, h.refills)
	for c, n := range added {
		if got := len(users(h.out, c+"1")); int64(got) != n {
			t.Errorf("released %d of %s, want %d", got, c, n)
		}
	}
	if n := rep.c.Exists(context.Background(), rep.key(0)).Val(); n != 0 {
		t.Errorf("report %s still exists after the last release: %v", rep.key(0), rep.hash(0))
	}
}

// cmpEmptyMap makes a nil map equal to an empty one (the state coder may
// decode either).
var cmpEmptyMap = cmp.FilterValues(func(a, b map[string]int64) bool { return len(a) == 0 && len(b) == 0 },
	cmp.Comparer(func(a, b map[string]int64) bool { return true }))

func TestFnReportsOnItsShard(t *testing.T) {
	addr := redistest.Start(t)
	h := newHarness(t, Config{Shards: 4, Slot: 100 * time.Millisecond, GlobalQPS: 4000, RedisAddr: addr})
	h.key = 3
	rep := newReports(t, addr, DefaultLane)
	h.add(batches("r", "c", 500, 50)...)
	h.fire(0) // 4000/s over 4 shards: 100 per slot
	if diff := cmp.Diff(map[string]int64{"c": 400}, rep.hash(3)); diff != "" {
		t.Errorf("report of shard 3 (-want +got):\n%s", diff)
	}
	for s := range 3 {
		if got := rep.hash(s); got != nil {
			t.Errorf("shard %d reported %v; only shard 3 fired", s, got)
		}
	}
	if got := rep.backlog("c", 4); got != 400 {
		t.Errorf("Backlog over 4 shards = %d, want 400", got)
	}
}

func TestFnReportErrorDoesNotFailFiring(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there now: every report fails

	var logs bytes.Buffer
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	reportLogged.Store(0)

	slot := 10 * time.Millisecond
	h := newHarness(t, Config{Slot: slot, GlobalQPS: 10_000, RedisAddr: closed}) // 100 per slot
	h.ctx = metrics.SetPTransformID(metrics.SetBundleID(context.Background(), "b1"), "pace")
	h.add(batches("r", "c", 450, 50)...)
	start := time.Now()
	n := h.drain(0) // fails the test if OnTimer returns an error
	took := time.Since(start)
	if diff := cmp.Diff(wantUsers("r", 450), users(h.out, "r")); diff != "" {
		t.Errorf("released users (-want +got):\n%s", diff)
	}
	if n != 5 {
		t.Errorf("%d firings, want 5", n)
	}
	if took > time.Duration(n)*(slot+500*time.Millisecond) {
		t.Errorf("%d firings with Redis down took %v; want each report bounded by about a slot (%v)", n, took, slot)
	}
	var errs int64 = -1
	for _, c := range metrics.ResultsExtractor(h.ctx).AllMetrics().Counters() {
		if c.Namespace() == "pushflow" && c.Name() == "pace_report_errors" {
			errs = c.Result()
		}
	}
	if errs != int64(n) {
		t.Errorf("pace_report_errors = %d, want %d (one per firing)", errs, n)
	}
	if got := strings.Count(logs.String(), "pace: backlog report failed"); got != 1 {
		t.Errorf("logged %d report errors in %d failed firings within 10 s, want 1:\n%s", got, n, logs.String())
	}
	if !strings.Contains(logs.String(), closed) {
		t.Errorf("log does not name the address %s:\n%s", closed, logs.String())
	}
}

func TestSlotStateCoderKeepsWaitingBy(t *testing.T) {
	// The coder Beam infers for the "pos" state (as for an element of
	// that type); TestPacedPipeline checks it on Prism too.
	in := slotState{Epoch: 1, Last: 2, TimerAt: 3, NextN: 4, Inbox: 5, Waiting: 9,
		WaitingBy: map[string]int64{"a": 7, "": 2}, Refilled: 6, Open: 3, OpenBy: map[string]int64{"a": 3}}
	var buf bytes.Buffer
	if err := beam.NewElementEncoder(reflect.TypeOf(in)).Encode(in, &buf); err != nil {
		t.Fatalf("encode %+v: %v", in, err)
	}
	out, err := beam.NewElementDecoder(reflect.TypeOf(in)).Decode(&buf)
	if err != nil {
		t.Fatalf("decode %+v: %v", in, err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("slotState after the state coder (-want +got):\n%s", diff)
	}
	// And a coalesced entry, as "pending", "open" and "ready" hold them.
	e := pendingEntry{N: 3, Batches: append(batches("r1", "c", 2, 2), batches("r2", "c", 1, 1)...)}
	buf.Reset()
	if err := beam.NewElementEncoder(reflect.TypeOf(e)).Encode(e, &buf); err != nil {
		t.Fatalf("encode %+v: %v", e, err)
	}
	got, err := beam.NewElementDecoder(reflect.TypeOf(e)).Decode(&buf)
	if err != nil {
		t.Fatalf("decode %+v: %v", e, err)
	}
	if diff := cmp.Diff(e, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("pendingEntry after the state coder (-want +got):\n%s", diff)
	}
}
