package send

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.Function1x2(retryKey)
	register.DoFn5x1[state.Provider, timers.Provider, string, recipient.Batch, func(pushflow.DeliveryEvent), error](&retryFn{})
	register.Emitter1[pushflow.DeliveryEvent]()
}

var (
	retryWaiting = beam.NewDistribution("pushflow", "send_retry_waiting") // devices waiting in one key's retry state, per firing
	retryLate    = beam.NewDistribution("pushflow", "send_retry_late_ms")
)

// Retries is send's retry lane: PCollection<recipient.Batch> of devices
// whose provider failed transiently (or whose breaker was open), each with
// its RetryAt, in; PCollection<pushflow.DeliveryEvent> out, one per device
// once it is sent, fails for good, or runs out of its ttl or attempts.
//
// Devices wait in Beam state keyed by provider and app, and a
// processing-time timer sends those that are due with the same claims,
// breaker and recording as the main send; what fails transiently again
// goes back to wait. So an outage holds no bundle: the lane's state holds
// the waiting devices (RocksDB on Flink; the heap on Prism, where a crash
// loses them and the ledger replays their requests).
func Retries(s beam.Scope, retries beam.PCollection, cfg Config) beam.PCollection {
	s = s.Scope("send.Retries")
	return beam.ParDo(s, &retryFn{Cfg: cfg, Waiting: state.MakeBagState[recipient.Batch]("waiting"), Next: state.MakeValueState[int64]("next"), Due: timers.InProcessingTime("due")}, beam.ParDo(s, retryKey, retries))
}

// retryKey keys a batch of one provider's devices by provider and app.
func retryKey(b recipient.Batch) (string, recipient.Batch) {
	platform := ""
	if len(b.Recipients) > 0 {
		platform = b.Recipients[0].Platform
	}
	return breakerKey(platform, b.Request.Req.App), b
}

// minRetryWait is the shortest wait between two firings of one key, so a
// breaker that is still half-open cannot make the timer spin.
const minRetryWait = 50 * time.Millisecond

type retryFn struct {
	Cfg     Config
	Waiting state.Bag[recipient.Batch]
	Next    state.Value[int64] // when the timer is set for (unix ns); 0 = none
	Due     timers.ProcessingTime

	sender
}

func (fn *retryFn) Setup() error { return fn.setup(fn.Cfg) }

func (fn *retryFn) Teardown() { fn.teardown() }

// ProcessElement holds b until its RetryAt.
func (fn *retryFn) ProcessElement(sp state.Provider, tp timers.Provider, _ string, b recipient.Batch, _ func(pushflow.DeliveryEvent)) error {
	if err := fn.Waiting.Add(sp, b); err != nil {
		return fmt.Errorf("send: retry state: %w", err)
	}
	return fn.schedule(sp, tp, b.RetryAt)
}

// schedule makes sure the timer fires by at.
func (fn *retryFn) schedule(sp state.Provider, tp timers.Provider, at int64) error {
	at = max(at, time.Now().Add(minRetryWait).UnixNano())
	next, ok, err := fn.Next.Read(sp)
	if err != nil {
		return fmt.Errorf("send: retry state: %w", err)
	}
	if ok && next != 0 && next <= at {
		return nil
	}
	fn.Due.Set(tp, time.Unix(0, at))
	return fn.Next.Write(sp, at)
}

// OnTimer sends the waiting devices that are due and keeps the others (and
// those that fail transiently again) for a later firing.
func (fn *retryFn) OnTimer(ctx context.Context, sp state.Provider, tp timers.Provider, _ string, timer timers.Context, emit func(pushflow.DeliveryEvent)) error {
	if timer.Family != fn.Due.Family {
		return nil
	}
	all, _, err := fn.Waiting.Read(sp)
	if err != nil {
		return fmt.Errorf("send: retry state: %w", err)
	}
	now := time.Now()
	if next, ok, _ := fn.Next.Read(sp); ok && next > 0 {
		retryLate.Update(ctx, now.Sub(time.Unix(0, next)).Milliseconds())
	}
	var due []recipient.Buffered
	var keep []recipient.Batch
	waiting := 0
	for _, b := range all {
		waiting += len(b.Recipients)
		if b.RetryAt <= now.UnixNano() {
			due = append(due, recipient.Buffered{Batch: b})
		} else {
			keep = append(keep, b)
		}
	}
	retryWaiting.Update(ctx, int64(waiting))
	for start := 0; start < len(due); {
		// Flush-sized sends, as the main lane does.
		end, n := start, 0
		for end < len(due) && (n == 0 || n+len(due[end].Batch.Recipients) <= max(fn.Cfg.FlushRecipients, 1)) {
			n += len(due[end].Batch.Recipients)
			end++
		}
		err := fn.send(ctx, due[start:end], func(_ beam.EventTime, ev pushflow.DeliveryEvent) { emit(ev) },
			func(_ beam.EventTime, b recipient.Batch) { keep = append(keep, b) })
		if err != nil {
			return err
		}
		start = end
	}
	if err := fn.Waiting.Clear(sp); err != nil {
		return fmt.Errorf("send: retry state: %w", err)
	}
	var next int64
	for _, b := range keep {
		if err := fn.Waiting.Add(sp, b); err != nil {
			return fmt.Errorf("send: retry state: %w", err)
		}
		if next == 0 || b.RetryAt < next {
			next = b.RetryAt
		}
	}
	if next == 0 {
		return fn.Next.Write(sp, 0)
	}
	next = max(next, time.Now().Add(minRetryWait).UnixNano())
	fn.Due.Set(tp, time.Unix(0, next))
	return fn.Next.Write(sp, next)
}
