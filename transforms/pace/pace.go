// Package pace releases batches of recipients no faster than configured
// rates, sharing the send budget evenly among the campaigns that are active
// at the same time. It is the "pace" stage of dispatch's normal and bulk
// lanes (realtime traffic is not paced) and of the campaign pipeline.
//
// # Model
//
// Time is cut into slots (Config.Slot, 100 ms by default). In every slot a
// key may release at most its share of Config.GlobalQPS, and each campaign at
// most its share of its own ceiling (Config.CampaignQPS or
// Config.DefaultCampaignQPS). Within those limits the slot's budget is split
// by Allocate: evenly among the campaigns with pending recipients, and what
// one campaign cannot use goes to the others. Batches are split (Batch.With)
// when only part of one fits in a slot; a batch's recipients keep their
// order and their request.
//
// # Keys, workers and the global rate
//
// Pacing state lives in Beam keyed state, so it scales out and survives
// restarts on Flink and Dataflow like any stateful DoFn. Paced keys every
// batch by shard, (fnv32a(request id) + batch seq) mod Config.Shards: the
// batches of one request go round-robin over all shards, so every shard sees
// every large campaign, and per-shard even shares add up to global even
// shares. Each shard (key) gets an equal part of every rate: GlobalQPS/Shards
// and CampaignQPS/Shards per second, kept exactly over time even when that is
// not a whole number per slot (see rate). A runner spreads the keys over its
// workers; how many workers there are does not change the rates — Shards
// does. The consequence of dividing the budget statically: a shard with no
// pending work does not lend its part to the others, so choose Shards no
// larger than the parallelism you need, and small compared with the number of
// pending batches of a typical campaign (a campaign of 10 batches over 16
// shards leaves 6 shards' part of its ceiling unused).
//
// # Timers and state
//
// One processing-time timer family per key (Prism hangs on a DoFn with two
// families). A key with no timer set that receives a batch sets the timer at
// the next slot boundary (or now, when it has been idle for a whole slot);
// each firing releases the budget of the slots since the last firing — at
// most Config.CatchUp of missed time, so a late timer, a GC pause or a
// restore from a checkpoint releases at most that much extra at once — and
// sets the timer for the next slot boundary while anything is pending. Slots
// are counted from the start of the key's active period, not from the
// previous firing, so a timer that fires late does not slow the long-run
// rate down.
//
// Pending work lives in runner state — on Flink the state backend
// (configure RocksDB: Flink's default HashMap backend keeps state on the
// TaskManager heap), on Dataflow Streaming Engine — not the SDK worker's
// heap, in two tiers:
//
//   - the inbox, two BagStates that ProcessElement appends to. A batch of
//     at least 100 recipients (coalesceBelow) is an entry of "pending" by
//     itself. A smaller one (a one-user request, the last batch of an
//     audience) goes to "open"; when "open" holds 4,000 recipients
//     (openLimitTimes × coalesceTarget), or a large batch arrives for a
//     campaign with batches in "open" (which keeps the campaign's batches
//     in arrival order), the key reads "open", coalesces its batches — per
//     campaign, in arrival order — into entries of up to 500 recipients
//     (coalesceTarget), appends those to "pending" and clears "open". A
//     small batch is so written to "open", read back and written to
//     "pending" once: O(1) per batch amortized, and the element that moves
//     "open" reads at most 4,000 batches. A backlog of 200,000 one-user
//     requests is about 400 entries of "pending", not 200,000.
//   - the ready queue, a ValueState ("ready") holding a few seconds of the
//     key's budget (about 20 slots of it; 50,000 recipients when there is
//     no global limit), from which every firing releases.
//
// An entry (pendingEntry) is one batch, or small batches of one campaign
// in arrival order. Releasing part of an entry emits its whole batches
// while they fit and splits the batch where the allocation ends
// (Batch.With), so the output is still one element per batch, or piece of
// a batch, of one request.
//
// Each firing reads, allocates over and rewrites only the ready queue: O(a
// few seconds of budget) per slot, however large the backlog (in bytes: about
// 20 slots' worth of recipients, each with its request when requests are
// one-user ones). The Go SDK (v2.77.0) reads a bag whole
// (OrderedList.ReadRange filters client side too, and MapState is not
// supported by every portable runner), and sends every bag append as a state
// request of its own, so the inbox is read only on a refill: when the ready
// queue would fall below about 2 slots of budget (10,000 recipients without a
// global limit), when a campaign would empty its part of it while the inbox
// is not empty, or — when batches arrived since the last refill — once at
// least RefillEvery (10 slots, 1 s at the default Slot) has passed since it.
// A refill merges the inbox (both bags, coalescing what is in "open" as
// above) with the ready queue, moves into the ready queue an even selection
// across campaigns (Allocate over the refill target, each campaign's batches
// in arrival order, splitting an entry, and a batch, where its share ends),
// and rewrites "pending" with the rest: O(backlog per key) to decode and
// encode, and one state request per entry written — per large batch or per
// ~500 recipients of small ones, rather than one per batch — once every ~18
// slots at full rate, and at most once per RefillEvery while new work keeps
// arriving (reading only the bags that hold something). Since a refill
// selects evenly, one huge campaign cannot fill the ready queue and starve a
// later one: a campaign that arrives while another has a huge backlog is
// admitted to the ready queue with an even share within RefillEvery (+ one
// slot) of its arrival, and gets its even share of every slot from then on.
// Without a global limit a firing releases at most the ready queue (50,000
// recipients per key per slot). The backlog per key should stay reasonable
// all the same — a refill still decodes and rewrites it. With backpressure on
// (see below; dispatch turns it on whenever the lane is paced) the expansion
// keeps each campaign's backlog near its limit instead of parking a
// 10M-recipient audience here; without it, use more Shards, larger batches,
// or pace the producer (the campaign pipeline). The slot counter, timer flag,
// the inbox's counts and refill bookkeeping live in a ValueState ("pos").
//
// Output elements are in the global window, timestamped with the processing
// time of the firing that released them (the timer's default output
// timestamp), which holds the output watermark while work is pending.
//
// # Backpressure
//
// With Config.RedisAddr set, every firing ends by reporting what its key
// (shard) still holds: the recipients pending per campaign, in the ready
// queue and the inbox together, as the Redis hash pf:pace:<Lane>:<shard>
// (redisio.Registry.ReportBacklogAt; one round trip per firing); the inbox
// counts whole, "open" included. The report also carries the newest
// Batch.Emitted the key has received, so the expansion (and dispatch's
// requests reader) can tell whether what it emitted last is already counted
// or still in transit. A key that has nothing left reports an empty
// map, which deletes the hash. Reports expire after ReportTTL (30 s), and a
// key refreshes its report every slot while anything is pending, so the
// report of a shard that stopped firing (a stopped pipeline, or a shard
// dropped by lowering Shards) soon stops counting. Counts are absolute — each
// report replaces the shard's previous one — not credits added and taken
// back, so a retried firing or bundle cannot make them drift. A failed report
// does not fail the firing (that would replay its releases): it is logged (at
// most once per 10 s per worker) and counted in pushflow/pace_report_errors,
// and the previous report stays until it is replaced or expires.
//
// The expansion of large audiences (broadcast, tags, files) reads its
// campaign's sum over the lane's shards (redisio.Registry.Backlog) and
// pauses reading while it is over its limit, so pacing state holds about
// that limit per campaign rather than the whole audience. Reports lag
// releases not at all (a firing reports after releasing) and arrivals by
// at most a slot (the next firing counts them), so the backlog overshoots
// the limit by about what the expansion emits in a slot and between its
// reads of the sum.
package pace

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn2x0[recipient.Batch, func(int, recipient.Batch)](&shardFn{})
	register.DoFn5x1[state.Provider, timers.Provider, int, recipient.Batch, func(recipient.Batch), error](&paceFn{})
	register.Emitter1[recipient.Batch]()
	register.Emitter2[int, recipient.Batch]()
	beam.RegisterType(reflect.TypeOf((*pendingEntry)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*slotState)(nil)).Elem())
}

