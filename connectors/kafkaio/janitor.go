package kafkaio

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleTTL is how long a DoFn's Kafka connections may go unused before its
// janitor closes them (nanoseconds; a variable for tests).
var idleTTL atomic.Int64

func init() { idleTTL.Store(int64(10 * time.Second)) }

// janitor closes a DoFn instance's Kafka client once it has been idle for
// idleTTL. Runners do not always call Teardown — Prism does not when a job
// is cancelled, and the SDK harness keeps spare instances — and an abandoned
// sarama client keeps fetching and, once its broker is gone, reconnecting.
// The next use opens a new client.
type janitor struct {
	busy sync.Mutex // held while the DoFn uses its client

	mu      sync.Mutex
	last    time.Time
	running bool
}

// touch records a use, and starts the janitor's goroutine if needed; close
// is what it calls once the client has been idle for idleTTL.
func (j *janitor) touch(close func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.last = time.Now()
	if !j.running {
		j.running = true
		go j.watch(close)
	}
}

func (j *janitor) watch(close func()) {
	ttl := time.Duration(idleTTL.Load())
	t := time.NewTicker(ttl / 4)
	defer t.Stop()
	for range t.C {
		if !j.busy.TryLock() {
			continue
		}
		j.mu.Lock()
		idle := time.Since(j.last) > ttl
		if idle {
			j.running = false
		}
		j.mu.Unlock()
		if idle {
			close()
		}
		j.busy.Unlock()
		if idle {
			return
		}
	}
}
