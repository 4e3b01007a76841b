// Package interest turns click events and delivery events into per-user,
// per-category interest scores in Redis (DESIGN.md "feedback"): an
// exponentially decayed rate of sent notifications the user opened or
// clicked.
//
//	Join:   clicks + sent deliveries, keyed by (request_id, device_id), in fixed
//	        event-time windows → one Tally (Sent 1, Engaged 0|1) per delivery
//	Sum:    Tallies per (app, user, category) per window
//	Update: score = decay·old + (1−decay)·engaged/sent, read and written in
//	        pipelined Redis round trips per bundle
//
// A click is joined only with a delivery of the same window; a click whose
// delivery is not in its window (none at all, a delivery that was not
// sent, or one that fell on the other side of a window boundary) is counted
// in the counter feedback_unmatched_clicks and dropped.
package interest

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/internal/stageout"
)

func init() {
	register.Function1x2(keyClick)
	register.Function2x0(keySent)
	register.Emitter2[string, pushflow.DeliveryEvent]()
	register.DoFn5x0[context.Context, string, func(*pushflow.ClickEvent) bool, func(*pushflow.DeliveryEvent) bool, func(string, Tally)](&joinFn{})
	register.Iter1[pushflow.ClickEvent]()
	register.Iter1[pushflow.DeliveryEvent]()
	register.Emitter2[string, Tally]()
	register.Function2x1(mergeTally)
	register.DoFn4x1[context.Context, string, Tally, func(int), error](&updateFn{})
	register.Emitter1[int]()
}

// Tally counts the sent deliveries of one (app, user, category) and how
// many of them the user opened or clicked.
type Tally struct {
	App      string
	UserID   string
	Category string
	Sent     int
	Engaged  int
}

// Key is the grouping key of t: app, user and category.
func (t Tally) Key() string { return t.App + "\x00" + t.UserID + "\x00" + t.Category }

var (
	joinedClicks    = beam.NewCounter("pushflow", "feedback_joined_clicks")
	unmatchedClicks = beam.NewCounter("pushflow", "feedback_unmatched_clicks")
	sentDeliveries  = beam.NewCounter("pushflow", "feedback_sent_deliveries")
	scoresWritten   = beam.NewCounter("pushflow", "feedback_scores_written")
)

// Join joins PCollection<pushflow.ClickEvent> with the sent events of
// PCollection<pushflow.DeliveryEvent> by (request_id, device_id) in fixed
// event-time windows of size window, and returns PCollection<KV<string, Tally>>
// keyed by Tally.Key: one element per sent delivery, Sent 1 and Engaged 1
// when any click on it was opened or clicked. Deliveries that were not sent
// are ignored; clicks without a sent delivery in their window are counted
// (feedback_unmatched_clicks) and dropped.
func Join(s beam.Scope, clicks, deliveries beam.PCollection, window time.Duration) beam.PCollection {
	s = s.Scope("interest.Join")
	if window <= 0 {
		panic(fmt.Sprintf("interest.Join: window must be positive, got %v", window))
	}
	ck := windowed(s, window, beam.ParDo(s, keyClick, clicks))
	dk := windowed(s, window, beam.ParDo(s, keySent, deliveries))
	return beam.ParDo(s, &joinFn{}, beam.CoGroupByKey(s, ck, dk))
}

func windowed(s beam.Scope, size time.Duration, col beam.PCollection) beam.PCollection {
	return beam.WindowInto(s, window.NewFixedWindows(size), col)
}

// Sum sums PCollection<KV<string, Tally>> per key and window.
func Sum(s beam.Scope, tallies beam.PCollection) beam.PCollection {
	s = s.Scope("interest.Sum")
	return beam.CombinePerKey(s, mergeTally, tallies)
}

// Update applies PCollection<KV<string, Tally>> to the interest scores in
// Redis at redisAddr (see Score). It returns nothing; a failed Redis round
// trip fails the bundle, which the runner retries. Updates are not
// idempotent: a retried bundle decays the scores it had already written
// once more.
func Update(s beam.Scope, tallies beam.PCollection, redisAddr string, decay float64) {
	s = s.Scope("interest.Update")
	if redisAddr == "" {
		panic("interest.Update: redisAddr is required")
	}
	if !(decay >= 0 && decay < 1) {
		panic(fmt.Sprintf("interest.Update: decay must be in [0, 1), got %v", decay))
	}
	// updateFn emits nothing; its output gives the stage a consumed output
	// (see package stageout).
	stageout.Consume(s, beam.ParDo(s, &updateFn{RedisAddr: redisAddr, Decay: decay, FlushSize: 500}, tallies))
}

