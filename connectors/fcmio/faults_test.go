package fcmio

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
)

// TestOutageRetryable: during an UNAVAILABLE outage, results are failed and
// Retryable after the Client's attempts; after it, the same messages are
// sent, each accepted once.
func TestOutageRetryable(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	until := time.Now().Add(500 * time.Millisecond)
	e.srv.Control(fcmiotest.Unavailable(until))

	msgs := []Message{msg(fcmiotest.Token(1)), msg(fcmiotest.Token(2)), msg(fcmiotest.Token(3))}
	for i, r := range c.Send(context.Background(), msgs) {
		want := Result{Status: 503, Reason: ReasonUnavailable, Attempts: DefaultMaxAttempts, Outcome: pushflow.OutcomeFailed, Retryable: true}
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
			t.Errorf("CountByToken() = %d, want 1", n)
		}
	}
}

// TestRetryAfterHonoured: a 429 QUOTA_EXCEEDED with Retry-After: 2 makes the
// Client wait 2s before the next attempt, which succeeds; one beyond the
// wait budget is returned at once, Retryable with its Retry-After.
func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t)
	c := newTestClient(t, e.cfg)
	remove := e.srv.Control(fcmiotest.Throttle(time.Now().Add(time.Second), 2*time.Second))
	start := time.Now()
	got := c.Push(context.Background(), msg(fcmiotest.Token(1)))
	el := time.Since(start)
	if diff := cmp.Diff(Result{Status: 200, Attempts: 2, Outcome: pushflow.OutcomeSent}, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() under Throttle (-want +got):\n%s", diff)
	}
	if el < 2*time.Second || el > 5*time.Second {
		t.Errorf("Push() took %v, want the 2s Retry-After", el)
	}
	remove()

	cfg := e.cfg
	cfg.MaxRetryAfter = time.Second
	c = newTestClient(t, cfg)
	e.srv.Control(fcmiotest.Throttle(time.Now().Add(time.Hour), 5*time.Second))
	start = time.Now()
	got = c.Push(context.Background(), msg(fcmiotest.Token(2)))
	want := Result{Status: 429, Reason: ReasonQuotaExceeded, Attempts: 1, Outcome: pushflow.OutcomeFailed, Retryable: true, RetryAfter: 5 * time.Second}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("Push() with Retry-After over MaxRetryAfter (-want +got):\n%s", diff)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Push() took %v, want no wait", el)
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
		code       string
		retryAfter string
		want       bool
		wantAfter  time.Duration
	}{
		{429, fcmiotest.CodeQuotaExceeded, "3", true, 3 * time.Second},
		{429, "", "", true, 0}, // RESOURCE_EXHAUSTED
		{500, fcmiotest.CodeInternal, "", true, 0},
		{503, fcmiotest.CodeUnavailable, "7", true, 7 * time.Second},
		{502, "", "", true, 0},
		{504, "", "", true, 0}, // DEADLINE_EXCEEDED
		{400, fcmiotest.CodeInvalidArgument, "", false, 0},
		{401, fcmiotest.CodeThirdPartyAuthError, "", false, 0},
		{403, fcmiotest.CodeSenderIDMismatch, "", false, 0},
		{404, fcmiotest.CodeUnregistered, "", false, 0},
		{403, "", "", false, 0}, // PERMISSION_DENIED
	}
	for i, tt := range tests {
		remove := e.srv.Control(func(*fcmiotest.Request) (fcmiotest.Answer, bool) {
			a := fcmiotest.Answer{Status: tt.status, Code: tt.code}
			if tt.retryAfter != "" {
				a.Header = http.Header{"Retry-After": {tt.retryAfter}}
			}
			return a, true
		})
		got := c.Push(context.Background(), msg(fcmiotest.Token(i)))
		remove()
		if got.Outcome != pushflow.OutcomeFailed || got.Retryable != tt.want || got.RetryAfter != tt.wantAfter {
			t.Errorf("Push() answered %d %q Retry-After %q = %+v, want failed, Retryable %v, RetryAfter %v",
				tt.status, tt.code, tt.retryAfter, got, tt.want, tt.wantAfter)
		}
	}
}
