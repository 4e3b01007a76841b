package fanout

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestEach(t *testing.T) {
	for _, tc := range []struct{ n, workers int }{{0, 4}, {1, 4}, {10, 1}, {10, 0}, {1000, 8}, {3, 64}} {
		counts := make([]int32, tc.n)
		var inFlight, peak atomic.Int32
		Each(tc.n, tc.workers, func(i int) {
			cur := inFlight.Add(1)
			for {
				p := peak.Load()
				if cur <= p || peak.CompareAndSwap(p, cur) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			atomic.AddInt32(&counts[i], 1)
			inFlight.Add(-1)
		})
		for i, c := range counts {
			if c != 1 {
				t.Errorf("Each(%d, %d): index %d ran %d times, want 1", tc.n, tc.workers, i, c)
			}
		}
		if limit := int32(max(tc.workers, 1)); peak.Load() > limit {
			t.Errorf("Each(%d, %d): %d calls in flight, want at most %d", tc.n, tc.workers, peak.Load(), limit)
		}
	}
}
