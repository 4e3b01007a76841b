// Package enrich resolves recipients to their devices and provider tokens
// from the Redis device registry. Batches are buffered across requests within
// a bundle and resolved together: one pipelined read per app for the users,
// one per app for the device ids, per flush. A user with no registered
// device, or a device without a token, leaves as a "dropped" DeliveryEvent at
// stage "enrich".
package enrich

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn5x1[context.Context, beam.EventTime, recipient.Batch, func(beam.EventTime, recipient.Batch), func(beam.EventTime, pushflow.DeliveryEvent), error](&tokensFn{})
	register.Emitter2[beam.EventTime, recipient.Batch]()
	register.Emitter2[beam.EventTime, pushflow.DeliveryEvent]()
}

// DefaultFlushRecipients is Config.FlushRecipients when it is 0.
const DefaultFlushRecipients = recipient.DefaultFlushRecipients

// Config configures TokensWith.
type Config struct {
	// RedisAddr is the device registry's address. Required.
	RedisAddr string
	// FlushRecipients is how many recipients, summed over the buffered
	// batches of a bundle, trigger a flush: the Redis reads of all buffered
	// batches are done together, and the end of the bundle flushes the rest.
	// 0 means DefaultFlushRecipients (1000); 1 or a negative value resolves
	// each batch on its own.
	FlushRecipients int
	// Ledger is the name of the dispatch ledger (see package ledger) that
	// counts a user with several devices as several units; "" = none.
	Ledger string
}

// Tokens enriches PCollection<recipient.Batch> of users (or of devices whose
// owner is known) into PCollection<recipient.Batch> of devices with tokens,
// and PCollection<pushflow.DeliveryEvent> of recipients with no device. It is
// TokensWith with the default flush size.
func Tokens(s beam.Scope, batches beam.PCollection, redisAddr string) (enriched, events beam.PCollection) {
	return tokens(s, batches, Config{RedisAddr: redisAddr}, "enrich.Tokens")
}

// TokensWith is Tokens with a Config: PCollection<recipient.Batch> in,
// PCollection<recipient.Batch> of devices with tokens and
// PCollection<pushflow.DeliveryEvent> of dropped recipients out.
func TokensWith(s beam.Scope, batches beam.PCollection, cfg Config) (enriched, events beam.PCollection) {
	return tokens(s, batches, cfg, "enrich.TokensWith")
}

func tokens(s beam.Scope, batches beam.PCollection, cfg Config, name string) (enriched, events beam.PCollection) {
	// Both constructors build the same step, under the same scope name.
	s = s.Scope("enrich.Tokens")
	if cfg.RedisAddr == "" {
		panic(name + ": RedisAddr is required")
	}
	return beam.ParDo2(s, &tokensFn{RedisAddr: cfg.RedisAddr, FlushRecipients: recipient.FlushAt(cfg.FlushRecipients), Ledger: cfg.Ledger}, batches)
}

var (
	enrichedDevices = beam.NewCounter("pushflow", "enrich_devices")
	enrichDrops     = beam.NewCounter("pushflow", "enrich_dropped")
)

// tokensFn buffers batches and resolves them in flushes. Everything it emits
// carries the timestamp of the batch it came from.
type tokensFn struct {
	RedisAddr string
	// FlushRecipients is how many buffered recipients trigger a flush; 0 or
	// 1 flushes after every batch.
	FlushRecipients int
	// Ledger names the dispatch ledger; "" = none.
	Ledger string

	reg *redisio.Registry
	buf recipient.Buffer
}

func (fn *tokensFn) Setup() {
	fn.reg = redisio.Open(fn.RedisAddr)
}

func (fn *tokensFn) Teardown() {
	fn.reg.Close()
}

// StartBundle drops whatever a failed bundle left behind: nothing survives
// between bundles.
func (fn *tokensFn) StartBundle(_ context.Context, _ func(beam.EventTime, recipient.Batch), _ func(beam.EventTime, pushflow.DeliveryEvent)) {
	fn.buf.Reset()
}

func (fn *tokensFn) ProcessElement(ctx context.Context, ts beam.EventTime, b recipient.Batch, emit func(beam.EventTime, recipient.Batch), events func(beam.EventTime, pushflow.DeliveryEvent)) error {
	if fn.buf.Add(ts, b, fn.FlushRecipients) {
		return fn.flush(ctx, emit, events)
	}
	return nil
}

func (fn *tokensFn) FinishBundle(ctx context.Context, emit func(beam.EventTime, recipient.Batch), events func(beam.EventTime, pushflow.DeliveryEvent)) error {
	return fn.flush(ctx, emit, events)
}

// appReads are the distinct reads of one app's buffered batches, and then
// their results.
type appReads struct {
	users, deviceIDs []string
	seenUser, seenID map[string]bool
	// reqsUsers and reqsIDs are the requests reading users and device ids,
	// for errors.
	reqsUsers, reqsIDs []string

	byUser map[string][]redisio.Device
	byID   map[string]redisio.Device
}

