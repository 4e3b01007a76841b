// Package filter applies the per-user delivery rules to batches of
// recipients: opt-out by category, quiet hours in the user's timezone, daily
// frequency caps per category, and a minimum interest score. The DoFn
// buffers the batches of a bundle, across requests, until they hold
// Config.FlushRecipients recipients, and reads the rules' Redis state for
// all of them together: one pipelined round trip per app and per app and
// category, not one per batch. A dropped recipient leaves as a
// DeliveryEvent naming the rule.
package filter

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn5x1[context.Context, beam.EventTime, recipient.Batch, func(beam.EventTime, recipient.Batch), func(beam.EventTime, pushflow.DeliveryEvent), error](&rulesFn{})
	register.Emitter2[beam.EventTime, recipient.Batch]()
	register.Emitter2[beam.EventTime, pushflow.DeliveryEvent]()
}

// DefaultFlushRecipients is Config.FlushRecipients when it is 0.
const DefaultFlushRecipients = recipient.DefaultFlushRecipients

// Config configures Apply. The zero value applies opt-out and quiet hours.
type Config struct {
	RedisAddr string
	// FrequencyCap is the most notifications of one category a user gets per
	// UTC day; 0 disables the cap. Realtime requests count but are never capped.
	FrequencyCap int
	// MinInterest drops recipients whose interest score for the request's
	// category is known and below it; 0 disables the rule.
	MinInterest float64
	// QuietHoursForRealtime applies quiet hours to realtime requests too.
	// Default false: a live-event alert goes out at any hour.
	QuietHoursForRealtime bool
	// FlushRecipients is how many recipients the filter buffers, across the
	// batches (and requests) of a bundle, before it reads their Redis state
	// together and emits their outcomes; the rest are flushed when the
	// bundle finishes. 0 means DefaultFlushRecipients (1000); 1 or less
	// flushes every batch as it arrives.
	FlushRecipients int
}

// ReasonLowInterest is the reason of a recipient below Config.MinInterest.
const ReasonLowInterest = "low_interest"

// Apply filters PCollection<recipient.Batch> into the kept
// PCollection<recipient.Batch> and PCollection<pushflow.DeliveryEvent> of
// dropped recipients (stage "filter"). Outputs keep their input's event
// timestamp.
func Apply(s beam.Scope, batches beam.PCollection, cfg Config) (kept, events beam.PCollection) {
	s = s.Scope("filter.Apply")
	if cfg.RedisAddr == "" {
		panic("filter.Apply: RedisAddr is required")
	}
	if cfg.FrequencyCap < 0 || cfg.MinInterest < 0 {
		panic(fmt.Sprintf("filter.Apply: FrequencyCap and MinInterest must be >= 0, got %d and %v", cfg.FrequencyCap, cfg.MinInterest))
	}
	return beam.ParDo2(s, &rulesFn{Cfg: cfg}, batches)
}

var (
	keptCount = beam.NewCounter("pushflow", "filter_kept")
	// recalledCount counts decisions a replay took from its first run.
	recalledCount = beam.NewCounter("pushflow", "filter_recalled")
	droppedCount  = map[string]beam.Counter{
		pushflow.ReasonOptOut:       beam.NewCounter("pushflow", "filter_dropped_opt_out"),
		pushflow.ReasonQuietHours:   beam.NewCounter("pushflow", "filter_dropped_quiet_hours"),
		pushflow.ReasonFrequencyCap: beam.NewCounter("pushflow", "filter_dropped_frequency_cap"),
		ReasonLowInterest:           beam.NewCounter("pushflow", "filter_dropped_low_interest"),
	}
)

// rulesFn is the filter's DoFn. Beam keys DoFn wrappers by "package.Type",
// and Beam's own transforms/filter (which passert uses) has a filterFn:
// hence not that name.
type rulesFn struct {
	Cfg Config

	reg *redisio.Registry
	now func() time.Time

	buf recipient.Buffer // the bundle's batches not flushed yet
}

func (fn *rulesFn) Setup() {
	fn.reg = redisio.Open(fn.Cfg.RedisAddr)
	if fn.now == nil {
		fn.now = time.Now
	}
}

func (fn *rulesFn) Teardown() {
	fn.reg.Close()
}

// Decision is the outcome of the rules for one user: "" keeps it, otherwise
// the reason it is dropped.
type Decision = string

// State is what the rules know about the users of one batch.
type State struct {
	Settings map[string]pushflow.Settings
	Interest map[string]float64 // nil when the rule is off
}

