package apnsio

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
)

// TestOutageRetryable: during a 503 outage, results are failed and
// Retryable after the Client's attempts; after it, the same messages are
// sent, each accepted once.
func TestOutageRetryable(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	until := time.Now().Add(500 * time.Millisecond)
	e.srv.Control(apnsiotest.Unavailable(until))

	msgs := []Message{msg(devToken(1)), msg(devToken(2)), msg(devToken(3))}
	for i, r := range c.Send(context.Background(), msgs) {
		want := Result{Status: 503, Reason: "ServiceUnavailable", Attempts: DefaultMaxAttempts, Outcome: pushflow.OutcomeFailed, Retryable: true}
		if diff := cmp.Diff(want, r, ignoreVolatile); diff != "" {
			t.Errorf("Send() during the outage, result %d (-want +got):\n%s", i, diff)
		}
	}
	time.Sleep(time.Until(until))
	for i, r := range c.Send(context.Background(), msgs) {
		want := Result{Status: 200, Attempts: 1, Outcome: pushflow.OutcomeSent}
		if diff := cmp.Diff(want, r, ignoreVolatile); diff != "" {
			t.Errorf("Send() after the outage, result %d (-want +got):\n%s", i, diff)
		}
	}
	for _, m := range msgs {
		if n := e.srv.CountByToken(m.Token); n != 1 {
			t.Errorf("CountByToken(%s) = %d, want 1", m.Token, n)
		}
	}
}

// TestRetryAfterHonoured: a 429 with Retry-After: 2 makes the Client wait 2s
// (not its few-ms backoff) before the next attempt, which succeeds.
func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	e.srv.Control(apnsiotest.Throttle(time.Now().Add(time.Second), 2*time.Second))
	start := time.Now()
	got := c.Push(context.Background(), msg(devToken(1)))
	el := time.Since(start)
	want := Result{Status: 200, Attempts: 2, Outcome: pushflow.OutcomeSent, RetryAfter: 0}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() under Throttle (-want +got):\n%s", diff)
	}
	if el < 2*time.Second || el > 5*time.Second {
		t.Errorf("Push() took %v, want the 2s Retry-After", el)
	}
}

// TestRetryAfterOverBudget: a Retry-After beyond MaxRetryAfter (or ctx's
// deadline) is not slept: the Push returns at once, Retryable, with the
// server's Retry-After for the caller's retry lane.
func TestRetryAfterOverBudget(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.MaxRetryAfter = time.Second
	c := newTestClient(t, cfg)
	e.srv.Control(apnsiotest.Throttle(time.Now().Add(time.Hour), 5*time.Second))
	want := Result{Status: 429, Reason: "TooManyRequests", Attempts: 1, Outcome: pushflow.OutcomeFailed, Retryable: true, RetryAfter: 5 * time.Second}

	start := time.Now()
	got := c.Push(context.Background(), msg(devToken(1)))
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() with Retry-After over MaxRetryAfter (-want +got):\n%s", diff)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Push() took %v, want no wait", el)
	}

	// ctx's deadline bounds the waits too.
	c = newTestClient(t, e.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start = time.Now()
	got = c.Push(ctx, msg(devToken(2)))
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() with Retry-After over ctx's deadline (-want +got):\n%s", diff)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Push() took %v, want no wait", el)
	}
}

// TestRetryAfterHTTPDate: a Retry-After given as an HTTP date is honoured
// too.
func TestRetryAfterHTTPDate(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	var slept []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	at := time.Now().Add(10 * time.Second).UTC()
	n := 0
	e.srv.Control(func(*apnsiotest.Request) (apnsiotest.Answer, bool) {
		n++
		return apnsiotest.Answer{Status: 503, Reason: "ServiceUnavailable", Header: http.Header{"Retry-After": {at.Format(http.TimeFormat)}}}, n == 1
	})
	got := c.Push(context.Background(), msg(devToken(1)))
	if got.Outcome != pushflow.OutcomeSent || len(slept) != 1 || slept[0] < 8*time.Second || slept[0] > 11*time.Second {
		t.Errorf("Push() = %+v after waits %v, want sent after one wait of about 10s", got, slept)
	}
}

// TestResultRetryable: a final failure is Retryable exactly when its answer
// is transient, and carries the answer's Retry-After.
func TestResultRetryable(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.MaxAttempts = 1
	c := newTestClient(t, cfg)
	tests := []struct {
		status     int
		reason     string
		retryAfter string
		want       bool
		wantAfter  time.Duration
	}{
		{429, "TooManyRequests", "3", true, 3 * time.Second},
		{429, "TooManyProviderTokenUpdates", "", true, 0},
		{500, "InternalServerError", "", true, 0},
		{502, "", "", true, 0},
		{503, "ServiceUnavailable", "7", true, 7 * time.Second},
		{503, "Shutdown", "", true, 0},
		{400, "BadDeviceToken", "", false, 0},
		{400, "DeviceTokenNotForTopic", "", false, 0},
		{403, "InvalidProviderToken", "", false, 0},
		{410, "Unregistered", "", false, 0},
		{413, "PayloadTooLarge", "", false, 0},
	}
	for i, tt := range tests {
		remove := e.srv.Control(func(*apnsiotest.Request) (apnsiotest.Answer, bool) {
			a := apnsiotest.Answer{Status: tt.status, Reason: tt.reason}
			if tt.retryAfter != "" {
				a.Header = http.Header{"Retry-After": {tt.retryAfter}}
			}
			return a, true
		})
		got := c.Push(context.Background(), msg(devToken(i)))
		remove()
		if got.Outcome != pushflow.OutcomeFailed || got.Retryable != tt.want || got.RetryAfter != tt.wantAfter {
			t.Errorf("Push() answered %d %q Retry-After %q = %+v, want failed, Retryable %v, RetryAfter %v",
				tt.status, tt.reason, tt.retryAfter, got, tt.want, tt.wantAfter)
		}
	}
	// Rejected before sending: permanent.
	m := msg(devToken(99))
	m.Notification.CollapseID = string(make([]byte, 65))
	if got := c.Push(context.Background(), m); got.Retryable {
		t.Errorf("Push(bad collapse id) = %+v, want not Retryable", got)
	}
}
