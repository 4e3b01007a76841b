// Package send delivers batches of enriched recipients to the push providers
// and turns every device into exactly one DeliveryEvent: sent (with the
// provider's id), failed (with the provider's reason) or dropped (expired,
// duplicate). iOS devices go to APNs through apnsio, Android devices to FCM
// (HTTP v1) through fcmio; when no FCM project is configured, Android
// devices fail with reason "no_provider" rather than disappear.
//
// Each (request, device) pair is claimed in Redis before it is sent, and
// the provider's answer is recorded in the claim before the event is
// emitted. A claim by the same Kafka record with a recorded outcome means
// this is a replay (after a crash, a retried bundle, a restart): the
// recorded event is emitted again and nothing is sent; a claim by the same
// record without one (the crash came between the send and the recording)
// is sent again, the only duplicate sends. A claim by another record means
// the request was submitted twice, and the second copy is dropped as
// "duplicate".
//
// Transient failures that outlast the clients' in-call retries go to the
// retry lane (Retries, retry.go), and a circuit breaker per provider and
// app holds devices there while the provider is down.
//
// Batches are sent together across requests: the DoFn buffers a bundle's
// batches up to Config.FlushRecipients recipients, then claims all their
// devices in one Redis round trip and sends them in one concurrent fan-out
// per provider, so a backlog of one-recipient requests does not pay two
// round trips per request in turn. Each batch's events carry the batch's
// timestamp and come out in the order the batches came in.
package send

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/fcmio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn5x1[context.Context, beam.EventTime, recipient.Batch, func(beam.EventTime, pushflow.DeliveryEvent), func(beam.EventTime, recipient.Batch), error](&sendFn{})
	register.Emitter2[beam.EventTime, pushflow.DeliveryEvent]()
	register.Emitter2[beam.EventTime, recipient.Batch]()
}

// Config configures Notifications.
type Config struct {
	RedisAddr string
	APNs      apnsio.Config
	// FCM is used when FCMEnabled; otherwise Android devices fail with
	// "no_provider".
	FCM        fcmio.Config
	FCMEnabled bool
	// FlushRecipients is how many recipients send buffers, across the
	// batches (requests) of a bundle, before it claims and sends them
	// together: one Redis round trip for all their claims and one
	// concurrent send per provider (default DefaultFlushRecipients when 0;
	// 1 or negative sends each batch on its own). What is left is sent
	// when the bundle finishes.
	FlushRecipients int
	// RetryHorizon is how long after its request time a notification
	// without a ttl is still retried after transient failures (default
	// DefaultRetryHorizon); with a ttl, the ttl is the horizon.
	RetryHorizon time.Duration
	// RetryMaxAttempts bounds the provider attempts per device over all its
	// retries (default DefaultRetryMaxAttempts).
	RetryMaxAttempts int
	// BreakerThreshold consecutive transient failures of one provider for
	// one app open its circuit breaker for BreakerCooldown (doubling while
	// probes fail): its devices wait in the retry lane instead of being
	// sent (defaults: those of package breaker).
	BreakerThreshold int
	BreakerCooldown  time.Duration
}

// Defaults of Config's retry fields.
const (
	DefaultRetryHorizon     = 10 * time.Minute
	DefaultRetryMaxAttempts = 40
)

// DefaultFlushRecipients is the default Config.FlushRecipients.
const DefaultFlushRecipients = recipient.DefaultFlushRecipients

// Notifications sends PCollection<recipient.Batch> (devices with tokens) and
// returns PCollection<pushflow.DeliveryEvent>, one per device.
func Notifications(s beam.Scope, batches beam.PCollection, cfg Config) beam.PCollection {
	s = s.Scope("send.Notifications")
	if cfg.RedisAddr == "" {
		panic("send.Notifications: RedisAddr is required")
	}
	if err := cfg.APNs.Validate(); err != nil {
		panic(fmt.Sprintf("send.Notifications: %v", err))
	}
	if cfg.FCMEnabled {
		if err := cfg.FCM.Validate(); err != nil {
			panic(fmt.Sprintf("send.Notifications: %v", err))
		}
	}
	events, retries := beam.ParDo2(s, &sendFn{Cfg: cfg}, batches)
	return beam.Flatten(s, events, Retries(s, retries, cfg))
}

