package pace

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) {
	log.LogLevel = "warn"
	ptest.Main(m)
}

func init() {
	register.DoFn1x0[recipient.Batch](&recordFn{})
}

// Release times are recorded by a DoFn downstream of Paced, in this process
// (Prism runs the SDK harness in-process), into a package-level map.
var (
	recMu    sync.Mutex
	recorded = map[string][]rec{}
)

// rec is one released batch and when the test saw it.
type rec struct {
	At       time.Time
	Campaign string
	Request  string
	Users    []string
}

type recordFn struct {
	Run string
}

func (fn *recordFn) ProcessElement(b recipient.Batch) {
	r := rec{At: time.Now(), Campaign: b.Request.Req.Campaign, Request: b.Request.Req.ID}
	for _, u := range b.Recipients {
		r.Users = append(r.Users, u.UserID)
	}
	recMu.Lock()
	recorded[fn.Run] = append(recorded[fn.Run], r)
	recMu.Unlock()
}

// scenario is one pipeline run: Paced over in, with cfg.
type scenario struct {
	name string
	cfg  Config
	in   []recipient.Batch
}

// result is what a run released, measured from the recorded release times.
type result struct {
	recs    []rec              // sorted by At
	rates   map[string]float64 // per campaign: recipients/s from its first to its last release
	count   map[string]int     // per campaign: recipients released
	lateMs  [3]int64           // pace_timer_late_ms: count, mean, max
	elapsed time.Duration      // whole run, for information
	window  map[string]int     // per campaign and "*": most recipients in any 1 s window
	before  func(time.Time) map[string]int
}

// run runs sc on Prism and measures it.
func run(t testing.TB, sc scenario) result {
	t.Helper()
	recMu.Lock()
	delete(recorded, sc.name)
	recMu.Unlock()

	p, s := beam.NewPipelineWithRoot()
	out := Paced(s, beam.CreateList(s, sc.in), sc.cfg)
	beam.ParDo0(s, &recordFn{Run: sc.name}, out)
	start := time.Now()
	pr, err := ptest.RunWithMetrics(p)
	if err != nil {
		t.Fatalf("%s: pipeline failed: %v", sc.name, err)
	}
	res := result{elapsed: time.Since(start)}
	for _, d := range pr.Metrics().AllMetrics().Distributions() {
		if d.Name() == "pace_timer_late_ms" {
			v := d.Result()
			res.lateMs[0] += v.Count
			res.lateMs[1] += v.Sum
			res.lateMs[2] = max(res.lateMs[2], v.Max)
		}
	}
	if res.lateMs[0] > 0 {
		res.lateMs[1] /= res.lateMs[0]
	}

	recMu.Lock()
	res.recs = slices.Clone(recorded[sc.name])
	recMu.Unlock()
	sort.SliceStable(res.recs, func(i, j int) bool { return res.recs[i].At.Before(res.recs[j].At) })

	slot := sc.cfg.Slot
	res.rates, res.count, res.window = map[string]float64{}, map[string]int{}, map[string]int{}
	// A campaign's releases come in firings one slot apart; group records
	// into firings (a gap of more than half a slot starts a new one). The
	// rate is measured from the second firing to the last: the first one
	// fires when the input arrives and may be late against the slot grid
	// that the later ones keep, which would shorten a short run's span.
	type firing struct {
		at time.Time
		n  int
	}
	firings := map[string][]firing{}
	for _, r := range res.recs {
		c := r.Campaign
		if len(r.Users) == 0 {
			continue // empty batches pass through unpaced
		}
		fs := firings[c]
		if len(fs) == 0 || r.At.Sub(fs[len(fs)-1].at) > slot/2 {
			fs = append(fs, firing{at: r.At})
		}
		fs[len(fs)-1].n += len(r.Users)
		firings[c] = fs
		res.count[c] += len(r.Users)
	}
	for c, fs := range firings {
		if len(fs) < 3 {
			continue
		}
		n := 0
		for _, f := range fs[2:] {
			n += f.n
		}
		res.rates[c] = float64(n) / fs[len(fs)-1].at.Sub(fs[1].at).Seconds()
	}
	// Most recipients released in any 1 s window ending at a release.
	for i, r := range res.recs {
		sum := map[string]int{}
		for j := i; j >= 0 && r.At.Sub(res.recs[j].At) < time.Second; j-- {
			sum[res.recs[j].Campaign] += len(res.recs[j].Users)
			sum["*"] += len(res.recs[j].Users)
		}
		for c, n := range sum {
			res.window[c] = max(res.window[c], n)
		}
	}
	res.before = func(t time.Time) map[string]int {
		m := map[string]int{}
		for _, r := range res.recs {
			if r.At.Before(t) {
				m[r.Campaign] += len(r.Users)
			}
		}
		return m
	}
	return res
}

