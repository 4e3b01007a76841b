// Package expand turns each request's target (users, devices, alias, tag
// expression, broadcast, file) into batches of recipients.
//
// Targets is a splittable DoFn. Lists in the request (users, devices,
// aliases) are bounded by the request's size and expand in one call. Large
// audiences (broadcast, tag expressions, files) are read page by page with a
// cursor (SSCAN, or a byte offset) in slices: a call emits at most
// Config.SliceMax recipients or runs Config.SliceTime, then checkpoints, and
// the runner resumes the rest from the Cursor. So a 10M-user broadcast is
// many short bundles, not one that must finish (and whose output the runner
// must hold) before anything moves on, and a failed bundle replays one
// slice.
//
// # Backpressure
//
// With Config.Backpressure set (dispatch sets it when its lane is paced),
// each slice first reads how many recipients of the request's campaign wait
// in the lane's pacer (the pacer's reports, redisio.Backlog) and emits at
// most MaxPending minus that; at or above MaxPending it emits nothing and
// asks to be resumed after Poll. Reports lag what was emitted by the
// pipeline's transit time (seconds on a busy runner), so a slice also counts
// the previous slice as pending until the pacer reports having received a
// batch at least as new (Batch.Emitted; for at most 10 s, in case the filter
// dropped the slice's last batch). The pacer then holds about MaxPending per
// campaign and concurrently expanding request, whatever the audience size,
// and the rest of the audience stays in Redis until the pacer is ready for
// it.
//
// # File audiences
//
// A file target (a local path or file:// URI, one user id per line) is read
// only when it lies under one of Config.AudienceRoots; with no root
// configured every file target is refused. The path is checked lexically
// first (made absolute and cleaned, so ".." cannot climb out; a proper
// path-prefix check), so nothing outside the roots is opened or even
// stat'ed; it is then opened through os.Root, which follows symbolic links
// only while they stay inside the root (an absolute link, or one that
// climbs out, is refused). A refused request gets one event, reason
// ReasonFileRefused, and a dead letter with the path and the roots; none
// of its recipients exist.
//
// Every line that is not blank or a # comment must be a user id
// (pushflow.ValidUserID, after trimming surrounding space). Lines are read
// in slices, so a file cannot be rejected whole before its first
// recipients go out: an invalid line is skipped, never echoed into an event
// or a log, and counted (counter pushflow/expand_invalid_lines); at the end
// of the file the request gets one event, reason
// ReasonInvalidAudienceLine, and one warning with the count, the first bad
// line's number and what was wrong with it. A line longer than 64 KiB is
// invalid and is skipped without being held in memory.
package expand

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/decode"
	"github.com/pushflow/pushflow/transforms/ledger"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn6x2[context.Context, *sdf.LockRTracker, recipient.Request, func(recipient.Batch), func(pushflow.DeliveryEvent), func(pushflow.DeadLetter), sdf.ProcessContinuation, error](&expandFn{})
	register.Emitter1[recipient.Batch]()
}

// Config configures Targets.
type Config struct {
	RedisAddr string
	// BatchSize is the most recipients per emitted batch. Default 500.
	BatchSize int
	// ScanCount is the COUNT hint of cursor scans over tag and broadcast
	// audiences, and the lines per page of a file. Default 1000.
	ScanCount int64
	// SliceMax is the most recipients one call emits from a large audience
	// before it checkpoints. Default 50,000.
	SliceMax int
	// SliceTime is the longest one call reads a large audience before it
	// checkpoints. Default 5s.
	SliceTime time.Duration
	// Backpressure, when set, holds large expansions back while their
	// campaign's recipients pending in a paced lane reach MaxPending.
	Backpressure *Backpressure
	// Ledger is the name of the dispatch ledger (see package ledger) that
	// expansion reports the recipients and outcomes it emits to; "" = none.
	Ledger string
	// AudienceRoots are the directories file targets may name files under
	// (a relative root, like a relative file target, is resolved against
	// the worker's working directory). Default none: every file target is
	// refused (ReasonFileRefused, and a dead letter).
	AudienceRoots []string
}

