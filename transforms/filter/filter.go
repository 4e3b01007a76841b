// Package filter applies the per-user delivery rules to batches of
// recipients: opt-out by category, quiet hours in the user's timezone, daily
// frequency caps per category, and a minimum interest score. Each rule reads
// its Redis state with one pipelined round trip per batch. A dropped
// recipient leaves as a DeliveryEvent naming the rule.
package filter

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn4x1[context.Context, recipient.Batch, func(recipient.Batch), func(pushflow.DeliveryEvent), error](&filterFn{})
}

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
}

// ReasonLowInterest is the reason of a recipient below Config.MinInterest.
const ReasonLowInterest = "low_interest"

// Apply filters PCollection<recipient.Batch> into the kept
// PCollection<recipient.Batch> and PCollection<pushflow.DeliveryEvent> of
// dropped recipients (stage "filter").
func Apply(s beam.Scope, batches beam.PCollection, cfg Config) (kept, events beam.PCollection) {
	s = s.Scope("filter.Apply")
	if cfg.RedisAddr == "" {
		panic("filter.Apply: RedisAddr is required")
	}
	if cfg.FrequencyCap < 0 || cfg.MinInterest < 0 {
		panic(fmt.Sprintf("filter.Apply: FrequencyCap and MinInterest must be >= 0, got %d and %v", cfg.FrequencyCap, cfg.MinInterest))
	}
	return beam.ParDo2(s, &filterFn{Cfg: cfg}, batches)
}

var (
	keptCount    = beam.NewCounter("pushflow", "filter_kept")
	droppedCount = map[string]beam.Counter{
		pushflow.ReasonOptOut:       beam.NewCounter("pushflow", "filter_dropped_opt_out"),
		pushflow.ReasonQuietHours:   beam.NewCounter("pushflow", "filter_dropped_quiet_hours"),
		pushflow.ReasonFrequencyCap: beam.NewCounter("pushflow", "filter_dropped_frequency_cap"),
		ReasonLowInterest:           beam.NewCounter("pushflow", "filter_dropped_low_interest"),
	}
)

type filterFn struct {
	Cfg Config

	reg *redisio.Registry
	now func() time.Time
}

func (fn *filterFn) Setup() {
	fn.reg = redisio.Open(fn.Cfg.RedisAddr)
	if fn.now == nil {
		fn.now = time.Now
	}
}

func (fn *filterFn) Teardown() {
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

func (fn *filterFn) ProcessElement(ctx context.Context, b recipient.Batch, emit func(recipient.Batch), events func(pushflow.DeliveryEvent)) error {
	req := b.Request.Req
	users := userIDs(b.Recipients)
	var st State
	var err error
	if st.Settings, err = fn.reg.Settings(ctx, req.App, users); err != nil {
		return fmt.Errorf("filter: %s: %w", req.ID, err)
	}
	if fn.Cfg.MinInterest > 0 && req.Category != "" {
		if st.Interest, err = fn.reg.InterestScores(ctx, req.App, req.Category, users); err != nil {
			return fmt.Errorf("filter: %s: %w", req.ID, err)
		}
	}
	now := fn.now()
	decided := make(map[string]Decision, len(users))
	var pass []string
	for _, u := range users {
		d, err := Decide(fn.Cfg, req, st, u, now)
		if err != nil {
			// Settings are validated when registered; a bad value that got
			// in anyway must not stop the batch: keep the user and say so.
			slog.WarnContext(ctx, "filter: ignoring bad settings", "app", req.App, "err", err)
		}
		decided[u] = d
		if d == "" {
			pass = append(pass, u)
		}
	}
	if fn.Cfg.FrequencyCap > 0 && len(pass) > 0 {
		counts, err := fn.reg.IncrFrequency(ctx, req.App, categoryKey(req.Category), now.UTC().Format("20060102"), pass)
		if err != nil {
			return fmt.Errorf("filter: %s: %w", req.ID, err)
		}
		if req.Priority != pushflow.PriorityRealtime {
			for _, u := range pass {
				if counts[u] > int64(fn.Cfg.FrequencyCap) {
					decided[u] = pushflow.ReasonFrequencyCap
				}
			}
		}
	}
	kept := make([]recipient.Recipient, 0, len(b.Recipients))
	for _, r := range b.Recipients {
		if reason := decided[r.UserID]; reason != "" {
			droppedCount[reason].Inc(ctx, 1)
			events(b.Event(now, r, pushflow.StageFilter, pushflow.OutcomeDropped, reason))
			continue
		}
		kept = append(kept, r)
	}
	keptCount.Inc(ctx, int64(len(kept)))
	if len(kept) > 0 {
		emit(b.With(kept))
	}
	return nil
}

func categoryKey(c string) string {
	if c == "" {
		return "_"
	}
	return c
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