// checkExactlyOnce checks every input recipient came out exactly once, with
// its request, and no recipient order changed within a request.
func checkExactlyOnce(t *testing.T, in []recipient.Batch, recs []rec) {
	t.Helper()
	want := map[string]int{}
	for _, b := range in {
		for _, u := range b.Recipients {
			want[b.Request.Req.ID+"/"+u.UserID]++
		}
	}
	got := map[string]int{}
	for _, r := range recs {
		for _, u := range r.Users {
			if !strings.HasPrefix(u, r.Request+"-") {
				t.Errorf("user %s released with request %s", u, r.Request)
			}
			got[r.Request+"/"+u]++
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recipients out (-want +got):\n%s", diff)
	}
}

// checkWindow checks no 1 s window released more than qps allows, with one
// slot of allowance for the budget released at a slot's start and one for
// delivery jitter between the pacer and the recorder.
func checkWindow(t *testing.T, res result, campaign string, qps int, slot time.Duration) {
	t.Helper()
	limit := float64(qps) * (1 + 2*slot.Seconds())
	if got := res.window[campaign]; float64(got) > limit {
		t.Errorf("campaign %q released %d in a 1 s window, limit %d/s allows %.0f", campaign, got, qps, limit)
	}
}

func within(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }

// scenarioSolo: one campaign with a 1000/s ceiling, for ≥ 2.5 s.
func scenarioSolo() scenario {
	return scenario{name: "solo", cfg: Config{Slot: 50 * time.Millisecond, GlobalQPS: 2000, CampaignQPS: map[string]int{"solo": 1000}},
		in: batches("solo1", "solo", 2600, 100)}
}

// scenarioThree: three campaigns of 300 sharing 2000/s.
func scenarioThree() scenario {
	var in []recipient.Batch
	for _, c := range []string{"a", "b", "c"} {
		in = append(in, batches(c+"1", c, 300, 30)...)
	}
	return scenario{name: "three", cfg: Config{Slot: 50 * time.Millisecond, GlobalQPS: 2000}, in: in}
}

// scenarioCapped: a campaign capped at 200/s leaves the rest of 2000/s to
// two uncapped ones.
func scenarioCapped() scenario {
	var in []recipient.Batch
	in = append(in, batches("a1", "a", 1500, 50)...)
	in = append(in, batches("b1", "b", 1500, 200)...)
	in = append(in, batches("slow1", "slow", 300, 300)...)
	return scenario{name: "capped", cfg: Config{Slot: 50 * time.Millisecond, GlobalQPS: 2000, CampaignQPS: map[string]int{"slow": 200}}, in: in}
}

// scenarioShards: 4 shards share 4000/s; three campaigns of 1000.
func scenarioShards() scenario {
	var in []recipient.Batch
	for _, c := range []string{"x", "y", "z"} {
		in = append(in, batches(c+"1", c, 1000, 25)...)
	}
	in = append(in, recipient.Batch{Request: in[0].Request, Seq: 999}) // empty: passes through
	return scenario{name: "shards", cfg: Config{Shards: 4, Slot: 50 * time.Millisecond, GlobalQPS: 4000}, in: in}
}

func logResult(t testing.TB, name string, res result) {
	t.Helper()
	var cs []string
	for c := range res.count {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, " %s: %d at %.1f/s (max %d in 1 s);", c, res.count[c], res.rates[c], res.window[c])
	}
	t.Logf("%s: run %v,%s all: max %d in 1 s; timer late ms: n=%d mean=%d max=%d",
		name, res.elapsed.Round(time.Millisecond), b.String(), res.window["*"], res.lateMs[0], res.lateMs[1], res.lateMs[2])
}