// DefaultSlot is Config.Slot when it is zero.
const DefaultSlot = 100 * time.Millisecond

// DefaultCatchUpSlots is Config.CatchUp, in slots, when it is zero.
const DefaultCatchUpSlots = 5

// DefaultLane is Config.Lane when it is empty.
const DefaultLane = "paced"

// ReportTTL is how long a backlog report lives in Redis unless the key's
// next firing replaces it (see the package doc's Backpressure section).
const ReportTTL = 30 * time.Second

// Config configures Paced. Rates are recipients per second; 0 means no limit.
type Config struct {
	// Shards is the number of keys the pacing state is spread over; each
	// key is paced on its own with 1/Shards of every rate (GlobalQPS/Shards
	// and CampaignQPS/Shards). Default 1. Set it to about the parallelism
	// the runner should use for pacing; see the package doc.
	Shards int
	// Slot is the allocation period. Default DefaultSlot (100 ms). Shorter
	// slots release in smaller steps at a higher timer and state cost.
	Slot time.Duration
	// GlobalQPS is the lane's total send budget, e.g. the provider
	// capacity: all campaigns together. 0 = no global limit.
	GlobalQPS int
	// CampaignQPS is the ceiling of named campaigns (PushRequest.Campaign;
	// requests without a campaign are the campaign ""). 0 = no ceiling.
	CampaignQPS map[string]int
	// DefaultCampaignQPS is the ceiling of campaigns not in CampaignQPS.
	// 0 = no ceiling.
	DefaultCampaignQPS int
	// CatchUp is how much missed time a late timer may make up for at once.
	// Default DefaultCatchUpSlots slots. Larger values keep the long-run
	// rate on a runner whose timers fire late, at the cost of a larger
	// burst after a stall.
	CatchUp time.Duration
	// RedisAddr is the Redis (host:port) every firing reports its key's
	// backlog to, for the expansion's backpressure; see the package doc.
	// "" = no reports.
	RedisAddr string
	// Lane names the paced lane in the report keys (pf:pace:<Lane>:<shard>);
	// the expansion reads the same lane. Default DefaultLane ("paced").
	Lane string
	// Clock returns the processing time. It is for unit tests that drive the
	// DoFn directly; runners fire timers on their own clock (and do not ship
	// functions to workers), so Paced rejects a non-nil Clock. Default
	// time.Now.
	Clock func() time.Time
}

