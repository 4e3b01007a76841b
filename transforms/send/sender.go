package send

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/breaker"
	"github.com/pushflow/pushflow/connectors/fcmio"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// sender is what sendFn and retryFn share: the clients made on the worker
// and the send of a flush (send.go). One per DoFn instance.
type sender struct {
	cfg  Config
	reg  *redisio.Registry
	apns *apnsio.Client
	fcm  *fcmio.Client
	brk  *breaker.Breaker

	opened atomic.Int64 // breakers opened since the last flush counted them
}

func (fn *sender) setup(cfg Config) error {
	fn.cfg = cfg
	if fn.cfg.RetryHorizon <= 0 {
		fn.cfg.RetryHorizon = DefaultRetryHorizon
	}
	if fn.cfg.RetryMaxAttempts <= 0 {
		fn.cfg.RetryMaxAttempts = DefaultRetryMaxAttempts
	}
	fn.reg = redisio.Open(cfg.RedisAddr)
	var err error
	if fn.apns, err = apnsio.NewClient(cfg.APNs); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if cfg.FCMEnabled {
		if fn.fcm, err = fcmio.NewClient(context.Background(), cfg.FCM); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	fn.brk = breaker.New(breaker.Config{
		Threshold: cfg.BreakerThreshold,
		Cooldown:  cfg.BreakerCooldown,
		OnChange: func(key string, from, to breaker.State) {
			switch to {
			case breaker.Open:
				fn.opened.Add(1)
				slog.Warn("send: circuit breaker open: holding sends in the retry lane", "provider", key, "was", from.String())
			case breaker.Closed:
				slog.Info("send: circuit breaker closed: sending again", "provider", key)
			}
		},
	}, nil)
	return nil
}

func (fn *sender) teardown() {
	if fn.apns != nil {
		fn.apns.Close()
	}
	if fn.fcm != nil {
		fn.fcm.Close()
	}
	fn.reg.Close()
}

// breakerKey names the circuit of a platform's provider for an app.
func breakerKey(platform, app string) string {
	if platform == pushflow.PlatformAndroid {
		return "fcm/" + app
	}
	return "apns/" + app
}

// allow reports whether a device of platform for app may be sent now, and
// if not, when its breaker lets a probe through.
func (fn *sender) allow(platform, app string) (bool, time.Time) {
	if platform != pushflow.PlatformIOS && (platform != pushflow.PlatformAndroid || fn.fcm == nil) {
		return true, time.Time{} // no provider: fails at once
	}
	return fn.brk.Allow(breakerKey(platform, app))
}

// recordHealth tells the breaker how a send went: a transient failure, or
// an answer (delivered or a permanent error: the provider is up).
func (fn *sender) recordHealth(platform, app string, up bool) {
	fn.brk.Record(breakerKey(platform, app), up)
}

func (fn *sender) countBreakers(ctx context.Context) {
	if n := fn.opened.Swap(0); n > 0 {
		breakerOpened.Inc(ctx, n)
	}
}

// retryable reports whether a device of b whose attempt ended in the
// transient failure o at now may be tried again, and after how long: the
// provider's Retry-After, else exponential backoff with jitter, as long as
// the next attempt is within the horizon (the ttl) and the attempts budget.
func (fn *sender) retryable(b recipient.Batch, o outcome, now time.Time) (time.Duration, bool) {
	total := b.Attempts + o.attempts
	if total >= fn.cfg.RetryMaxAttempts {
		return 0, false
	}
	wait := o.retryAfter
	if wait <= 0 {
		wait = backoff(total)
	}
	if now.Add(wait).After(fn.deadline(b.Request)) {
		return 0, false
	}
	return wait, true
}

// deadline is the last moment a device of r may still be sent.
func (fn *sender) deadline(r recipient.Request) time.Time {
	if r.Req.TTLSeconds > 0 {
		return r.RequestTime().Add(time.Duration(r.Req.TTLSeconds) * time.Second)
	}
	return r.RequestTime().Add(fn.cfg.RetryHorizon)
}

// backoff is the wait before retry number n (n attempts made): from 500 ms
// doubling up to 30 s, with jitter in [d/2, d).
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(max(n-1, 0), 6)
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2)
}