var (
	sentCount     = beam.NewCounter("pushflow", "send_sent")
	failedCount   = beam.NewCounter("pushflow", "send_failed")
	droppedCount  = beam.NewCounter("pushflow", "send_dropped")
	tokensRemoved = beam.NewCounter("pushflow", "send_tokens_removed")
	sendLatency   = beam.NewDistribution("pushflow", "send_latency_ms")
	// replayedOutcomes counts devices whose outcome an earlier run had
	// recorded: re-emitted, not sent again.
	replayedOutcomes = beam.NewCounter("pushflow", "send_replayed_outcomes")
	requestAge       = beam.NewDistribution("pushflow", "request_to_send_ms")
	retried          = beam.NewCounter("pushflow", "send_retried")      // devices sent to the retry lane after a transient failure
	breakerHeld      = beam.NewCounter("pushflow", "send_breaker_held") // devices not sent because their provider's breaker was open
	breakerOpened    = beam.NewCounter("pushflow", "send_breaker_opened")
)

type sendFn struct {
	Cfg Config

	sender
	buf recipient.Buffer // the bundle's batches not sent yet
}

func (fn *sendFn) Setup() error { return fn.setup(fn.Cfg) }

// StartBundle starts with an empty buffer, also after a failed bundle.
func (fn *sendFn) StartBundle(context.Context, func(beam.EventTime, pushflow.DeliveryEvent), func(beam.EventTime, recipient.Batch)) {
	fn.buf.Reset()
}

func (fn *sendFn) Teardown() { fn.teardown() }

// Expired reports whether a request's TTL has passed at now.
func Expired(r recipient.Request, now time.Time) bool {
	return r.Req.TTLSeconds > 0 && now.After(r.RequestTime().Add(time.Duration(r.Req.TTLSeconds)*time.Second))
}

// DedupKey names the claim of one (request, device).
func DedupKey(requestID, deviceID string) string { return requestID + "|" + deviceID }

// ProcessElement buffers b with its timestamp and flushes the buffer once
// it holds Config.FlushRecipients recipients.
func (fn *sendFn) ProcessElement(ctx context.Context, ts beam.EventTime, b recipient.Batch, emit func(beam.EventTime, pushflow.DeliveryEvent), retry func(beam.EventTime, recipient.Batch)) error {
	if fn.buf.Add(ts, b, recipient.FlushAt(fn.Cfg.FlushRecipients)) {
		return fn.flush(ctx, emit, retry)
	}
	return nil
}

// FinishBundle flushes what the bundle left in the buffer.
func (fn *sendFn) FinishBundle(ctx context.Context, emit func(beam.EventTime, pushflow.DeliveryEvent), retry func(beam.EventTime, recipient.Batch)) error {
	return fn.flush(ctx, emit, retry)
}

func (fn *sendFn) flush(ctx context.Context, emit func(beam.EventTime, pushflow.DeliveryEvent), retry func(beam.EventTime, recipient.Batch)) error {
	defer fn.buf.Reset()
	return fn.send(ctx, fn.buf.Items, emit, retry)
}

// plan is what a flush does with one buffered batch: the events it decided
// before sending (expired, duplicate, no_provider), in the order it decided
// them, and its messages' ranges in the flush's APNs and FCM sends.
type plan struct {
	early []pushflow.DeliveryEvent
	// wait are devices whose provider's breaker is open, until waitUntil
	// (unix ns); again are devices to send again later (transient failures).
	wait, again      []recipient.Recipient
	waitUntil        int64
	againAfter       time.Duration
	attempts         int // the most attempts of a device in again
	iosFrom, iosTo   int
	fcmFrom, fcmTo   int
	claimed, expired bool
}