// withDefaults returns cfg with defaults applied, or panics with prefix on an
// invalid value.
func (cfg Config) withDefaults(prefix string) Config {
	if cfg.Shards < 0 {
		panic(fmt.Sprintf("%s: Shards must be >= 0, got %d", prefix, cfg.Shards))
	}
	if cfg.Shards == 0 {
		cfg.Shards = 1
	}
	if cfg.Slot < 0 || (cfg.Slot > 0 && cfg.Slot < time.Millisecond) {
		panic(fmt.Sprintf("%s: Slot must be 0 (default) or >= 1ms (timers have millisecond resolution), got %v", prefix, cfg.Slot))
	}
	if cfg.Slot == 0 {
		cfg.Slot = DefaultSlot
	}
	if cfg.GlobalQPS < 0 || cfg.DefaultCampaignQPS < 0 {
		panic(fmt.Sprintf("%s: GlobalQPS and DefaultCampaignQPS must be >= 0, got %d and %d", prefix, cfg.GlobalQPS, cfg.DefaultCampaignQPS))
	}
	for c, q := range cfg.CampaignQPS {
		if q < 0 {
			panic(fmt.Sprintf("%s: CampaignQPS[%q] must be >= 0, got %d", prefix, c, q))
		}
	}
	if cfg.CatchUp < 0 {
		panic(fmt.Sprintf("%s: CatchUp must be >= 0, got %v", prefix, cfg.CatchUp))
	}
	if cfg.CatchUp == 0 {
		cfg.CatchUp = DefaultCatchUpSlots * cfg.Slot
	}
	if cfg.Lane == "" {
		cfg.Lane = DefaultLane
	}
	return cfg
}

// Paced releases PCollection<recipient.Batch> as PCollection<recipient.Batch>
// no faster than cfg's rates, splitting batches where a slot's allocation
// ends inside one. Every recipient comes out exactly once, in the global
// window. Apply it to one lane (normal or bulk); realtime must not be paced.
func Paced(s beam.Scope, batches beam.PCollection, cfg Config) beam.PCollection {
	s = s.Scope("pace.Paced")
	if cfg.Clock != nil {
		panic("pace.Paced: Clock is for DoFn unit tests; a pipeline paces on the runner's processing-time clock")
	}
	cfg = cfg.withDefaults("pace.Paced")
	global := beam.WindowInto(s, window.NewGlobalWindows(), batches)
	keyed := beam.ParDo(s, &shardFn{Shards: cfg.Shards}, global)
	return beam.ParDo(s, newFn(cfg), keyed)
}

