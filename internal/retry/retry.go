// Package retry holds the backoff arithmetic the provider clients (apnsio,
// fcmio) share: capped exponential backoff with full jitter, and a sleep
// that a context ends.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Exp is the backoff ceiling after the attempt-th failed attempt:
// min(max, base·2^(attempt-1)), overflow-safe.
func Exp(attempt int, base, max time.Duration) time.Duration {
	d := max
	if shift := attempt - 1; shift >= 0 && shift < 32 {
		if b := base << shift; b > 0 && b < d {
			d = b
		}
	}
	return d
}

// FullJitter is a random duration in [0, d) ("full jitter"), 0 for d <= 0.
func FullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// Sleep waits d, or until ctx ends, and returns ctx's error in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
