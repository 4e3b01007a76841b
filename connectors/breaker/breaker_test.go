package breaker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow/connectors/breaker"
)

// step is one operation on a breaker for key "k", checked against its
// expectation.
type step struct {
	op      string        // "allow", "ok" (Record success), "fail" (Record failure), "wait", "state"
	d       time.Duration // wait: the clock advances by d; allow: want retryAt = now+d when refused
	n       int           // ok, fail: how many times
	allowed bool          // allow: want ok
	state   breaker.State // state: want
}

func allow(ok bool, retryIn time.Duration) step { return step{op: "allow", allowed: ok, d: retryIn} }
func record(success bool, n int) step {
	if success {
		return step{op: "ok", n: n}
	}
	return step{op: "fail", n: n}
}
func wait(d time.Duration) step  { return step{op: "wait", d: d} }
func state(s breaker.State) step { return step{op: "state", state: s} }
func (s step) String() string {
	return fmt.Sprintf("%s(%v,%d,%v,%v)", s.op, s.d, s.n, s.allowed, s.state)
}
func cfg3() breaker.Config {
	return breaker.Config{Threshold: 3, Cooldown: 5 * time.Second, MaxCooldown: 12 * time.Second}
}
func transition(from, to breaker.State) string { return from.String() + "→" + to.String() }

func TestBreaker(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name        string
		cfg         breaker.Config
		steps       []step
		wantChanges []string
	}{
		{"closed lets everything through", cfg3(), []step{
			allow(true, 0), record(true, 100), record(false, 2), state(breaker.Closed), allow(true, 0),
		}, nil},
		{"success resets the count", cfg3(), []step{
			record(false, 2), record(true, 1), record(false, 2), state(breaker.Closed), allow(true, 0),
		}, nil},
		{"opens at the threshold", cfg3(), []step{
			record(false, 3), state(breaker.Open), allow(false, 5*s), wait(4 * s), allow(false, 1*s),
		}, []string{"closed→open"}},
		{"one probe after the cooldown, success closes", cfg3(), []step{
			record(false, 3), wait(5 * s), allow(true, 0), state(breaker.HalfOpen), allow(false, 5*s),
			record(true, 1), state(breaker.Closed), allow(true, 0), allow(true, 0),
		}, []string{"closed→open", "open→half-open", "half-open→closed"}},
		{"failed probes double the cooldown up to the max", cfg3(), []step{
			record(false, 3), wait(5 * s), allow(true, 0), record(false, 1), state(breaker.Open), allow(false, 10*s),
			wait(10 * s), allow(true, 0), record(false, 1), allow(false, 12*s),
			wait(12 * s), allow(true, 0), record(false, 1), allow(false, 12*s),
			wait(12 * s), allow(true, 0), record(true, 1), state(breaker.Closed),
			// closed again: the cooldown is back to 5s
			record(false, 3), allow(false, 5*s),
		}, []string{"closed→open", "open→half-open", "half-open→open", "open→half-open", "half-open→open",
			"open→half-open", "half-open→open", "open→half-open", "half-open→closed", "closed→open"}},
		{"outcomes while open are ignored", cfg3(), []step{
			record(false, 3), record(true, 5), state(breaker.Open), allow(false, 5*s),
		}, []string{"closed→open"}},
		{"a lost probe is replaced after a cooldown", cfg3(), []step{
			record(false, 3), wait(5 * s), allow(true, 0), wait(4 * s), allow(false, 1*s), wait(1 * s), allow(true, 0),
			state(breaker.HalfOpen),
		}, []string{"closed→open", "open→half-open"}},
		{"defaults: 20 failures, 5s", breaker.Config{}, []step{
			record(false, 19), allow(true, 0), record(false, 1), allow(false, 5*s), wait(5 * s), allow(true, 0),
			record(false, 1), allow(false, 10*s),
		}, []string{"closed→open", "open→half-open", "half-open→open"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
			var changes []string
			cfg := tt.cfg
			cfg.OnChange = func(key string, from, to breaker.State) {
				if key != "k" {
					t.Errorf("OnChange(%q, ...), want key k", key)
				}
				changes = append(changes, transition(from, to))
			}
			b := breaker.New(cfg, func() time.Time { return now })
			for i, st := range tt.steps {
				switch st.op {
				case "allow":
					ok, at := b.Allow("k")
					var want time.Time
					if !st.allowed {
						want = now.Add(st.d)
					}
					if ok != st.allowed || !at.Equal(want) {
						t.Fatalf("step %d %v: Allow() = %v, %v; want %v, %v", i, st, ok, at, st.allowed, want)
					}
				case "ok", "fail":
					for range st.n {
						b.Record("k", st.op == "ok")
					}
				case "wait":
					now = now.Add(st.d)
				case "state":
					if got := b.State("k"); got != st.state {
						t.Fatalf("step %d: State() = %v, want %v", i, got, st.state)
					}
				}
			}
			if diff := cmp.Diff(tt.wantChanges, changes); diff != "" {
				t.Errorf("OnChange calls (-want +got):\n%s", diff)
			}
			if got := b.State("other"); got != breaker.Closed {
				t.Errorf("State(other) = %v, want closed: keys are independent", got)
			}
		})
	}
}

func TestBreakerKeysIndependent(t *testing.T) {
	b := breaker.New(breaker.Config{Threshold: 1}, nil)
	b.Record("apns/a", false)
	if ok, _ := b.Allow("apns/a"); ok {
		t.Error("Allow(apns/a) after its threshold = true, want false")
	}
	if ok, _ := b.Allow("fcm/a"); !ok {
		t.Error("Allow(fcm/a) = false, want true")
	}
}

// TestBreakerConcurrent: under -race, and only one probe is let through at a
// time.
func TestBreakerConcurrent(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var opened int
	b := breaker.New(breaker.Config{Threshold: 5, OnChange: func(_ string, _, to breaker.State) {
		if to == breaker.Open {
			mu.Lock()
			opened++
			mu.Unlock()
		}
	}}, clock)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 100 {
				b.Record("k", false)
				b.State("k")
			}
		})
	}
	wg.Wait()
	if b.State("k") != breaker.Open || opened != 1 {
		t.Fatalf("State() = %v after %d openings, want open once", b.State("k"), opened)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	var allowed sync.WaitGroup
	var n int
	var nmu sync.Mutex
	for range 16 {
		allowed.Go(func() {
			if ok, _ := b.Allow("k"); ok {
				nmu.Lock()
				n++
				nmu.Unlock()
			}
		})
	}
	allowed.Wait()
	if n != 1 {
		t.Errorf("%d of 16 concurrent Allow() calls let through after the cooldown, want 1 probe", n)
	}
}