// flush resolves every buffered batch with one UserDevices and one Devices
// call per app (each one pipelined round trip), then emits each batch's
// events and enriched batch in arrival order, as if resolved alone. The
// buffer is empty afterwards, whether or not the flush failed.
func (fn *tokensFn) flush(ctx context.Context, emit func(beam.EventTime, recipient.Batch), events func(beam.EventTime, pushflow.DeliveryEvent)) error {
	defer fn.buf.Reset()
	if len(fn.buf.Items) == 0 {
		return nil
	}
	reads := make(map[string]*appReads)
	var apps []string // in arrival order, for a deterministic call order
	for _, p := range fn.buf.Items {
		app := p.Batch.Request.Req.App
		ar := reads[app]
		if ar == nil {
			ar = &appReads{seenUser: map[string]bool{}, seenID: map[string]bool{}}
			reads[app] = ar
			apps = append(apps, app)
		}
		var hasUsers, hasIDs bool
		for _, r := range p.Batch.Recipients {
			if r.DeviceID != "" {
				hasIDs = true
				if !ar.seenID[r.DeviceID] {
					ar.seenID[r.DeviceID] = true
					ar.deviceIDs = append(ar.deviceIDs, r.DeviceID)
				}
			} else {
				hasUsers = true
				if !ar.seenUser[r.UserID] {
					ar.seenUser[r.UserID] = true
					ar.users = append(ar.users, r.UserID)
				}
			}
		}
		if hasUsers {
			ar.reqsUsers = append(ar.reqsUsers, p.Batch.Request.Req.ID)
		}
		if hasIDs {
			ar.reqsIDs = append(ar.reqsIDs, p.Batch.Request.Req.ID)
		}
	}
	for _, app := range apps {
		ar := reads[app]
		var err error
		if len(ar.users) > 0 {
			if ar.byUser, err = fn.reg.UserDevices(ctx, app, ar.users); err != nil {
				return fmt.Errorf("enrich: %s: %w", recipient.RequestIDs(ar.reqsUsers), err)
			}
		}
		if len(ar.deviceIDs) > 0 {
			if ar.byID, err = fn.reg.Devices(ctx, app, ar.deviceIDs); err != nil {
				return fmt.Errorf("enrich: %s: %w", recipient.RequestIDs(ar.reqsIDs), err)
			}
		}
	}
	now := time.Now()
	type resolved struct {
		drops []pushflow.DeliveryEvent
		out   []recipient.Recipient
	}
	results := make([]resolved, len(fn.buf.Items))
	var changes []redisio.LedgerChange
	for i, p := range fn.buf.Items {
		ar := reads[p.Batch.Request.Req.App]
		drops, out := resolve(ctx, now, p.Batch, ar.byUser, ar.byID)
		results[i] = resolved{drops, out}
		// A user with several devices becomes several units of work:
		// count them in the ledger before they can be written.
		if d := int64(len(drops) + len(out) - len(p.Batch.Recipients)); d != 0 && fn.Ledger != "" {
			changes = append(changes, redisio.LedgerChange{Key: ledgerKey(p.Batch.Request.Req.ID), Delta: d})
		}
	}
	if len(changes) > 0 {
		if _, err := fn.reg.LedgerProgress(ctx, fn.Ledger, changes); err != nil {
			return fmt.Errorf("enrich: %w", err)
		}
	}
	for i, p := range fn.buf.Items {
		for _, ev := range results[i].drops {
			events(p.TS, ev)
		}
		if len(results[i].out) > 0 {
			emit(p.TS, p.Batch.With(results[i].out))
		}
	}
	return nil
}

// ledgerKey is ledger.RequestKey (ledger imports this package's users).
func ledgerKey(id string) string { return "r:" + id }

// resolve returns b's dropped recipients as events and b's devices; byUser
// and byID hold the devices read for b's app.
func resolve(ctx context.Context, now time.Time, b recipient.Batch, byUser map[string][]redisio.Device, byID map[string]redisio.Device) (drops []pushflow.DeliveryEvent, out []recipient.Recipient) {
	out = make([]recipient.Recipient, 0, len(b.Recipients))
	drop := func(r recipient.Recipient, reason string) {
		enrichDrops.Inc(ctx, 1)
		drops = append(drops, b.Event(now, r, pushflow.StageEnrich, pushflow.OutcomeDropped, reason))
	}
	add := func(r recipient.Recipient, d redisio.Device) {
		// A device that changed owner since expansion belongs to its new
		// owner: record the event under the user who holds the token.
		if d.UserID != "" {
			r.UserID = d.UserID
		}
		r.DeviceID, r.Platform, r.Token, r.Topic = d.ID, d.Platform, d.Token, d.Topic
		if d.Token == "" {
			drop(r, pushflow.ReasonNoToken)
			return
		}
		out = append(out, r)
	}
	for _, r := range b.Recipients {
		if r.DeviceID != "" {
			d, ok := byID[r.DeviceID]
			if !ok { // unregistered between expansion and now
				drop(r, pushflow.ReasonNoDevice)
				continue
			}
			add(r, d)
			continue
		}
		devs := byUser[r.UserID]
		if len(devs) == 0 {
			drop(r, pushflow.ReasonNoDevice)
			continue
		}
		for _, d := range devs {
			add(r, d)
		}
	}
	enrichedDevices.Inc(ctx, int64(len(out)))
	return drops, out
}
