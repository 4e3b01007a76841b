// Package attempts is the retry loop the provider clients (apnsio, fcmio)
// share: bounded attempts, capped exponential backoff with full jitter, the
// server's Retry-After honoured, and a budget for the time spent waiting in
// one call. Past the budget the loop does not sleep: it ends, and says the
// failure is retryable and when the server asked to be tried again, so that
// a caller with a longer horizon (a retry lane) can wait instead.
package attempts

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/pushflow/pushflow/internal/retry"
)

// Policy bounds a Run.
type Policy struct {
	// MaxAttempts bounds the attempts, the first included; at least 1.
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the backoff after a failed attempt:
	// Jitter(min(MaxBackoff, BaseBackoff·2^(attempt-1))).
	BaseBackoff, MaxBackoff time.Duration
	// MaxWait bounds the total time one Run waits between its attempts. A
	// wait that would exceed what is left of it (or of ctx's deadline) ends
	// the Run instead of being slept.
	MaxWait time.Duration
	// Sem, when not nil, is acquired around every attempt: it bounds
	// attempts in flight over every Run sharing it.
	Sem chan struct{}
	// Sleep waits d or until ctx ends (retry.Sleep when nil); Jitter maps a
	// backoff ceiling to the backoff (retry.FullJitter when nil). Tests
	// inject both.
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(d time.Duration) time.Duration
}

// Try is what one attempt says about itself.
type Try struct {
	// Retry is true for a transient failure, worth another attempt.
	Retry bool
	// RetryAfter is the answer's Retry-After; 0 when none.
	RetryAfter time.Duration
	// Requests counts the requests the attempt made (usually 1; 0 when it
	// was refused before sending).
	Requests int
}

// End says how a Run ended.
type End struct {
	// Attempts counts the requests made over every attempt.
	Attempts int
	// Retryable is true when the last attempt failed transiently: the loop
	// ran out of attempts, of wait budget, or ctx ended its wait.
	Retryable bool
	// RetryAfter is the last answer's Retry-After; 0 when none.
	RetryAfter time.Duration
	// OverBudget is true when the Run ended because the next wait, Wait,
	// would exceed MaxWait or ctx's deadline.
	OverBudget bool
	Wait       time.Duration
	// Err is ctx's error when ctx ended the Run before an attempt or during
	// a wait; nil otherwise.
	Err error
}

// Run calls attempt until it succeeds, fails for good, or the policy says
// stop, waiting max(backoff, Retry-After) between attempts. It returns the
// last attempt's result (initial when there was none) and how it ended.
func Run[R any](ctx context.Context, p Policy, initial R, attempt func(ctx context.Context) (R, Try)) (R, End) {
	sleep, jitter := p.Sleep, p.Jitter
	if sleep == nil {
		sleep = retry.Sleep
	}
	if jitter == nil {
		jitter = retry.FullJitter
	}
	r := initial
	var end End
	var waited time.Duration
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			end.Err = err
			return r, end
		}
		if p.Sem != nil {
			select {
			case p.Sem <- struct{}{}:
			case <-ctx.Done():
				end.Err = ctx.Err()
				return r, end
			}
		}
		var t Try
		r, t = attempt(ctx)
		if p.Sem != nil {
			<-p.Sem
		}
		end.Attempts += t.Requests
		end.Retryable, end.RetryAfter = t.Retry, t.RetryAfter
		if !t.Retry || n >= p.MaxAttempts {
			return r, end
		}

		wait := max(jitter(retry.Exp(n, p.BaseBackoff, p.MaxBackoff)), t.RetryAfter)
		left := p.MaxWait - waited
		if dl, ok := ctx.Deadline(); ok {
			left = min(left, time.Until(dl))
		}
		if wait > left {
			end.OverBudget, end.Wait = true, wait
			return r, end
		}
		if err := sleep(ctx, wait); err != nil {
			end.Err = err
			return r, end
		}
		waited += wait
	}
}

// ParseRetryAfter reads a Retry-After header value at now: delay seconds or
// an HTTP date. 0 when absent, malformed or past.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, 1<<31)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