// Shard returns the key Paced gives b among shards keys:
// (fnv32a(request id) + seq) mod shards. Consecutive batches of a request go
// to consecutive shards, deterministically (a replay keys the same way).
func Shard(b recipient.Batch, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(b.Request.Req.ID))
	return int((uint64(h.Sum32()) + uint64(b.Seq)) % uint64(shards))
}

type shardFn struct {
	Shards int
}

func (fn *shardFn) ProcessElement(b recipient.Batch, emit func(int, recipient.Batch)) {
	emit(Shard(b, fn.Shards), b)
}

var (
	releasedCount = beam.NewCounter("pushflow", "pace_released")
	slotUsed      = beam.NewDistribution("pushflow", "pace_slot_used")     // recipients released per key per firing
	backlogDist   = beam.NewDistribution("pushflow", "pace_backlog")       // recipients pending per key after a firing
	timerLateMs   = beam.NewDistribution("pushflow", "pace_timer_late_ms") // firing time − slot boundary
	reportErrors  = beam.NewCounter("pushflow", "pace_report_errors")      // backlog reports that failed
)

// pendingEntry is work waiting in a key's inbox or ready queue: one batch,
// or small batches of one campaign coalesced, in arrival order, with the
// arrival number of the first: bag order is not guaranteed by every
// runner, so release order is by N. The pieces of a split entry keep its
// N. An entry in "open" holds one batch.
//
// A campaign's entries never interleave: the batches of one have arrival
// numbers between those of the entries before and after it (a large batch
// moves its campaign's open batches to "pending" before it is added), so
// ordering entries by N keeps every campaign's batches in arrival order.
type pendingEntry struct {
	N       int64
	Batches []recipient.Batch // one campaign's, none empty
}

func (e pendingEntry) campaign() string { return e.Batches[0].Request.Req.Campaign }

// size is the number of recipients of e.
func (e pendingEntry) size() int {
	n := 0
	for _, b := range e.Batches {
		n += len(b.Recipients)
	}
	return n
}

// split returns e's first k recipients (0 < k < e.size()) and the rest, in
// order, both with e's N: whole batches while they fit, and the batch at
// the boundary cut in two (Batch.With).
func (e pendingEntry) split(k int) (head, tail pendingEntry) {
	head.N, tail.N = e.N, e.N
	for i, b := range e.Batches {
		rs := b.Recipients
		if k >= len(rs) {
			head.Batches = append(head.Batches, b)
			k -= len(rs)
			continue
		}
		if k > 0 {
			head.Batches = append(head.Batches, b.With(rs[:k:k]))
			tail.Batches = append(make([]recipient.Batch, 0, len(e.Batches)-i), b.With(rs[k:]))
			tail.Batches = append(tail.Batches, e.Batches[i+1:]...)
		} else {
			tail.Batches = slices.Clone(e.Batches[i:])
		}
		return head, tail
	}
	return head, tail
}

func byN(a, b pendingEntry) int { return cmp.Compare(a.N, b.N) }

// slotState is a key's pacing position.
type slotState struct {
	Epoch   int64 // unix ns of the start of slot 0 of the key's active period
	Last    int64 // the last slot whose budget was released; -1 before any
	TimerAt int64 // unix ns the timer is set for; 0 when no timer is set
	NextN   int64 // arrival counter for pendingEntry.N

	Inbox     int64            // batches added to the inbox since the last refill
	Waiting   int64            // recipients in the inbox ("pending" and "open")
	WaitingBy map[string]int64 // recipients in the inbox per campaign; no zero entries
	Refilled  int64            // unix ns of the last refill; 0 before any
	Open      int64            // recipients in "open" (part of Waiting)
	OpenBy    map[string]int64 // recipients in "open" per campaign; no zero entries
	Newest    int64            // the newest Batch.Emitted received (unix ns), reported for backpressure
}

// Refill policy, in slots of the key's global budget (see the package doc).
const (
	refillLowSlots    = 2     // refill when the ready queue would fall below this
	refillTargetSlots = 20    // a refill fills the ready queue up to this (+ the firing's budget)
	refillEverySlots  = 10    // RefillEvery: admit new arrivals at least this often
	refillLowUnlim    = 10000 // refillLow without a global limit, in recipients
	refillTargetUnlim = 50000 // refillTarget without a global limit, in recipients
)