// Backpressure ties the expansion to the pacer of its lane (see the
// package doc).
type Backpressure struct {
	// Lane and Shards are the pacer's (pace.Config.Lane and Shards): the
	// reports summed are those of shards 0 … Shards-1 of Lane.
	Lane   string
	Shards int
	// MaxPending is how many recipients of one campaign may wait in the
	// pacer before an expansion of that campaign pauses. Required (> 0).
	MaxPending int64
	// Poll is how long a paused expansion waits before it reads the backlog
	// again. Default DefaultPoll.
	Poll time.Duration
}

// Defaults of Config.
const (
	DefaultSliceMax  = 50_000
	DefaultSliceTime = 5 * time.Second
	DefaultPoll      = time.Second
)

// Targets expands PCollection<recipient.Request> into PCollection<recipient.Batch>,
// PCollection<pushflow.DeliveryEvent> (stage "expand": devices or aliases
// that do not exist, files that cannot be read or are refused, audience
// files with invalid lines, requests whose audience is empty, and requests
// for unknown apps) and PCollection<pushflow.DeadLetter> (a request for an
// app the registry has never seen, or for a file outside
// Config.AudienceRoots: almost always a mistake upstream, so it is
// dead-lettered as well as recorded).
func Targets(s beam.Scope, reqs beam.PCollection, cfg Config) (batches, events, dead beam.PCollection) {
	s = s.Scope("expand.Targets")
	if cfg.RedisAddr == "" {
		panic("expand.Targets: RedisAddr is required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.ScanCount <= 0 {
		cfg.ScanCount = 1000
	}
	if cfg.SliceMax <= 0 {
		cfg.SliceMax = DefaultSliceMax
	}
	if cfg.SliceTime <= 0 {
		cfg.SliceTime = DefaultSliceTime
	}
	fn := &expandFn{RedisAddr: cfg.RedisAddr, Ledger: cfg.Ledger, BatchSize: cfg.BatchSize, ScanCount: cfg.ScanCount, SliceMax: cfg.SliceMax, SliceTime: cfg.SliceTime, AudienceRoots: cfg.AudienceRoots}
	if bp := cfg.Backpressure; bp != nil {
		if bp.MaxPending <= 0 {
			panic(fmt.Sprintf("expand.Targets: Backpressure.MaxPending must be > 0, got %d", bp.MaxPending))
		}
		if bp.Poll <= 0 {
			bp.Poll = DefaultPoll
		}
		fn.Lane, fn.Shards, fn.MaxPending, fn.Poll = bp.Lane, max(bp.Shards, 1), bp.MaxPending, bp.Poll
	}
	return beam.ParDo3(s, fn, reqs)
}

var (
	expandedRecipients = beam.NewCounter("pushflow", "expand_recipients")
	expandDrops        = beam.NewCounter("pushflow", "expand_dropped")
	audienceSize       = beam.NewDistribution("pushflow", "expand_audience_size")
	deadLetters        = beam.NewCounter("pushflow", "dead_letters")
	expandSlices       = beam.NewCounter("pushflow", "expand_slices")        // calls over a large audience
	expandPaused       = beam.NewCounter("pushflow", "expand_paused")        // slices that emitted nothing: the campaign's backlog was full
	pacedBacklog       = beam.NewDistribution("pushflow", "expand_backlog")  // campaign backlog seen by a slice
	inTransit          = beam.NewCounter("pushflow", "expand_in_transit")    // slices that found their previous slice still in transit
	invalidLines       = beam.NewCounter("pushflow", "expand_invalid_lines") // lines of audience files skipped as not user ids
)

// ReasonNoRecipients is the reason of a request whose audience was empty.
const ReasonNoRecipients = "no_recipients"

type expandFn struct {
	RedisAddr string
	Ledger    string
	BatchSize int
	ScanCount int64
	SliceMax  int
	SliceTime time.Duration
	// AudienceRoots confine file targets (Config.AudienceRoots).
	AudienceRoots []string
	// Backpressure (MaxPending 0 = off).
	Lane       string
	Shards     int
	MaxPending int64
	Poll       time.Duration

	reg   *redisio.Registry
	known map[string]time.Time // app → until when it is known to exist
}

// knownAppTTL is how long a worker trusts that an app exists, so a backlog
// of one-user requests does not pay a round trip per request for it. A
// stale answer (every device of the app unregistered within the TTL) only
// turns that request's dead letter into an empty audience. Unknown apps
// are not cached: the first device of a new app is seen at once.
const knownAppTTL = time.Minute

// appKnown reports whether app has ever had a device, from the cache when
// it can.
func (fn *expandFn) appKnown(ctx context.Context, app string) (bool, error) {
	now := time.Now()
	if until, ok := fn.known[app]; ok && now.Before(until) {
		return true, nil
	}
	known, err := fn.reg.AppKnown(ctx, app)
	if err != nil || !known {
		return false, err
	}
	if fn.known == nil || len(fn.known) > 10_000 {
		fn.known = map[string]time.Time{}
	}
	fn.known[app] = now.Add(knownAppTTL)
	return true, nil
}

func (fn *expandFn) CreateInitialRestriction(recipient.Request) Cursor { return Cursor{} }

func (fn *expandFn) SplitRestriction(_ recipient.Request, c Cursor) []Cursor { return []Cursor{c} }

func (fn *expandFn) RestrictionSize(_ recipient.Request, c Cursor) float64 {
	if c.Done {
		return 0
	}
	return 1
}

func (fn *expandFn) CreateTracker(c Cursor) *sdf.LockRTracker { return newTracker(c) }

func (fn *expandFn) Setup() {
	fn.reg = redisio.Open(fn.RedisAddr)
}

func (fn *expandFn) Teardown() {
	fn.reg.Close()
}

// batcher accumulates recipients and emits full batches.
type batcher struct {
	req   recipient.Request
	size  int
	buf   []recipient.Recipient
	seq   int
	total int
	last  int64 // Emitted of the last batch flushed
	emit  func(recipient.Batch)
}

func (b *batcher) add(r recipient.Recipient) {
	b.buf = append(b.buf, r)
	b.total++
	if len(b.buf) >= b.size {
		b.flush()
	}
}

func (b *batcher) flush() {
	if len(b.buf) == 0 {
		return
	}
	b.last = time.Now().UnixNano()
	b.emit(recipient.Batch{Request: b.req, Recipients: b.buf, Seq: b.seq, Emitted: b.last})
	b.seq++
	b.buf = make([]recipient.Recipient, 0, b.size)
}

// ProcessElement expands req from the position of rt's Cursor. Lists expand
// in one call; large audiences one slice per call (see the package doc).
func (fn *expandFn) ProcessElement(ctx context.Context, rt *sdf.LockRTracker, req recipient.Request, emit func(recipient.Batch), events func(pushflow.DeliveryEvent), dead func(pushflow.DeadLetter)) (sdf.ProcessContinuation, error) {
	c := rt.GetRestriction().(Cursor)
	if c.Done || !rt.TryClaim(c.Pos) {
		return sdf.StopProcessing(), nil
	}
	r := req.Req
	first := !c.Started
	var units int64 // outcomes (events, dead letters) this call emitted
	events, dead = countUnits(events, &units), countUnits(dead, &units)
	// report tells the ledger what this call emitted, beyond what the
	// request was admitted with, and when the expansion is over.
	report := func(recipients int, done bool) error {
		if fn.Ledger == "" {
			return nil
		}
		delta := units + int64(recipients)
		final := false
		if first {
			base, f := ledger.InitialUnits(r)
			delta, final = delta-base, f
		}
		if delta == 0 && (final || !done) {
			return nil
		}
		// A list target was admitted final: its end is no news.
		_, err := fn.reg.LedgerProgress(ctx, fn.Ledger, []redisio.LedgerChange{{Key: ledger.RequestKey(r.ID), Delta: delta, Final: done && !final}})
		if err != nil {
			return fmt.Errorf("expand: %s: %w", r.ID, err)
		}
		return nil
	}
	if !c.Started {
		c.Started = true
		known, err := fn.appKnown(ctx, r.App)
		if err != nil {
			return nil, fmt.Errorf("expand: %s: %w", r.ID, err)
		}
		if !known {
			expandDrops.Inc(ctx, 1)
			deadLetters.Inc(ctx, 1)
			now := time.Now()
			raw, _ := json.Marshal(r)
			reason := fmt.Sprintf("app: unknown app %q (no device was ever registered for it)", r.App)
			dl := decode.NewDeadLetter(req.Source.Topic, req.Source.Partition, req.Source.Offset, raw, pushflow.StageValidate, reason, now)
			dl.RequestID = r.ID
			dead(dl)
			events(req.Event(now, "", "", "", pushflow.StageExpand, pushflow.OutcomeDropped, pushflow.ReasonUnknownApp))
			c.Done = true
			if err := report(0, true); err != nil {
				return nil, err
			}
			advance(rt, c)
			return sdf.StopProcessing(), nil
		}
	}
	b := &batcher{req: req, size: fn.BatchSize, emit: emit, buf: make([]recipient.Recipient, 0, fn.BatchSize), seq: c.Seq}
	drops := 0
	drop := func(userID, deviceID, reason string) {
		drops++
		events(req.Event(time.Now(), userID, deviceID, "", pushflow.StageExpand, pushflow.OutcomeDropped, reason))
	}
	// finish records the call's progress in rt, and the request's totals
	// when the audience is exhausted.
	finish := func(c Cursor, cont sdf.ProcessContinuation) (sdf.ProcessContinuation, error) {
		b.flush()
		c.Seq = b.seq
		c.Emitted += int64(b.total)
		c.Drops += int64(drops)
		expandedRecipients.Inc(ctx, int64(b.total))
		expandDrops.Inc(ctx, int64(drops))
		if c.Done {
			audienceSize.Update(ctx, c.Emitted)
			if c.Emitted == 0 && c.Drops == 0 {
				events(req.Event(time.Now(), "", "", "", pushflow.StageExpand, pushflow.OutcomeDropped, ReasonNoRecipients))
			}
		}
		if err := report(b.total, c.Done); err != nil {
			return nil, err
		}
		advance(rt, c)
		return cont, nil
	}
	switch k := r.Target.Kind(); k {
	case pushflow.TargetTags, pushflow.TargetBroadcast, pushflow.TargetFile:
		return fn.slice(ctx, c, req, k, b, drop, dead, finish)
	}
	c.Done = true
	switch r.Target.Kind() {
	case pushflow.TargetUsers:
		seen := make(map[string]bool, len(r.Target.Users))
		for _, u := range r.Target.Users {
			if !seen[u] {
				seen[u] = true
				b.add(recipient.Recipient{UserID: u})
			}
		}
	case pushflow.TargetDevices:
		if err := fn.devices(ctx, r.App, unique(r.Target.Devices), b, drop); err != nil {
			return nil, fmt.Errorf("expand: %s: %w", r.ID, err)
		}
	case pushflow.TargetAlias:
		byValue, err := fn.reg.AliasDevices(ctx, r.App, r.Target.Alias.Type, unique(r.Target.Alias.Values))
		if err != nil {
			return nil, fmt.Errorf("expand: %s: %w", r.ID, err)
		}
		var ids []string
		for _, v := range unique(r.Target.Alias.Values) {
			if len(byValue[v]) == 0 {
				drop("", "", pushflow.ReasonNoDevice)
			}
			ids = append(ids, byValue[v]...)
		}
		if err := fn.devices(ctx, r.App, unique(ids), b, drop); err != nil {
			return nil, fmt.Errorf("expand: %s: %w", r.ID, err)
		}
	default:
		drop("", "", pushflow.ReasonUnsupported)
	}
	return finish(c, sdf.StopProcessing())
}

// slice reads one slice of a large audience from c: at most SliceMax
// recipients (fewer under backpressure) or SliceTime, then checkpoints.
func (fn *expandFn) slice(ctx context.Context, c Cursor, req recipient.Request, kind string, b *batcher, drop func(userID, deviceID, reason string), dead func(pushflow.DeadLetter), finish func(Cursor, sdf.ProcessContinuation) (sdf.ProcessContinuation, error)) (sdf.ProcessContinuation, error) {
	r := req.Req
	expandSlices.Inc(ctx, 1)
	limit := int64(fn.SliceMax)
	resume := sdf.ResumeProcessingIn(0)
	if fn.MaxPending > 0 {
		pending, newest, err := fn.reg.BacklogAt(ctx, fn.Lane, r.Campaign, fn.Shards)
		if err != nil {
			return nil, fmt.Errorf("expand: %s: %w", r.ID, err)
		}
		if c.LastN > 0 && newest < c.LastAt && time.Since(time.Unix(0, c.LastAt)) < inTransitFor {
			// The previous slice has not reached the pacer yet (a busy
			// runner can take seconds): count it as pending, or slices
			// would pile up faster than the reports can see them.
			pending += c.LastN
			inTransit.Inc(ctx, 1)
		}
		pacedBacklog.Update(ctx, pending)
		if pending >= fn.MaxPending {
			expandPaused.Inc(ctx, 1)
			return finish(c, sdf.ResumeProcessingIn(fn.Poll))
		}
		if room := fn.MaxPending - pending; room <= limit {
			// The slice fills the campaign's room: look again after
			// Poll, by when the pacer has reported what it received.
			limit, resume = room, sdf.ResumeProcessingIn(fn.Poll)
		}
	}
	deadline := time.Now().Add(fn.SliceTime)
	more := func() bool { return int64(b.total) < limit && time.Now().Before(deadline) }
	var err error
	switch kind {
	case pushflow.TargetFile:
		invalid := c.Invalid
		bad := readFile(fn.AudienceRoots, r.Target.File, &c, fn.ScanCount, b, more)
		invalidLines.Inc(ctx, c.Invalid-invalid)
		var refused *refusedError
		switch {
		case errors.As(bad, &refused):
			// Like an unknown app: a request to fix upstream, so it is
			// dead-lettered as well as recorded.
			slog.WarnContext(ctx, "expand: audience file refused", "request", r.ID, "err", bad)
			deadLetters.Inc(ctx, 1)
			raw, _ := json.Marshal(r)
			dl := decode.NewDeadLetter(req.Source.Topic, req.Source.Partition, req.Source.Offset, raw, pushflow.StageValidate, refused.Error(), time.Now())
			dl.RequestID = r.ID
			dead(dl)
			drop("", "", ReasonFileRefused)
		case bad != nil:
			// A file we cannot read is the request's outcome, not a
			// pipeline failure: retrying the bundle would not help.
			slog.WarnContext(ctx, "expand: audience file", "request", r.ID, "err", bad)
			drop("", "", "file_error: "+bad.Error())
		}
		if c.Done && c.Invalid > 0 {
			// Once per request, at its end; the lines are never repeated.
			slog.WarnContext(ctx, "expand: audience file has lines that are not user ids; skipped them", "request", r.ID,
				"skipped", c.Invalid, "first_line", c.FirstInvalid, "first_problem", c.InvalidProblem)
			drop("", "", ReasonInvalidAudienceLine)
		}
	case pushflow.TargetTags:
		c.Pos, c.Done, err = fn.tags(ctx, r, c.Pos, b, more)
	default: // broadcast
		c.Pos, c.Done, err = fn.scan(ctx, c.Pos, func(cur uint64) ([]string, uint64, error) {
			return fn.reg.ScanUsers(ctx, r.App, cur, fn.ScanCount)
		}, func(users []string) error {
			for _, u := range users {
				b.add(recipient.Recipient{UserID: u})
			}
			return nil
		}, more)
	}
	if err != nil {
		return nil, fmt.Errorf("expand: %s: %w", r.ID, err)
	}
	if b.total > 0 {
		b.flush()
		c.LastAt, c.LastN = b.last, int64(b.total)
	}
	if c.Done {
		return finish(c, sdf.StopProcessing())
	}
	return finish(c, resume)
}

// inTransitFor is how long a slice counts as in transit at most: one whose
// last batch the filter dropped whole never reaches the pacer.
const inTransitFor = 10 * time.Second

// devices resolves device ids to recipients; unknown ids are dropped.
func (fn *expandFn) devices(ctx context.Context, app string, ids []string, b *batcher, drop func(userID, deviceID, reason string)) error {
	for start := 0; start < len(ids); start += fn.BatchSize {
		chunk := ids[start:min(start+fn.BatchSize, len(ids))]
		devs, err := fn.reg.Devices(ctx, app, chunk)
		if err != nil {
			return err
		}
		for _, id := range chunk {
			d, ok := devs[id]
			if !ok {
				drop("", id, pushflow.ReasonNoDevice)
				continue
			}
			b.add(recipient.Recipient{UserID: d.UserID, DeviceID: id})
		}
	}
	return nil
}

// tags expands a tag expression. An expression whose every match must carry
// one tag (a lone tag, or an AND with a positive tag) scans that tag's
// members; any other expression scans the app's users. Each scanned page is
// checked against the users' tags in one pipelined read.
func (fn *expandFn) tags(ctx context.Context, r pushflow.PushRequest, from uint64, b *batcher, more func() bool) (next uint64, done bool, err error) {
	expr, err := pushflow.ParseTagExpr(r.Target.Tags)
	if err != nil {
		return 0, true, err // validated at decode; unreachable for decoded requests
	}
	page := func(cur uint64) ([]string, uint64, error) { return fn.reg.ScanUsers(ctx, r.App, cur, fn.ScanCount) }
	if tag, ok := expr.RequiredTag(); ok {
		page = func(cur uint64) ([]string, uint64, error) { return fn.reg.ScanTag(ctx, r.App, tag, cur, fn.ScanCount) }
	}
	return fn.scan(ctx, from, page, func(users []string) error {
		tags, err := fn.reg.UserTags(ctx, r.App, users)
		if err != nil {
			return err
		}
		for _, u := range users {
			has := tags[u]
			if expr.Eval(func(t string) bool { return has[t] }) {
				b.add(recipient.Recipient{UserID: u})
			}
		}
		return nil
	}, more)
}

// scan walks a cursor from cur, page by page, while more allows, and
// returns where it stopped (done when the cursor came back to 0). Redis
// cursors may return a member more than once (when the set is resized
// during the scan); seen drops repeats within a slice, and send's dedup
// claim catches one across slices. seen grows with the slice, not the
// audience.
func (fn *expandFn) scan(ctx context.Context, cur uint64, page func(uint64) ([]string, uint64, error), each func([]string) error, more func() bool) (next uint64, done bool, err error) {
	seen := make(map[string]struct{})
	for {
		users, next, err := page(cur)
		if err != nil {
			return cur, false, err
		}
		fresh := users[:0]
		for _, u := range users {
			if _, dup := seen[u]; !dup {
				seen[u] = struct{}{}
				fresh = append(fresh, u)
			}
		}
		if len(fresh) > 0 {
			if err := each(fresh); err != nil {
				return cur, false, err
			}
		}
		if next == 0 {
			return 0, true, ctx.Err()
		}
		cur = next
		if err := ctx.Err(); err != nil || !more() {
			return cur, false, err
		}
	}
}

// countUnits wraps emit so that every element it emits adds one to *n.
func countUnits[T any](emit func(T), n *int64) func(T) {
	return func(v T) {
		*n++
		emit(v)
	}
}

func unique(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