// flush sends every buffered batch: expired batches are dropped; the
// devices of all the others are claimed in one Redis round trip (each
// against its own batch's Kafka record); then one APNs send over all iOS
// messages and one FCM send over all Android messages run at once, each
// fanning out up to its client's concurrency. Events are emitted per batch
// in arrival order, each batch's in the order a batch alone gives them:
// expired, or duplicate and no_provider as found, then APNs results, then
// FCM results.
//
// Devices whose provider failed transiently (429, 5xx, timeouts), or whose
// provider's breaker is open, go to retry with the time of their next
// attempt, until their request's ttl (or Config.RetryHorizon) or
// Config.RetryMaxAttempts is spent; then they fail with the provider's
// reason.
func (fn *sender) send(ctx context.Context, buf []recipient.Buffered, emit func(beam.EventTime, pushflow.DeliveryEvent), retry func(beam.EventTime, recipient.Batch)) error {
	if len(buf) == 0 {
		return nil
	}
	now := time.Now()

	plans := make([]plan, len(buf))
	var keys, owners []string
	for i, p := range buf {
		req := p.Batch.Request
		if Expired(req, now) {
			plans[i].expired = true
			continue
		}
		plans[i].claimed = len(p.Batch.Recipients) > 0
		src := req.Source.String()
		for _, r := range p.Batch.Recipients {
			keys = append(keys, DedupKey(req.Req.ID, r.DeviceID))
			owners = append(owners, src)
		}
	}
	claims, err := fn.reg.ClaimEach(ctx, keys, owners)
	if err != nil {
		return fmt.Errorf("send: %s: %w", claimedIDs(buf, plans), err)
	}

	var ios, android []recipient.Recipient
	var apnsMsgs []apnsio.Message
	var fcmMsgs []fcmio.Message
	next := 0 // the next claim
	// The same (request, device) of the same record twice in one flush (a
	// replay caught up with its original): sent once, both get its event.
	sending := map[string]bool{}
	var twins []twin
	for i, p := range buf {
		b, pl := p.Batch, &plans[i]
		req := b.Request
		drop := func(r recipient.Recipient, reason string) {
			droppedCount.Inc(ctx, 1)
			pl.early = append(pl.early, b.Event(now, r, pushflow.StageSend, pushflow.OutcomeDropped, reason))
		}
		if pl.expired {
			for _, r := range b.Recipients {
				drop(r, pushflow.ReasonExpired)
			}
			continue
		}
		var expiration time.Time
		var ttl time.Duration
		if req.Req.TTLSeconds > 0 {
			ttl = time.Duration(req.Req.TTLSeconds) * time.Second
			expiration = req.RequestTime().Add(ttl)
		}
		src := req.Source.String()
		pl.iosFrom, pl.fcmFrom = len(apnsMsgs), len(fcmMsgs)
		for _, r := range b.Recipients {
			owner, rec := parseClaim(claims[next])
			next++
			if owner != src {
				drop(r, pushflow.ReasonDuplicate)
				continue
			}
			if rec != nil {
				// Sent (or failed for good) by an earlier run of this very
				// record: emit what was recorded, never send it again.
				replayedOutcomes.Inc(ctx, 1)
				pl.early = append(pl.early, rec.event(b, r))
				continue
			}
			if k := DedupKey(req.Req.ID, r.DeviceID); sending[k] {
				twins = append(twins, twin{batch: i, key: k, r: r})
				continue
			} else {
				sending[k] = true
			}
			if ok, at := fn.allow(r.Platform, req.Req.App); !ok {
				pl.wait = append(pl.wait, r)
				pl.waitUntil = max(pl.waitUntil, at.UnixNano())
				continue
			}
			switch {
			case r.Platform == pushflow.PlatformIOS:
				topic := r.Topic
				if topic == "" {
					topic = req.Req.App
				}
				ios = append(ios, r)
				apnsMsgs = append(apnsMsgs, apnsio.Message{
					Token:        r.Token,
					Topic:        topic,
					Notification: req.Req.Notification,
					Priority:     req.Req.Priority,
					Expiration:   expiration,
				})
			case r.Platform == pushflow.PlatformAndroid && fn.fcm != nil:
				android = append(android, r)
				// The remaining TTL, so a message that waited in a bulk lane
				// does not outlive its request.
				var remaining time.Duration
				if ttl > 0 {
					remaining = max(time.Until(expiration), time.Second)
				}
				fcmMsgs = append(fcmMsgs, fcmio.Message{
					Token:        r.Token,
					Notification: req.Req.Notification,
					Priority:     req.Req.Priority,
					TTL:          remaining,
				})
			default:
				failedCount.Inc(ctx, 1)
				pl.early = append(pl.early, b.Event(now, r, pushflow.StageSend, pushflow.OutcomeFailed, pushflow.ReasonNoProvider))
			}
		}
		pl.iosTo, pl.fcmTo = len(apnsMsgs), len(fcmMsgs)
	}

	// Both providers at once: a flush takes as long as its slower half.
	// Only the sends run on other goroutines; metrics, token cleanups and
	// emits stay on the bundle's.
	var apnsResults []apnsio.Result
	var fcmResults []fcmio.Result
	var wg sync.WaitGroup
	if len(apnsMsgs) > 0 {
		wg.Go(func() { apnsResults = fn.apns.Send(ctx, apnsMsgs) })
	}
	if len(fcmMsgs) > 0 {
		wg.Go(func() { fcmResults = fn.fcm.Send(ctx, fcmMsgs) })
	}
	wg.Wait()
	done := time.Now()

	sent := make([][]pushflow.DeliveryEvent, len(buf))
	var recKeys, recVals []string
	byKey := map[string]pushflow.DeliveryEvent{}
	for i, p := range buf {
		pl := &plans[i]
		src := p.Batch.Request.Source.String()
		add := func(r recipient.Recipient, o outcome) {
			fn.recordHealth(r.Platform, p.Batch.Request.Req.App, !o.retryable)
			if o.retryable {
				if wait, ok := fn.retryable(p.Batch, o, done); ok {
					pl.again = append(pl.again, r)
					pl.againAfter = max(pl.againAfter, wait)
					pl.attempts = max(pl.attempts, p.Batch.Attempts+o.attempts)
					return
				}
			}
			o.attempts += p.Batch.Attempts
			ev := fn.record(ctx, p.Batch, r, done, o)
			sent[i] = append(sent[i], ev)
			k := DedupKey(p.Batch.Request.Req.ID, r.DeviceID)
			byKey[k] = ev
			recKeys = append(recKeys, k)
			recVals = append(recVals, recordedClaim(src, ev))
		}
		for j := pl.iosFrom; j < pl.iosTo; j++ {
			res := apnsResults[j]
			add(ios[j], outcome{res.Outcome, res.Reason, res.ApnsID, res.Attempts, res.Latency, res.Unregistered, res.Retryable, res.RetryAfter})
		}
		for j := pl.fcmFrom; j < pl.fcmTo; j++ {
			res := fcmResults[j]
			add(android[j], outcome{res.Outcome, res.Reason, res.MessageID, res.Attempts, res.Latency, res.Unregistered, res.Retryable, res.RetryAfter})
		}
	}
	for _, tw := range twins {
		if ev, ok := byKey[tw.key]; ok {
			sent[tw.batch] = append(sent[tw.batch], ev)
		} else { // its original waits for another attempt: so does it
			plans[tw.batch].again = append(plans[tw.batch].again, tw.r)
		}
	}
	// The outcomes are recorded before any is emitted: once an event can
	// reach an output, a replay of its work finds it here. What a crash
	// between the sends and this write loses is the only source of
	// duplicate sends (at most one flush per sender).
	if err := fn.reg.RecordClaims(ctx, recKeys, recVals); err != nil {
		return fmt.Errorf("send: record outcomes of %s: %w", claimedIDs(buf, plans), err)
	}
	for i, p := range buf {
		pl := &plans[i]
		for _, ev := range pl.early {
			emit(p.TS, ev)
		}
		for _, ev := range sent[i] {
			emit(p.TS, ev)
		}
		if len(pl.wait) > 0 {
			breakerHeld.Inc(ctx, int64(len(pl.wait)))
			w := p.Batch.With(pl.wait)
			w.Attempts, w.RetryAt = p.Batch.Attempts, pl.waitUntil
			retry(p.TS, w)
		}
		if len(pl.again) > 0 {
			retried.Inc(ctx, int64(len(pl.again)))
			a := p.Batch.With(pl.again)
			a.Attempts, a.RetryAt = pl.attempts, done.Add(pl.againAfter).UnixNano()
			retry(p.TS, a)
		}
	}
	fn.countBreakers(ctx)
	return nil
}