func deliveryKey(requestID, deviceID string) string { return requestID + "\x00" + deviceID }

func keyClick(ev pushflow.ClickEvent) (string, pushflow.ClickEvent) {
	return deliveryKey(ev.RequestID, ev.DeviceID), ev
}

func keySent(ev pushflow.DeliveryEvent, emit func(string, pushflow.DeliveryEvent)) {
	if ev.Outcome == pushflow.OutcomeSent {
		emit(deliveryKey(ev.RequestID, ev.DeviceID), ev)
	}
}

func mergeTally(a, b Tally) Tally {
	if a.App == "" && a.UserID == "" && a.Category == "" {
		a.App, a.UserID, a.Category = b.App, b.UserID, b.Category
	}
	a.Sent += b.Sent
	a.Engaged += b.Engaged
	return a
}

type joinFn struct{}

func (fn *joinFn) ProcessElement(ctx context.Context, _ string, clicks func(*pushflow.ClickEvent) bool, deliveries func(*pushflow.DeliveryEvent) bool, emit func(string, Tally)) {
	var d pushflow.DeliveryEvent
	found := false
	var ev pushflow.DeliveryEvent
	for deliveries(&ev) {
		// A (request, device) is sent once; a repeated sent event (a
		// redelivered Kafka record) is the same delivery.
		if !found {
			d, found = ev, true
		}
	}
	var c pushflow.ClickEvent
	n, engaged := 0, false
	for clicks(&c) {
		n++
		engaged = engaged || Engaged(c.Action)
	}
	if !found {
		unmatchedClicks.Inc(ctx, int64(n))
		return
	}
	joinedClicks.Inc(ctx, int64(n))
	sentDeliveries.Inc(ctx, 1)
	t := Tally{App: d.App, UserID: d.UserID, Category: d.Category, Sent: 1}
	if engaged {
		t.Engaged = 1
	}
	emit(t.Key(), t)
}

type updateFn struct {
	RedisAddr string
	Decay     float64
	FlushSize int

	reg *redisio.Registry
	buf []Tally
}

func (fn *updateFn) Setup() {
	fn.reg = redisio.Open(fn.RedisAddr)
}

func (fn *updateFn) Teardown() {
	fn.reg.Close()
}

func (fn *updateFn) ProcessElement(ctx context.Context, _ string, t Tally, _ func(int)) error {
	if t.Sent <= 0 {
		return nil
	}
	fn.buf = append(fn.buf, t)
	if len(fn.buf) >= fn.FlushSize {
		return fn.flush(ctx)
	}
	return nil
}

func (fn *updateFn) FinishBundle(ctx context.Context, _ func(int)) error { return fn.flush(ctx) }

// flush reads the old scores of the buffered tallies with one pipelined
// round trip per (app, category), applies the tallies in order (a key seen
// twice, from two windows, decays twice), and writes the new scores with
// one round trip per app.
func (fn *updateFn) flush(ctx context.Context) error {
	if len(fn.buf) == 0 {
		return nil
	}
	defer func() { fn.buf = fn.buf[:0] }()
	type appCategory struct{ app, category string }
	users := map[appCategory][]string{}
	for _, t := range fn.buf {
		ac := appCategory{t.App, t.Category}
		users[ac] = append(users[ac], t.UserID)
	}
	scores := map[string]float64{}
	for ac, us := range users {
		old, err := fn.reg.InterestScores(ctx, ac.app, ac.category, us)
		if err != nil {
			return fmt.Errorf("interest: read scores: %w", err)
		}
		for u, v := range old {
			scores[Tally{App: ac.app, UserID: u, Category: ac.category}.Key()] = v
		}
	}
	byApp := map[string]map[string]map[string]float64{}
	for _, t := range fn.buf {
		k := t.Key()
		old, ok := scores[k]
		scores[k] = Score(old, ok, t.Engaged, t.Sent, fn.Decay)
		if byApp[t.App] == nil {
			byApp[t.App] = map[string]map[string]float64{}
		}
		if byApp[t.App][t.UserID] == nil {
			byApp[t.App][t.UserID] = map[string]float64{}
		}
		byApp[t.App][t.UserID][t.Category] = scores[k]
	}
	for app, s := range byApp {
		if err := fn.reg.SetInterestScores(ctx, app, s); err != nil {
			return fmt.Errorf("interest: write scores: %w", err)
		}
		n := 0
		for _, byCat := range s {
			n += len(byCat)
		}
		scoresWritten.Inc(ctx, int64(n))
	}
	return nil
}