// Decide applies the stateless rules (opt-out, quiet hours, interest) to one
// user. It is pure: the frequency cap, which must count, is applied after it.
func Decide(cfg Config, req pushflow.PushRequest, st State, userID string, now time.Time) (Decision, error) {
	set := st.Settings[userID]
	if req.Category != "" && slices.Contains(set.OptOut, req.Category) {
		return pushflow.ReasonOptOut, nil
	}
	if set.QuietHours != "" && (req.Priority != pushflow.PriorityRealtime || cfg.QuietHoursForRealtime) {
		quiet, err := pushflow.InQuietHours(set, now)
		if err != nil {
			return "", fmt.Errorf("user %s: %w", userID, err)
		}
		if quiet {
			return pushflow.ReasonQuietHours, nil
		}
	}
	if cfg.MinInterest > 0 && st.Interest != nil {
		if score, ok := st.Interest[userID]; ok && score < cfg.MinInterest {
			return ReasonLowInterest, nil
		}
	}
	return "", nil
}

// StartBundle drops anything a failed bundle left buffered: no state
// survives from one bundle to the next.
func (fn *rulesFn) StartBundle(context.Context, func(beam.EventTime, recipient.Batch), func(beam.EventTime, pushflow.DeliveryEvent)) {
	fn.buf.Reset()
}

// ProcessElement buffers b and flushes once the buffer holds
// Config.FlushRecipients recipients.
func (fn *rulesFn) ProcessElement(ctx context.Context, ts beam.EventTime, b recipient.Batch, emit func(beam.EventTime, recipient.Batch), events func(beam.EventTime, pushflow.DeliveryEvent)) error {
	if fn.buf.Add(ts, b, recipient.FlushAt(fn.Cfg.FlushRecipients)) {
		return fn.flush(ctx, emit, events)
	}
	return nil
}

// FinishBundle flushes what the bundle left buffered.
func (fn *rulesFn) FinishBundle(ctx context.Context, emit func(beam.EventTime, recipient.Batch), events func(beam.EventTime, pushflow.DeliveryEvent)) error {
	return fn.flush(ctx, emit, events)
}

// flush decides every buffered batch together and emits, batch by batch in
// arrival order and each with its own timestamp, its dropped recipients'
// events (in the batch's order) and then the batch of the kept ones, if any:
// what filtering the batches one at a time would emit. Counters are updated
// here, on the bundle's goroutine.
func (fn *rulesFn) flush(ctx context.Context, emit func(beam.EventTime, recipient.Batch), events func(beam.EventTime, pushflow.DeliveryEvent)) error {
	defer fn.buf.Reset()
	if len(fn.buf.Items) == 0 {
		return nil
	}
	now := fn.now()
	decided, err := fn.decide(ctx, fn.buf.Items, now)
	if err != nil {
		return err
	}
	at, err := fn.remember(ctx, decided, now)
	if err != nil {
		return err
	}
	for i, p := range fn.buf.Items {
		b := p.Batch
		kept := make([]recipient.Recipient, 0, len(b.Recipients))
		for _, r := range b.Recipients {
			if reason := decided[i][r.UserID]; reason != "" {
				droppedCount[reason].Inc(ctx, 1)
				events(p.TS, b.Event(at[i][r.UserID], r, pushflow.StageFilter, pushflow.OutcomeDropped, reason))
				continue
			}
			kept = append(kept, r)
		}
		keptCount.Inc(ctx, int64(len(kept)))
		if len(kept) > 0 {
			emit(p.TS, b.With(kept))
		}
	}
	return nil
}

// remember makes the flush's decisions replay-safe, in one read (only for
// replayed requests) and one write: a replayed batch takes the decisions
// its first run recorded for its users (a quiet-hours window may have
// ended since: a user dropped then must not be sent now, nor one kept then
// be dropped now), and every decision not recorded yet is recorded before
// anything is emitted. It returns the time of each decision (a recalled
// one keeps its first time, so its event is the same event).
func (fn *rulesFn) remember(ctx context.Context, decided []map[string]Decision, now time.Time) ([]map[string]time.Time, error) {
	buf := fn.buf.Items
	scopes := make([]string, len(buf))
	want := map[string][]string{}
	for i, p := range buf {
		req := p.Batch.Request
		scopes[i] = req.Req.ID + "@" + req.Source.String()
		if req.Replayed {
			for u := range decided[i] {
				want[scopes[i]] = append(want[scopes[i]], u)
			}
		}
	}
	recorded, err := fn.reg.RecordedDecisions(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("filter: %s: %w", recipient.RequestIDs(batchIDs(buf)), err)
	}
	at := make([]map[string]time.Time, len(buf))
	record := map[string]map[string]string{}
	for i := range buf {
		at[i] = make(map[string]time.Time, len(decided[i]))
		for u, d := range decided[i] {
			if v, ok := recorded[scopes[i]][u]; ok {
				if rd, t, ok := parseDecision(v); ok {
					decided[i][u], at[i][u] = rd, t
					recalledCount.Inc(ctx, 1)
					continue
				}
			}
			at[i][u] = now
			if record[scopes[i]] == nil {
				record[scopes[i]] = map[string]string{}
			}
			record[scopes[i]][u] = formatDecision(d, now)
		}
	}
	if err := fn.reg.RecordDecisions(ctx, record); err != nil {
		return nil, fmt.Errorf("filter: %s: %w", recipient.RequestIDs(batchIDs(buf)), err)
	}
	return at, nil
}

