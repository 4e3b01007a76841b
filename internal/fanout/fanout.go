// Package fanout runs indexed work on a bounded number of goroutines: the
// provider clients send a batch with it, results landing at their index.
package fanout

import (
	"sync"
	"sync/atomic"
)

// Each calls fn(i) for every i in [0, n), on at most workers goroutines, and
// returns when all calls have returned. With workers <= 1 it runs them in
// order on the caller's goroutine.
func Each(n, workers int, fn func(i int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