// Coalescing of small batches in the inbox (see the package doc).
const (
	coalesceBelow  = 100 // batches with fewer recipients go to "open"
	coalesceTarget = 500 // recipients per coalesced entry, at most
	openLimitTimes = 8   // "open" moves to "pending" at openLimitTimes × coalesceTarget recipients
)

// paceFn is the stateful pacer over KV<shard int, recipient.Batch>.
type paceFn struct {
	Slot               time.Duration
	CatchUpSlots       int64
	Shards             int
	GlobalQPS          int
	CampaignQPS        map[string]int
	DefaultCampaignQPS int
	RedisAddr          string
	Lane               string
	// CoalesceBelow and CoalesceTarget are coalesceBelow and
	// coalesceTarget; tests change them (CoalesceBelow 0: no coalescing).
	CoalesceBelow  int
	CoalesceTarget int

	Pending state.Bag[pendingEntry]     // inbox: entries, appended to by ProcessElement
	Open    state.Bag[pendingEntry]     // inbox: small batches, one per entry, not yet coalesced
	Ready   state.Value[[]pendingEntry] // released from by OnTimer, by N
	Pos     state.Value[slotState]
	Tick    timers.ProcessingTime

	now       func() time.Time
	global    rate
	hasGlobal bool
	campaign  map[string]rate // campaigns with a ceiling
	def       rate
	hasDef    bool
	reg       *redisio.Registry // nil without RedisAddr
}

func newFn(cfg Config) *paceFn {
	return &paceFn{
		Slot:               cfg.Slot,
		CatchUpSlots:       max(int64(cfg.CatchUp/cfg.Slot), 0),
		Shards:             cfg.Shards,
		GlobalQPS:          cfg.GlobalQPS,
		CampaignQPS:        cfg.CampaignQPS,
		DefaultCampaignQPS: cfg.DefaultCampaignQPS,
		RedisAddr:          cfg.RedisAddr,
		Lane:               cfg.Lane,
		CoalesceBelow:      coalesceBelow,
		CoalesceTarget:     coalesceTarget,
		Pending:            state.MakeBagState[pendingEntry]("pending"),
		Open:               state.MakeBagState[pendingEntry]("open"),
		Ready:              state.MakeValueState[[]pendingEntry]("ready"),
		Pos:                state.MakeValueState[slotState]("pos"),
		Tick:               timers.InProcessingTime("slot"),
		now:                cfg.Clock,
	}
}

func (fn *paceFn) Setup() {
	if fn.now == nil {
		fn.now = time.Now
	}
	fn.global, fn.hasGlobal = newRate(fn.GlobalQPS, fn.Slot, fn.Shards)
	fn.def, fn.hasDef = newRate(fn.DefaultCampaignQPS, fn.Slot, fn.Shards)
	fn.campaign = map[string]rate{}
	for c, q := range fn.CampaignQPS {
		if r, ok := newRate(q, fn.Slot, fn.Shards); ok {
			fn.campaign[c] = r
		}
	}
	if fn.RedisAddr != "" {
		fn.reg = redisio.Open(fn.RedisAddr)
	}
}

func (fn *paceFn) Teardown() {
	fn.reg.Close()
}

// campaignRate is c's per-shard ceiling, or ok=false when it has none.
func (fn *paceFn) campaignRate(c string) (rate, bool) {
	if q, named := fn.CampaignQPS[c]; named {
		r, ok := fn.campaign[c]
		return r, ok && q > 0
	}
	return fn.def, fn.hasDef
}