// twin is a device a flush sends once for two copies of the same record.
type twin struct {
	batch int
	key   string
	r     recipient.Recipient
}

// claimedIDs names the requests whose devices a flush claimed, for errors:
// the first few ids and how many more.
func claimedIDs(buf []recipient.Buffered, plans []plan) string {
	var ids []string
	for i, p := range buf {
		if plans[i].claimed {
			ids = append(ids, p.Batch.Request.Req.ID)
		}
	}
	return recipient.RequestIDs(ids)
}

// outcome is a provider's answer for one device.
type outcome struct {
	outcome, reason, providerID string
	attempts                    int
	latency                     time.Duration
	unregistered                bool
	retryable                   bool          // a transient failure
	retryAfter                  time.Duration // the provider's Retry-After
}

// record returns the DeliveryEvent of one sent device, and removes a token
// the provider says is no longer registered.
func (fn *sender) record(ctx context.Context, b recipient.Batch, r recipient.Recipient, done time.Time, o outcome) pushflow.DeliveryEvent {
	app := b.Request.Req.App
	ev := b.Event(done, r, pushflow.StageSend, o.outcome, o.reason)
	ev.ProviderID, ev.Attempts = o.providerID, o.attempts
	sendLatency.Update(ctx, o.latency.Milliseconds())
	requestAge.Update(ctx, ev.LatencyMs)
	if o.outcome == pushflow.OutcomeSent {
		sentCount.Inc(ctx, 1)
	} else {
		failedCount.Inc(ctx, 1)
	}
	if o.unregistered {
		removed, err := fn.reg.RemoveToken(ctx, app, r.DeviceID, r.Token)
		if err != nil {
			// The event is still right; the next send will find the token
			// gone again and retry the cleanup.
			slog.WarnContext(ctx, "send: token cleanup failed", "app", app, "device", r.DeviceID, "err", err)
		} else if removed {
			tokensRemoved.Inc(ctx, 1)
		}
	}
	return ev
}
