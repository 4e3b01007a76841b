package retry

import (
	"context"
	"testing"
	"time"
)

func TestExp(t *testing.T) {
	for _, tc := range []struct {
		attempt   int
		base, max time.Duration
		want      time.Duration
	}{
		{1, 100 * time.Millisecond, 5 * time.Second, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 5 * time.Second, 200 * time.Millisecond},
		{6, 100 * time.Millisecond, 5 * time.Second, 3200 * time.Millisecond},
		{7, 100 * time.Millisecond, 5 * time.Second, 5 * time.Second},
		{40, 100 * time.Millisecond, 5 * time.Second, 5 * time.Second}, // no overflow
		{0, 100 * time.Millisecond, 5 * time.Second, 5 * time.Second},
	} {
		if got := Exp(tc.attempt, tc.base, tc.max); got != tc.want {
			t.Errorf("Exp(%d, %v, %v) = %v, want %v", tc.attempt, tc.base, tc.max, got, tc.want)
		}
	}
}

func TestFullJitter(t *testing.T) {
	if got := FullJitter(0); got != 0 {
		t.Errorf("FullJitter(0) = %v, want 0", got)
	}
	const d = 10 * time.Millisecond
	var sum time.Duration
	for range 1000 {
		j := FullJitter(d)
		if j < 0 || j >= d {
			t.Fatalf("FullJitter(%v) = %v, want in [0, %v)", d, j, d)
		}
		sum += j
	}
	if mean := sum / 1000; mean < 3*time.Millisecond || mean > 7*time.Millisecond {
		t.Errorf("mean of FullJitter(%v) = %v, want about %v", d, mean, d/2)
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Errorf("Sleep(canceled, 1h) = %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("Sleep(canceled, 1h) waited %v", time.Since(start))
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep(1ms) = %v, want nil", err)
	}
}
