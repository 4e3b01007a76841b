// Package expand turns each request's target (users, devices, alias, tag
// expression, broadcast, file) into batches of recipients. Large audiences
// (broadcast, tags, files) are read with cursors and emitted batch by batch,
// so memory per request is bounded by the batch size, not the audience.
package expand

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/decode"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn5x1[context.Context, recipient.Request, func(recipient.Batch), func(pushflow.DeliveryEvent), func(pushflow.DeadLetter), error](&expandFn{})
	register.Emitter1[recipient.Batch]()
}

// Config configures Targets.
type Config struct {
	RedisAddr string
	// BatchSize is the most recipients per emitted batch. Default 500.
	BatchSize int
	// ScanCount is the COUNT hint of cursor scans over tag and broadcast
	// audiences. Default 1000.
	ScanCount int64
}

// Targets expands PCollection<recipient.Request> into PCollection<recipient.Batch>,
// PCollection<pushflow.DeliveryEvent> (stage "expand": devices or aliases
// that do not exist, files that cannot be read, requests whose audience is
// empty, and requests for unknown apps) and PCollection<pushflow.DeadLetter>
// (a request for an app the registry has never seen: almost always a typo
// upstream, so it is dead-lettered as well as recorded).
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
	return beam.ParDo3(s, &expandFn{RedisAddr: cfg.RedisAddr, BatchSize: cfg.BatchSize, ScanCount: cfg.ScanCount}, reqs)
}

var (
	expandedRecipients = beam.NewCounter("pushflow", "expand_recipients")
	expandDrops        = beam.NewCounter("pushflow", "expand_dropped")
	audienceSize       = beam.NewDistribution("pushflow", "expand_audience_size")
	deadLetters        = beam.NewCounter("pushflow", "dead_letters")
)

// ReasonNoRecipients is the reason of a request whose audience was empty.
const ReasonNoRecipients = "no_recipients"

type expandFn struct {
	RedisAddr string
	BatchSize int
	ScanCount int64

	reg *redisio.Registry
}

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
	b.emit(recipient.Batch{Request: b.req, Recipients: b.buf, Seq: b.seq})
	b.seq++
	b.buf = make([]recipient.Recipient, 0, b.size)
}

func (fn *expandFn) ProcessElement(ctx context.Context, req recipient.Request, emit func(recipient.Batch), events func(pushflow.DeliveryEvent), dead func(pushflow.DeadLetter)) error {
	b := &batcher{req: req, size: fn.BatchSize, emit: emit, buf: make([]recipient.Recipient, 0, fn.BatchSize)}
	drops := 0
	drop := func(userID, deviceID, reason string) {
		drops++
		events(req.Event(time.Now(), userID, deviceID, "", pushflow.StageExpand, pushflow.OutcomeDropped, reason))
	}
	r := req.Req
	known, err := fn.reg.AppKnown(ctx, r.App)
	if err != nil {
		return fmt.Errorf("expand: %s: %w", r.ID, err)
	}
	if !known {
		expandDrops.Inc(ctx, 1)
		deadLetters.Inc(ctx, 1)
		now := time.Now()
		raw, _ := json.Marshal(r)
		reason := fmt.Sprintf("app: unknown app %q (no device was ever registered for it)", r.App)
		dead(decode.NewDeadLetter(req.Source.Topic, req.Source.Partition, req.Source.Offset, raw, pushflow.StageValidate, reason, now))
		events(req.Event(now, "", "", "", pushflow.StageExpand, pushflow.OutcomeDropped, pushflow.ReasonUnknownApp))
		return nil
	}
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
			return fmt.Errorf("expand: %s: %w", r.ID, err)
		}
	case pushflow.TargetAlias:
		byValue, err := fn.reg.AliasDevices(ctx, r.App, r.Target.Alias.Type, unique(r.Target.Alias.Values))
		if err != nil {
			return fmt.Errorf("expand: %s: %w", r.ID, err)
		}
		var ids []string
		for _, v := range unique(r.Target.Alias.Values) {
			if len(byValue[v]) == 0 {
				drop("", "", pushflow.ReasonNoDevice)
			}
			ids = append(ids, byValue[v]...)
		}
		if err := fn.devices(ctx, r.App, unique(ids), b, drop); err != nil {
			return fmt.Errorf("expand: %s: %w", r.ID, err)
		}
	case pushflow.TargetTags:
		if err := fn.tags(ctx, r, b); err != nil {
			return fmt.Errorf("expand: %s: %w", r.ID, err)
		}
	case pushflow.TargetBroadcast:
		if err := fn.scan(ctx, func(cur uint64) ([]string, uint64, error) {
			return fn.reg.ScanUsers(ctx, r.App, cur, fn.ScanCount)
		}, func(users []string) error {
			for _, u := range users {
				b.add(recipient.Recipient{UserID: u})
			}
			return nil
		}); err != nil {
			return fmt.Errorf("expand: %s: %w", r.ID, err)
		}
	case pushflow.TargetFile:
		if err := readFile(r.Target.File, b); err != nil {
			// A file we cannot read is the request's outcome, not a
			// pipeline failure: retrying the bundle would not help.
			slog.WarnContext(ctx, "expand: audience file", "request", r.ID, "err", err)
			drop("", "", "file_error: "+err.Error())
		}
	default:
		drop("", "", pushflow.ReasonUnsupported)
	}
	b.flush()
	expandedRecipients.Inc(ctx, int64(b.total))
	expandDrops.Inc(ctx, int64(drops))
	audienceSize.Update(ctx, int64(b.total))
	if b.total == 0 && drops == 0 {
		events(req.Event(time.Now(), "", "", "", pushflow.StageExpand, pushflow.OutcomeDropped, ReasonNoRecipients))
	}
	return nil
}

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
func (fn *expandFn) tags(ctx context.Context, r pushflow.PushRequest, b *batcher) error {
	expr, err := pushflow.ParseTagExpr(r.Target.Tags)
	if err != nil {
		return err // validated at decode; unreachable for decoded requests
	}
	page := func(cur uint64) ([]string, uint64, error) { return fn.reg.ScanUsers(ctx, r.App, cur, fn.ScanCount) }
	if tag, ok := expr.RequiredTag(); ok {
		page = func(cur uint64) ([]string, uint64, error) { return fn.reg.ScanTag(ctx, r.App, tag, cur, fn.ScanCount) }
	}
	return fn.scan(ctx, page, func(users []string) error {
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
	})
}

// scan walks a cursor until it returns 0. Redis cursors may return a member
// more than once; seen keeps each once per request. seen grows with the
// audience (a few dozen bytes per user); a bloom filter is the next step for
// 100M-user apps.
func (fn *expandFn) scan(ctx context.Context, page func(uint64) ([]string, uint64, error), each func([]string) error) error {
	seen := make(map[string]struct{})
	var cur uint64
	for {
		users, next, err := page(cur)
		if err != nil {
			return err
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
				return err
			}
		}
		if next == 0 {
			return ctx.Err()
		}
		cur = next
	}
}

// readFile reads one user id per line from a local path or file:// URI.
func readFile(uri string, b *batcher) error {
	path := strings.TrimPrefix(uri, "file://")
	if strings.Contains(path, "://") {
		return fmt.Errorf("unsupported scheme in %q (local paths and file:// only)", uri)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	seen := make(map[string]struct{})
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		u := strings.TrimSpace(sc.Text())
		if u == "" || strings.HasPrefix(u, "#") {
			continue
		}
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		b.add(recipient.Recipient{UserID: u})
	}
	return sc.Err()
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