func (fn *paceFn) ProcessElement(sp state.Provider, tp timers.Provider, _ int, b recipient.Batch, emit func(recipient.Batch)) error {
	if len(b.Recipients) == 0 {
		emit(b) // nothing to pace
		return nil
	}
	pos, ok, err := fn.Pos.Read(sp)
	if err != nil {
		return fmt.Errorf("pace: read position: %w", err)
	}
	if !ok {
		pos = slotState{Last: -1}
	}
	it := pendingEntry{N: pos.NextN, Batches: []recipient.Batch{b}}
	c, n := b.Request.Req.Campaign, int64(len(b.Recipients))
	small := len(b.Recipients) < fn.CoalesceBelow && fn.CoalesceTarget > 0
	switch {
	case small && pos.Open+n >= int64(openLimitTimes*fn.CoalesceTarget):
		err = fn.flush(sp, &pos, it) // b with the open batches
	case small:
		if err = fn.Open.Add(sp, it); err == nil {
			pos.Open += n
			if pos.OpenBy == nil {
				pos.OpenBy = map[string]int64{}
			}
			pos.OpenBy[c] += n
		}
	default:
		if pos.OpenBy[c] > 0 {
			// The campaign's open batches arrived before b.
			err = fn.flush(sp, &pos)
		}
		if err == nil {
			err = fn.Pending.Add(sp, it)
		}
	}
	if err != nil {
		return fmt.Errorf("pace: add %s/%d: %w", b.Request.Req.ID, b.Seq, err)
	}
	pos.NextN++
	pos.Inbox++
	pos.Waiting += n
	pos.Newest = max(pos.Newest, b.Emitted)
	if pos.WaitingBy == nil {
		pos.WaitingBy = map[string]int64{}
	}
	pos.WaitingBy[c] += n
	if pos.TimerAt == 0 {
		now := fn.now().Truncate(time.Millisecond).UnixNano()
		next := pos.Epoch + (pos.Last+1)*int64(fn.Slot) // start of the first slot not released yet
		if pos.Last < 0 || now >= next {
			// Idle for at least a slot: start a new active period now, so
			// an idle key does not save up budget for a burst.
			pos.Epoch, pos.Last, next = now, -1, now
		}
		fn.Tick.Set(tp, time.Unix(0, next))
		pos.TimerAt = next
	}
	if err := fn.Pos.Write(sp, pos); err != nil {
		return fmt.Errorf("pace: write position: %w", err)
	}
	return nil
}

func (fn *paceFn) OnTimer(ctx context.Context, sp state.Provider, tp timers.Provider, shard int, timer timers.Context, emit func(recipient.Batch)) error {
	if timer.Family != fn.Tick.Family {
		return nil
	}
	pos, ok, err := fn.Pos.Read(sp)
	if err != nil {
		return fmt.Errorf("pace: read position: %w", err)
	}
	if !ok {
		return nil // nothing was ever pending for this key
	}
	ready, _, err := fn.Ready.Read(sp)
	if err != nil {
		return fmt.Errorf("pace: read ready: %w", err)
	}
	now := fn.now().UnixNano()
	if pos.TimerAt != 0 {
		timerLateMs.Update(ctx, (now-pos.TimerAt)/int64(time.Millisecond))
	}
	cur := floorDiv(now-pos.Epoch, int64(fn.Slot))
	if cur <= pos.Last {
		// The runner fired the timer a little before our clock reached
		// the boundary (millisecond timers, or clock skew between the
		// runner and the SDK harness): this firing is the next slot.
		cur = pos.Last + 1
	}
	last := max(pos.Last, cur-1-fn.CatchUpSlots)

	budget := unlimited
	low, target := refillLowUnlim, refillTargetUnlim
	if fn.hasGlobal {
		budget = fn.global.between(last, cur)
		low = fn.global.between(cur, cur+refillLowSlots)
		target = budget + fn.global.between(cur, cur+refillTargetSlots)
	}
	demand, alloc := fn.allocate(ready, budget, last, cur)
	refilled := false
	if pos.Waiting > 0 && fn.needRefill(pos, demand, alloc, low, now) {
		refilled = true
		if ready, err = fn.refill(sp, &pos, ready, target, cur, now); err != nil {
			return err
		}
		_, alloc = fn.allocate(ready, budget, last, cur)
	}

	released, backlog := 0, 0
	keep := ready[:0]
	for _, it := range ready {
		c, n := it.campaign(), it.size()
		take := min(alloc[c], n)
		alloc[c] -= take
		released += take
		switch take {
		case n:
			for _, b := range it.Batches {
				emit(b)
			}
		case 0:
			keep = append(keep, it)
			backlog += n
		default:
			head, tail := it.split(take)
			for _, b := range head.Batches {
				emit(b)
			}
			keep = append(keep, tail)
			backlog += n - take
		}
	}
	if released > 0 || refilled {
		if len(keep) == 0 {
			err = fn.Ready.Clear(sp)
		} else {
			err = fn.Ready.Write(sp, keep)
		}
		if err != nil {
			return fmt.Errorf("pace: write ready: %w", err)
		}
	}
	backlog += int(pos.Waiting)
	releasedCount.Inc(ctx, int64(released))
	slotUsed.Update(ctx, int64(released))
	backlogDist.Update(ctx, int64(backlog))

	pos.Last = cur
	pos.TimerAt = 0
	if len(keep) > 0 || pos.Waiting > 0 {
		pos.TimerAt = pos.Epoch + (cur+1)*int64(fn.Slot)
		fn.Tick.Set(tp, time.Unix(0, pos.TimerAt))
	}
	if err := fn.Pos.Write(sp, pos); err != nil {
		return fmt.Errorf("pace: write position: %w", err)
	}
	if fn.reg != nil {
		fn.report(ctx, shard, pendingBy(keep, pos.WaitingBy), pos.Newest)
	}
	return nil
}

