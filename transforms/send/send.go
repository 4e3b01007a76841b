// Package send delivers batches of enriched recipients to the push providers
// and turns every device into exactly one DeliveryEvent: sent (with the
// provider's id), failed (with the provider's reason) or dropped (expired,
// duplicate). iOS devices go to APNs through apnsio, Android devices to FCM
// (HTTP v1) through fcmio; when no FCM project is configured, Android
// devices fail with reason "no_provider" rather than disappear.
//
// Each (request, device) pair is claimed in Redis before it is sent. A
// claim by the same Kafka record means this is a replay after a failure and
// the device is sent again (at-least-once); a claim by another record means
// the request was submitted twice, and the second copy is dropped as
// "duplicate".
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
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn3x1[context.Context, recipient.Batch, func(pushflow.DeliveryEvent), error](&sendFn{})
}

// Config configures Notifications.
type Config struct {
	RedisAddr string
	APNs      apnsio.Config
	// FCM is used when FCMEnabled; otherwise Android devices fail with
	// "no_provider".
	FCM        fcmio.Config
	FCMEnabled bool
}

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
	return beam.ParDo(s, &sendFn{Cfg: cfg}, batches)
}

var (
	sentCount     = beam.NewCounter("pushflow", "send_sent")
	failedCount   = beam.NewCounter("pushflow", "send_failed")
	droppedCount  = beam.NewCounter("pushflow", "send_dropped")
	tokensRemoved = beam.NewCounter("pushflow", "send_tokens_removed")
	sendLatency   = beam.NewDistribution("pushflow", "send_latency_ms")
	requestAge    = beam.NewDistribution("pushflow", "request_to_send_ms")
)

type sendFn struct {
	Cfg Config

	reg  *redisio.Registry
	apns *apnsio.Client
	fcm  *fcmio.Client
}

func (fn *sendFn) Setup() error {
	fn.reg = redisio.Open(fn.Cfg.RedisAddr)
	var err error
	if fn.apns, err = apnsio.NewClient(fn.Cfg.APNs); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if fn.Cfg.FCMEnabled {
		if fn.fcm, err = fcmio.NewClient(context.Background(), fn.Cfg.FCM); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	return nil
}

func (fn *sendFn) Teardown() {
	if fn.apns != nil {
		fn.apns.Close()
	}
	if fn.fcm != nil {
		fn.fcm.Close()
	}
	fn.reg.Close()
}

// Expired reports whether a request's TTL has passed at now.
func Expired(r recipient.Request, now time.Time) bool {
	return r.Req.TTLSeconds > 0 && now.After(r.RequestTime().Add(time.Duration(r.Req.TTLSeconds)*time.Second))
}

// DedupKey names the claim of one (request, device).
func DedupKey(requestID, deviceID string) string { return requestID + "|" + deviceID }

func (fn *sendFn) ProcessElement(ctx context.Context, b recipient.Batch, emit func(pushflow.DeliveryEvent)) error {
	req := b.Request
	now := time.Now()
	drop := func(r recipient.Recipient, reason string) {
		droppedCount.Inc(ctx, 1)
		emit(b.Event(now, r, pushflow.StageSend, pushflow.OutcomeDropped, reason))
	}
	if Expired(req, now) {
		for _, r := range b.Recipients {
			drop(r, pushflow.ReasonExpired)
		}
		return nil
	}

	keys := make([]string, len(b.Recipients))
	for i, r := range b.Recipients {
		keys[i] = DedupKey(req.Req.ID, r.DeviceID)
	}
	owners, err := fn.reg.ClaimOwners(ctx, keys, req.Source.String())
	if err != nil {
		return fmt.Errorf("send: %s: %w", req.Req.ID, err)
	}

	var ios, android []recipient.Recipient
	var apnsMsgs []apnsio.Message
	var fcmMsgs []fcmio.Message
	var expiration time.Time
	var ttl time.Duration
	if req.Req.TTLSeconds > 0 {
		ttl = time.Duration(req.Req.TTLSeconds) * time.Second
		expiration = req.RequestTime().Add(ttl)
	}
	for i, r := range b.Recipients {
		if owners[i] != req.Source.String() {
			drop(r, pushflow.ReasonDuplicate)
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
			emit(b.Event(now, r, pushflow.StageSend, pushflow.OutcomeFailed, pushflow.ReasonNoProvider))
		}
	}

	// Both providers at once: a batch takes as long as its slower half.
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
	for i, res := range apnsResults {
		fn.record(ctx, b, ios[i], done, outcome{res.Outcome, res.Reason, res.ApnsID, res.Attempts, res.Latency, res.Unregistered}, emit)
	}
	for i, res := range fcmResults {
		fn.record(ctx, b, android[i], done, outcome{res.Outcome, res.Reason, res.MessageID, res.Attempts, res.Latency, res.Unregistered}, emit)
	}
	return nil
}

// outcome is a provider's answer for one device.
type outcome struct {
	outcome, reason, providerID string
	attempts                    int
	latency                     time.Duration
	unregistered                bool
}

// record emits the DeliveryEvent of one sent device, and removes a token the
// provider says is no longer registered.
func (fn *sendFn) record(ctx context.Context, b recipient.Batch, r recipient.Recipient, done time.Time, o outcome, emit func(pushflow.DeliveryEvent)) {
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
	emit(ev)
}