// TestPacedPipeline runs Paced on Prism over bounded input and measures the
// released rates from the release times recorded downstream.
func TestPacedPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test on Prism (≈ 10 s)")
	}
	t.Run("solo campaign at its ceiling", func(t *testing.T) {
		sc := scenarioSolo()
		res := run(t, sc)
		logResult(t, sc.name, res)
		checkExactlyOnce(t, sc.in, res.recs)
		if got := res.rates["solo"]; !within(got, 1000, 0.05) {
			t.Errorf("solo released at %.1f/s, want 1000/s ±5%%", got)
		}
		checkWindow(t, res, "solo", 1000, sc.cfg.Slot)
		for _, r := range res.recs {
			// 50 per slot; a late timer may release up to CatchUp more.
			if n := len(r.Users); n > 50*(1+DefaultCatchUpSlots) {
				t.Errorf("released a batch of %d > %d", n, 50*(1+DefaultCatchUpSlots))
			}
		}
	})
	t.Run("three campaigns share evenly", func(t *testing.T) {
		sc := scenarioThree()
		res := run(t, sc)
		logResult(t, sc.name, res)
		checkExactlyOnce(t, sc.in, res.recs)
		// While all three are active: up to the last firing (when they end
		// together, having equal demand).
		end := res.recs[len(res.recs)-1].At.Add(-sc.cfg.Slot / 2)
		shares := res.before(end)
		total := shares["a"] + shares["b"] + shares["c"]
		for _, c := range []string{"a", "b", "c"} {
			if !within(float64(shares[c]), float64(total)/3, 0.10) {
				t.Errorf("while all active, %s got %d of %d, want a third ±10%% (%v)", c, shares[c], total, shares)
			}
			if !within(res.rates[c], 2000.0/3, 0.10) {
				t.Errorf("%s released at %.1f/s, want 666.7/s ±10%%", c, res.rates[c])
			}
		}
		checkWindow(t, res, "*", 2000, sc.cfg.Slot)
	})
	t.Run("capped campaign leaves its share to the others", func(t *testing.T) {
		sc := scenarioCapped()
		res := run(t, sc)
		logResult(t, sc.name, res)
		checkExactlyOnce(t, sc.in, res.recs)
		if got := res.rates["slow"]; !within(got, 200, 0.10) {
			t.Errorf("slow released at %.1f/s, want its ceiling 200/s ±10%%", got)
		}
		// While slow is active a and b get (2000-200)/2 = 900/s each.
		var first, slowEnd time.Time
		for _, r := range res.recs {
			if first.IsZero() {
				first = r.At
			}
			if r.Campaign == "slow" {
				slowEnd = r.At
			}
		}
		m := res.before(slowEnd.Add(-sc.cfg.Slot / 2))
		d := slowEnd.Add(-sc.cfg.Slot).Sub(first).Seconds() // firings 0 .. k-1 span k-1 slots; count holds k
		for _, c := range []string{"a", "b"} {
			if rate := float64(m[c]-45) / d; !within(rate, 900, 0.10) {
				t.Errorf("%s released at %.1f/s while slow was active, want 900/s ±10%% (%d in %.2fs)", c, rate, m[c], d)
			}
		}
		checkWindow(t, res, "slow", 200, sc.cfg.Slot)
		checkWindow(t, res, "*", 2000, sc.cfg.Slot)
	})
	t.Run("reports its backlog to Redis", func(t *testing.T) {
		// Shards 1 reports as shard 0; the last firing deletes the report.
		// 50 per slot: the first firing's refill fills the ready queue with
		// 1050 (21 slots) of the 1600 and leaves 550 in the inbox. The
		// firings after it do not refill (for ~18 slots), so they report
		// more than the ready queue holds (≤ 1000) only if the inbox's
		// per-campaign counts (slotState.WaitingBy) came back through the
		// runner's state coder. About 1.6 s.
		addr := redistest.Start(t)
		const lane = "pipeline"
		rep := newReports(t, addr, lane)
		var in []recipient.Batch
		in = append(in, batches("x1", "x", 800, 40)...)
		in = append(in, batches("y1", "y", 800, 40)...)
		sc := scenario{name: "report", cfg: Config{Slot: 50 * time.Millisecond, GlobalQPS: 1000, RedisAddr: addr, Lane: lane}, in: in}

		ctx, cancel := context.WithCancel(context.Background())
		seen := map[string]bool{} // report keys
		var both int              // reports holding both campaigns
		over := map[int64]bool{}  // totals reported above the ready queue's 1000
		var bad []map[string]int64
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			for ctx.Err() == nil {
				keys, _ := rep.c.Keys(ctx, "pf:pace:"+lane+":*").Result()
				for _, k := range keys {
					seen[k] = true
				}
				if m, err := rep.c.HGetAll(ctx, rep.key(0)).Result(); err == nil && len(m) > 0 {
					got := map[string]int64{}
					for f, v := range m {
						if c, ok := strings.CutPrefix(f, "c:"); ok {
							got[c], _ = strconv.ParseInt(v, 10, 64)
						}
					}
					if got["x"] > 0 && got["y"] > 0 {
						both++
					}
					if n := got["x"] + got["y"]; n > 1000 {
						over[n] = true
					}
					if got["x"] < 0 || got["x"] > 800 || got["y"] < 0 || got["y"] > 800 || len(got) > 2 {
						bad = append(bad, got)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		res := run(t, sc)
		cancel()
		<-polled
		logResult(t, sc.name, res)
		checkExactlyOnce(t, sc.in, res.recs)
		if diff := cmp.Diff(map[string]bool{rep.key(0): true}, seen); diff != "" {
			t.Errorf("report keys seen during the run (-want +got):\n%s", diff)
		}
		if both == 0 {
			t.Errorf("no report held both campaigns' backlog during the run")
		}
		// The refill's own firing and at least two after it.
		if len(over) < 3 {
			t.Errorf("totals reported above 1000 (what the ready queue holds): %v, want at least 3: the inbox's counts (slotState.WaitingBy) are lost between firings", over)
		}
		t.Logf("totals reported above 1000: %v", over)
		if len(bad) > 0 {
			t.Errorf("reports outside the input's per-campaign counts: %v", bad)
		}
		if got := rep.hash(0); got != nil {
			t.Errorf("report after the run = %v, want none (the last firing deletes it)", got)
		}
	})
	t.Run("four shards divide the global rate", func(t *testing.T) {
		sc := scenarioShards()
		res := run(t, sc)
		logResult(t, sc.name, res)
		checkExactlyOnce(t, sc.in, res.recs)
		all := 0.0
		for _, c := range []string{"x", "y", "z"} {
			all += res.rates[c]
		}
		// Each campaign's 40 batches go round-robin, 10 per shard; each
		// shard releases 1000/s (50 per slot), shared by the 3 campaigns.
		if !within(all, 4000, 0.10) {
			t.Errorf("4 shards released %.1f/s together, want 4000/s ±10%%", all)
		}
		checkWindow(t, res, "*", 4000, sc.cfg.Slot)
	})
}

// TestPacedPipelineTinyRequests runs Paced on Prism over thousands of
// one-user requests, which the pacer coalesces in its inbox: each must
// still come out once, as its own element, at the paced rate.
func TestPacedPipelineTinyRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test on Prism (≈ 3 s)")
	}
	// 3000 one-user requests, with a 500-recipient audience of each
	// campaign in their middle (large batches, which move their campaign's
	// open batches to "pending"); 2000/s in 50 ms slots: 100 per slot, 50
	// per campaign. Prism takes about a second to feed them through the
	// pacer's state, so its first firing is late and catches up CatchUp
	// (as designed): the rate is measured from the second firing, and no
	// 1 s window is checked.
	in := tinyRequests([]string{"p", "q"}, 0, 1500)
	in = append(in, batches("p-aud", "p", 500, 250)...)
	in = append(in, batches("q-aud", "q", 500, 250)...)
	in = append(in, tinyRequests([]string{"p", "q"}, 1500, 1500)...)
	sc := scenario{name: "tiny", cfg: Config{Slot: 50 * time.Millisecond, GlobalQPS: 2000}, in: in}
	res := run(t, sc)
	logResult(t, sc.name, res)
	checkExactlyOnce(t, sc.in, res.recs)
	if len(res.recs) < len(sc.in) {
		t.Errorf("released %d elements, want at least %d: one per request, or piece of an audience's batch", len(res.recs), len(sc.in))
	}
	if all := res.rates["p"] + res.rates["q"]; !within(all, 2000, 0.10) {
		t.Errorf("released at %.1f/s together, want 2000/s ±10%%", all)
	}
	for _, c := range []string{"p", "q"} {
		if !within(res.rates[c], 1000, 0.10) {
			t.Errorf("%s released at %.1f/s, want 1000/s ±10%%", c, res.rates[c])
		}
	}
}