// pendingBy returns the recipients pending per campaign: those of ready
// plus waiting (the inbox's). Campaigns with none are left out.
func pendingBy(ready []pendingEntry, waiting map[string]int64) map[string]int64 {
	m := make(map[string]int64, len(waiting))
	for c, n := range waiting {
		if n > 0 {
			m[c] = n
		}
	}
	for _, it := range ready {
		if n := it.size(); n > 0 {
			m[it.campaign()] += int64(n)
		}
	}
	return m
}

// reportLogEvery is the least time between two logged report errors of a
// worker; reportLogged is the unix ns of the last one.
const reportLogEvery = 10 * time.Second

var reportLogged atomic.Int64

// report publishes pending as shard's backlog. Reports are advisory: an
// error is counted and logged, never returned, since failing the firing
// would replay its releases. Connecting is bounded by about a slot (10 ms
// … 1 s), so an unreachable Redis delays firings by less than CatchUp makes
// up for and does not slow the lane down. (A Redis that accepts
// connections but does not answer is bounded only by the client's read
// timeout: the go-redis client of redisio.Open ignores context deadlines
// on socket reads.)
func (fn *paceFn) report(ctx context.Context, shard int, pending map[string]int64, newest int64) {
	rctx, cancel := context.WithTimeout(ctx, min(max(fn.Slot, 10*time.Millisecond), time.Second))
	defer cancel()
	err := fn.reg.ReportBacklogAt(rctx, fn.Lane, shard, pending, newest, ReportTTL)
	if err == nil {
		return
	}
	reportErrors.Inc(ctx, 1)
	now := time.Now().UnixNano()
	if last := reportLogged.Load(); now-last >= int64(reportLogEvery) && reportLogged.CompareAndSwap(last, now) {
		slog.WarnContext(ctx, "pace: backlog report failed; the expansion's backpressure sees the previous report until it expires (logged at most every 10s)",
			"redis", fn.RedisAddr, "lane", fn.Lane, "shard", shard, "ttl", ReportTTL, "err", err)
	}
}

// allocate returns the demand per campaign of items and the allocation of
// the slots (last, cur] among them.
func (fn *paceFn) allocate(items []pendingEntry, budget int, last, cur int64) (demand, alloc map[string]int) {
	demand = map[string]int{}
	for _, it := range items {
		demand[it.campaign()] += it.size()
	}
	ceiling := map[string]int{}
	for c := range demand {
		if r, ok := fn.campaignRate(c); ok {
			ceiling[c] = r.between(last, cur)
		}
	}
	return demand, Allocate(budget, demand, ceiling, int(cur))
}

// needRefill reports whether a firing with a non-empty inbox must refill
// the ready queue before releasing: the ready queue would fall below low,
// a campaign would empty its part of it (the inbox may hold more of it), or
// batches arrived since a refill at least RefillEvery ago.
func (fn *paceFn) needRefill(pos slotState, demand, alloc map[string]int, low int, now int64) bool {
	left := 0
	for c, d := range demand {
		if alloc[c] >= d {
			return true
		}
		left += d - alloc[c]
	}
	if left < low {
		return true
	}
	return pos.Inbox > 0 && now-pos.Refilled >= refillEverySlots*int64(fn.Slot)
}