// batchIDs are the request ids of buf's batches, for errors.
func batchIDs(buf []recipient.Buffered) []string {
	ids := make([]string, len(buf))
	for i, p := range buf {
		ids[i] = p.Batch.Request.Req.ID
	}
	return ids
}

// formatDecision encodes a recorded decision: "<unix ms> <reason>" ("" =
// kept).
func formatDecision(d Decision, t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10) + " " + d
}

func parseDecision(v string) (Decision, time.Time, bool) {
	ms, reason, ok := strings.Cut(v, " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return "", time.Time{}, false
	}
	return reason, time.UnixMilli(n).UTC(), true
}

// appCategory keys the interest reads and frequency counts of a flush.
type appCategory struct{ app, category string }

// decide returns, for each batch of buf, the decision of each of its users.
//
// It reads settings once per app and interest once per (app, category) for
// all the users of buf, concurrently, and then counts the users the
// stateless rules kept, per (app, category). Counting is what makes batching
// across requests delicate: a user kept in k batches of one (app, category)
// is counted k times, and its j-th occurrence (in arrival order) must see
// the count it would have seen had the batches been filtered one after
// another: capFrequency counts them in arrival order.
func (fn *rulesFn) decide(ctx context.Context, buf []recipient.Buffered, now time.Time) ([]map[string]Decision, error) {
	users := make([][]string, len(buf))
	var apps grouping[string]
	var interests grouping[appCategory]
	settingsOf := make([]int, len(buf))
	interestOf := make([]int, len(buf))
	for i, p := range buf {
		req := p.Batch.Request.Req
		users[i] = userIDs(p.Batch.Recipients)
		settingsOf[i] = apps.add(req.App, i)
		interestOf[i] = -1
		if fn.Cfg.MinInterest > 0 && req.Category != "" {
			interestOf[i] = interests.add(appCategory{req.App, req.Category}, i)
		}
	}

	settings := make([]map[string]pushflow.Settings, len(apps.keys))
	interest := make([]map[string]float64, len(interests.keys))
	calls := make([]func() error, 0, len(apps.keys)+len(interests.keys))
	for g, app := range apps.keys {
		ids := distinctUsers(users, apps.batches[g])
		calls = append(calls, func() (err error) {
			if settings[g], err = fn.reg.Settings(ctx, app, ids); err != nil {
				return fmt.Errorf("filter: %s: %w", requestIDs(buf, apps.batches[g]), err)
			}
			return nil
		})
	}
	for g, k := range interests.keys {
		ids := distinctUsers(users, interests.batches[g])
		calls = append(calls, func() (err error) {
			if interest[g], err = fn.reg.InterestScores(ctx, k.app, k.category, ids); err != nil {
				return fmt.Errorf("filter: %s: %w", requestIDs(buf, interests.batches[g]), err)
			}
			return nil
		})
	}
	if err := parallel(calls); err != nil {
		return nil, err
	}

	decided := make([]map[string]Decision, len(buf))
	pass := make([][]string, len(buf)) // per batch, its users the stateless rules keep
	days := make([]map[string]string, len(buf))
	for i, p := range buf {
		req := p.Batch.Request.Req
		st := State{Settings: settings[settingsOf[i]]}
		if g := interestOf[i]; g >= 0 {
			st.Interest = interest[g]
		}
		decided[i] = make(map[string]Decision, len(users[i]))
		for _, u := range users[i] {
			d, err := Decide(fn.Cfg, req, st, u, now)
			if err != nil {
				// Settings are validated when registered; a bad value that got
				// in anyway must not stop the batch: keep the user and say so.
				slog.WarnContext(ctx, "filter: ignoring bad settings", "app", req.App, "err", err)
			}
			decided[i][u] = d
			if d == "" {
				pass[i] = append(pass[i], u)
				if days[i] == nil {
					days[i] = map[string]string{}
				}
				days[i][u] = pushflow.LocalDay(st.Settings[u], now)
			}
		}
	}
	if fn.Cfg.FrequencyCap > 0 {
		if err := fn.capFrequency(ctx, buf, pass, decided, days); err != nil {
			return nil, err
		}
	}
	return decided, nil
}