// BenchmarkPacedAccuracy runs the timing scenarios on Prism and reports the
// measured rates and their error against the configured rate, for
// BENCHMARKS.md:
//
//	go test -run '^$' -bench PacedAccuracy -benchtime 1x ./transforms/pace/
func BenchmarkPacedAccuracy(b *testing.B) {
	for range b.N {
		solo := run(b, scenarioSolo())
		logResult(b, "solo", solo)
		b.ReportMetric(solo.rates["solo"], "solo_qps")
		b.ReportMetric(100*(solo.rates["solo"]-1000)/1000, "solo_err_%")
		b.ReportMetric(float64(solo.lateMs[2]), "solo_timer_late_max_ms")

		three := run(b, scenarioThree())
		logResult(b, "three", three)
		worst := 0.0
		for _, c := range []string{"a", "b", "c"} {
			worst = max(worst, math.Abs(three.rates[c]-2000.0/3)/(2000.0/3))
		}
		b.ReportMetric(100*worst, "three_worst_share_err_%")

		sh := run(b, scenarioShards())
		logResult(b, "shards", sh)
		all := sh.rates["x"] + sh.rates["y"] + sh.rates["z"]
		b.ReportMetric(all, "4shards_qps")
		b.ReportMetric(100*(all-4000)/4000, "4shards_err_%")
	}
}