// refill merges the inbox with ready and returns the new ready queue: an
// even selection across campaigns of at most target recipients, each
// campaign's batches in arrival order. What is not selected goes back to
// "pending", and "open" is emptied. It updates pos's inbox counts and
// refill bookkeeping.
func (fn *paceFn) refill(sp state.Provider, pos *slotState, ready []pendingEntry, target int, cur, now int64) ([]pendingEntry, error) {
	var inbox, open []pendingEntry
	var err error
	if pos.Waiting > pos.Open { // "pending" holds something
		if inbox, _, err = fn.Pending.Read(sp); err != nil {
			return nil, fmt.Errorf("pace: read pending: %w", err)
		}
	}
	if pos.Open > 0 {
		if open, _, err = fn.Open.Read(sp); err != nil {
			return nil, fmt.Errorf("pace: read open: %w", err)
		}
	}
	// Ready first: the stable sort keeps the ready piece of a split entry
	// (its earlier recipients) before the inbox piece with the same N.
	all := append(slices.Clip(ready), inbox...)
	all = append(all, fn.coalesce(open)...)
	slices.SortStableFunc(all, byN)
	demand := map[string]int{}
	for _, it := range all {
		demand[it.campaign()] += it.size()
	}
	quota := Allocate(target, demand, nil, int(cur))
	var sel, rest []pendingEntry
	waiting := 0
	var waitingBy map[string]int64
	for _, it := range all {
		c, n := it.campaign(), it.size()
		take := min(quota[c], n)
		quota[c] -= take
		switch take {
		case n:
			sel = append(sel, it)
		case 0:
			rest = append(rest, it)
		default:
			head, tail := it.split(take)
			sel = append(sel, head)
			rest = append(rest, tail)
		}
		if left := n - take; left > 0 {
			waiting += left
			if waitingBy == nil {
				waitingBy = map[string]int64{}
			}
			waitingBy[c] += int64(left)
		}
	}
	if len(inbox) > 0 || len(rest) > 0 {
		if err := fn.Pending.Clear(sp); err != nil {
			return nil, fmt.Errorf("pace: clear pending: %w", err)
		}
		for _, it := range rest {
			if err := fn.Pending.Add(sp, it); err != nil {
				return nil, fmt.Errorf("pace: keep %s/%d: %w", it.Batches[0].Request.Req.ID, it.Batches[0].Seq, err)
			}
		}
	}
	if len(open) > 0 {
		if err := fn.Open.Clear(sp); err != nil {
			return nil, fmt.Errorf("pace: clear open: %w", err)
		}
	}
	pos.Inbox, pos.Waiting, pos.WaitingBy, pos.Refilled = 0, int64(waiting), waitingBy, now
	pos.Open, pos.OpenBy = 0, nil
	return sel, nil
}

// flush moves the open batches, and more (small batches that arrived
// after them), to "pending" as coalesced entries, and empties "open".
// Waiting is unchanged: both bags are the inbox.
func (fn *paceFn) flush(sp state.Provider, pos *slotState, more ...pendingEntry) error {
	var open []pendingEntry
	if pos.Open > 0 {
		var err error
		if open, _, err = fn.Open.Read(sp); err != nil {
			return fmt.Errorf("read open: %w", err)
		}
	}
	for _, it := range fn.coalesce(append(open, more...)) {
		if err := fn.Pending.Add(sp, it); err != nil {
			return fmt.Errorf("move open to pending: %w", err)
		}
	}
	if len(open) > 0 {
		if err := fn.Open.Clear(sp); err != nil {
			return fmt.Errorf("clear open: %w", err)
		}
	}
	pos.Open, pos.OpenBy = 0, nil
	return nil
}

// coalesce groups the batches of open, in arrival order, into entries of
// one campaign each, of at most CoalesceTarget recipients (a batch larger
// than that is an entry of its own), ordered by N.
func (fn *paceFn) coalesce(open []pendingEntry) []pendingEntry {
	if len(open) == 0 {
		return nil
	}
	slices.SortStableFunc(open, byN)
	type chunk struct{ i, n int } // index in out, recipients
	cur := map[string]chunk{}
	var out []pendingEntry
	for _, it := range open {
		for _, b := range it.Batches {
			c, n := b.Request.Req.Campaign, len(b.Recipients)
			ch, ok := cur[c]
			if !ok || ch.n+n > fn.CoalesceTarget {
				out = append(out, pendingEntry{N: it.N})
				ch = chunk{i: len(out) - 1}
			}
			out[ch.i].Batches = append(out[ch.i].Batches, b)
			ch.n += n
			cur[c] = ch
		}
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