// capFrequency counts the users in pass against their frequency cap, per
// (app, category) and the user's local day, and drops those over the cap
// from decided, but never from realtime batches. Occurrences are counted in
// arrival order in one pipelined round trip per (app, category), so the
// j-th batch holding a user sees the count it would have seen had the
// batches been filtered one after another. Each (request, user) is
// counted once however often the request is replayed, and a replay gets
// the count it got the first time: the same decision.
func (fn *rulesFn) capFrequency(ctx context.Context, buf []recipient.Buffered, pass [][]string, decided []map[string]Decision, days []map[string]string) error {
	var groups grouping[appCategory]
	for i, p := range buf {
		if len(pass[i]) > 0 {
			req := p.Batch.Request.Req
			groups.add(appCategory{req.App, categoryKey(req.Category)}, i)
		}
	}
	counts := make([][]int64, len(groups.keys))
	calls := make([]func() error, 0, len(groups.keys))
	for g, k := range groups.keys {
		var entries []redisio.FrequencyCount
		for _, i := range groups.batches[g] {
			req := buf[i].Batch.Request
			token := req.Req.ID + "@" + req.Source.String()
			for _, u := range pass[i] { // distinct within a batch
				entries = append(entries, redisio.FrequencyCount{User: u, Day: days[i][u], Token: token})
			}
		}
		calls = append(calls, func() (err error) {
			if counts[g], err = fn.reg.CountFrequency(ctx, k.app, k.category, entries); err != nil {
				return fmt.Errorf("filter: %s: %w", requestIDs(buf, groups.batches[g]), err)
			}
			return nil
		})
	}
	if err := parallel(calls); err != nil {
		return err
	}
	limit := int64(fn.Cfg.FrequencyCap)
	for g := range groups.keys {
		n := 0
		for _, i := range groups.batches[g] {
			realtime := buf[i].Batch.Request.Req.Priority == pushflow.PriorityRealtime
			for _, u := range pass[i] {
				c := counts[g][n]
				n++
				if !realtime && c > limit {
					decided[i][u] = pushflow.ReasonFrequencyCap
				}
			}
		}
	}
	return nil
}

// grouping collects the batches of a flush by key, keys in order of first
// appearance and each key's batches (indexes into the buffer) in arrival
// order.
type grouping[K comparable] struct {
	index   map[K]int
	keys    []K
	batches [][]int
}

// add files batch i under k and returns k's group index.
func (g *grouping[K]) add(k K, i int) int {
	n, ok := g.index[k]
	if !ok {
		if g.index == nil {
			g.index = map[K]int{}
		}
		n = len(g.keys)
		g.index[k] = n
		g.keys = append(g.keys, k)
		g.batches = append(g.batches, nil)
	}
	g.batches[n] = append(g.batches[n], i)
	return n
}

// maxParallelCalls bounds the Redis calls of one flush in flight at once
// (go-redis's pool has 10 connections per CPU by default).
const maxParallelCalls = 8

// parallel runs calls, at most maxParallelCalls at a time, and returns the
// first error in calls' order. The calls only talk to Redis and fill their
// own result slots; metrics stay on the caller's goroutine.
func parallel(calls []func() error) error {
	if len(calls) == 1 {
		return calls[0]()
	}
	errs := make([]error, len(calls))
	sem := make(chan struct{}, maxParallelCalls)
	var wg sync.WaitGroup
	for i, call := range calls {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = call()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// requestIDs names the requests of the given batches for an error.
func requestIDs(buf []recipient.Buffered, batches []int) string {
	ids := make([]string, len(batches))
	for j, i := range batches {
		ids[j] = buf[i].Batch.Request.Req.ID
	}
	return recipient.RequestIDs(ids)
}

func categoryKey(c string) string {
	if c == "" {
		return "_"
	}
	return c
}

// distinctUsers returns the users of the given batches, each once, in order.
func distinctUsers(users [][]string, batches []int) []string {
	if len(batches) == 1 {
		return users[batches[0]]
	}
	seen := map[string]bool{}
	var out []string
	for _, i := range batches {
		for _, u := range users[i] {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

func userIDs(rs []recipient.Recipient) []string {
	seen := make(map[string]bool, len(rs))
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		if !seen[r.UserID] {
			seen[r.UserID] = true
			out = append(out, r.UserID)
		}
	}
	return out
}
