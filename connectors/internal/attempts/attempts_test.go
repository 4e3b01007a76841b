package attempts

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRun(t *testing.T) {
	ok := Try{Requests: 1}
	transient := Try{Retry: true, Requests: 1}
	permanent := Try{Requests: 1}
	throttled := func(d time.Duration) Try { return Try{Retry: true, RetryAfter: d, Requests: 1} }
	p := Policy{MaxAttempts: 4, BaseBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxWait: 30 * time.Second}

	tests := []struct {
		name      string
		p         Policy
		tries     []Try // the attempts' answers in turn; the last repeats
		want      End
		wantCalls int
		wantWaits []time.Duration
	}{
		{"first succeeds", p, []Try{ok}, End{Attempts: 1}, 1, nil},
		{"permanent at once", p, []Try{permanent}, End{Attempts: 1}, 1, nil},
		{"transient then ok", p, []Try{transient, transient, ok}, End{Attempts: 3}, 3,
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
		{"transient to the end", p, []Try{transient}, End{Attempts: 4, Retryable: true}, 4,
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}},
		{"retry-after over backoff", p, []Try{throttled(2 * time.Second), ok}, End{Attempts: 2}, 2,
			[]time.Duration{2 * time.Second}},
		{"backoff over retry-after", p, []Try{throttled(time.Millisecond), ok}, End{Attempts: 2}, 2,
			[]time.Duration{100 * time.Millisecond}},
		{"retry-after over the budget", p, []Try{throttled(time.Minute)},
			End{Attempts: 1, Retryable: true, RetryAfter: time.Minute, OverBudget: true, Wait: time.Minute}, 1, nil},
		{"budget spent over attempts", Policy{MaxAttempts: 10, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxWait: 5 * time.Second},
			[]Try{throttled(2 * time.Second)},
			End{Attempts: 3, Retryable: true, RetryAfter: 2 * time.Second, OverBudget: true, Wait: 2 * time.Second}, 3,
			[]time.Duration{2 * time.Second, 2 * time.Second}},
		{"requests counted", p, []Try{{Retry: true, Requests: 2}, {Requests: 0}}, End{Attempts: 2}, 2,
			[]time.Duration{100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var waits []time.Duration
			tt.p.Sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
			tt.p.Jitter = func(d time.Duration) time.Duration { return d }
			calls := 0
			got, end := Run(context.Background(), tt.p, -1, func(context.Context) (int, Try) {
				calls++
				return calls, tt.tries[min(calls, len(tt.tries))-1]
			})
			if got != tt.wantCalls || calls != tt.wantCalls {
				t.Errorf("Run() = result %d after %d calls, want %d", got, calls, tt.wantCalls)
			}
			if diff := cmp.Diff(tt.want, end); diff != "" {
				t.Errorf("Run() end (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantWaits, waits); diff != "" {
				t.Errorf("Run() waits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunDeadlineIsBudget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p := Policy{MaxAttempts: 4, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxWait: time.Minute,
		Sleep: func(context.Context, time.Duration) error { t.Fatal("slept past ctx's deadline"); return nil }}
	_, end := Run(ctx, p, 0, func(context.Context) (int, Try) { return 1, Try{Retry: true, RetryAfter: 5 * time.Second, Requests: 1} })
	if !end.OverBudget || !end.Retryable || end.RetryAfter != 5*time.Second || end.Attempts != 1 {
		t.Errorf("Run() end = %+v, want over budget, retryable after 5s, 1 attempt", end)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{MaxAttempts: 4, MaxWait: time.Minute, Sem: make(chan struct{}, 1),
		Sleep: func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }}
	got, end := Run(ctx, p, -1, func(context.Context) (int, Try) { return 7, Try{Retry: true, Requests: 1} })
	if got != 7 || !errors.Is(end.Err, context.Canceled) || !end.Retryable || end.Attempts != 1 {
		t.Errorf("Run() = %d, %+v; want the last result, canceled, retryable, 1 attempt", got, end)
	}
	got, end = Run(ctx, p, -1, func(context.Context) (int, Try) { t.Fatal("attempted after cancel"); return 0, Try{} })
	if got != -1 || !errors.Is(end.Err, context.Canceled) || end.Attempts != 0 {
		t.Errorf("Run(canceled) = %d, %+v; want the initial result, canceled, no attempt", got, end)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"1.5", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"Sun, 22 Nov 2026 10:00:30 GMT", 30 * time.Second},
		{"99999999999999", (1 << 31) * time.Second},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
