package kafkaio

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
)

// A Pauser tells a [Read] how many more records it may read now: whatever
// consumes them has room for that many, and the rest are better off
// waiting in Kafka (backpressure) than in the pipeline. room <= 0 pauses
// the read. arg is ReadConfig.PauseArg; read is how many records the
// partition read since it last asked, the last of them at until, so the
// Pauser can count records still on their way to what it measures. An
// error does not pause the read (it is logged and counted): reading is
// what a read does when it cannot tell.
type Pauser func(ctx context.Context, arg string, read int64, until time.Time) (room int64, err error)

// DefaultPauseDelay is ReadConfig.PauseDelay when it is zero.
const DefaultPauseDelay = 500 * time.Millisecond

var pausers = struct {
	sync.RWMutex
	m map[string]Pauser
}{m: map[string]Pauser{}}

// RegisterPauser makes p available to reads as name (ReadConfig.Pause).
// Call it from an init function, like Beam's function registration, so that
// every worker binary has it: a DoFn travels to workers as data, and a
// Pauser by name.
func RegisterPauser(name string, p Pauser) {
	if name == "" || p == nil {
		panic("kafkaio.RegisterPauser: a name and a Pauser are required")
	}
	pausers.Lock()
	defer pausers.Unlock()
	if _, dup := pausers.m[name]; dup {
		panic(fmt.Sprintf("kafkaio.RegisterPauser: %q registered twice", name))
	}
	pausers.m[name] = p
}

func lookupPauser(name string) (Pauser, bool) {
	pausers.RLock()
	defer pausers.RUnlock()
	p, ok := pausers.m[name]
	return p, ok
}

// noLimit is the room of a read without a Pauser.
const noLimit = math.MaxInt64

// room asks the read's Pauser, if it has one, how many records this call
// on tp may read, telling it what tp read since it last asked.
func (fn *readFn) room(ctx context.Context, tp topicPartition) int64 {
	if fn.Pause == "" {
		return noLimit
	}
	read, until := fn.unasked[tp].n, fn.unasked[tp].until
	delete(fn.unasked, tp)
	p, ok := lookupPauser(fn.Pause)
	if !ok {
		// Read checks the name when the pipeline is built; a worker built
		// from another binary may still lack it.
		fn.pauseErr(ctx, fmt.Errorf("no Pauser %q registered in this worker", fn.Pause))
		return noLimit
	}
	room, err := p(ctx, fn.PauseArg, read, until)
	if err != nil {
		fn.pauseErr(ctx, err)
		return noLimit
	}
	return room
}

var (
	pauseErrors    = beam.NewCounter("kafkaio", "pause_errors")
	pauseErrLogged atomic.Int64 // unix ns of the last logged Pauser error
)

// pauseErr counts a Pauser that could not answer and logs it, at most every
// 10 s per worker.
func (fn *readFn) pauseErr(ctx context.Context, err error) {
	pauseErrors.Inc(ctx, 1)
	now := time.Now().UnixNano()
	if last := pauseErrLogged.Load(); now-last >= int64(10*time.Second) && pauseErrLogged.CompareAndSwap(last, now) {
		log.Warnf(ctx, "kafkaio.Read: Pauser %q: %v (reading on; logged at most every 10s)", fn.Pause, err)
	}
}

// readSince counts what a call on tp read, for the next question to the
// Pauser.
func (fn *readFn) readSince(tp topicPartition, n int) {
	if fn.Pause == "" || n == 0 {
		return
	}
	if fn.unasked == nil {
		fn.unasked = map[topicPartition]unasked{}
	}
	u := fn.unasked[tp]
	u.n += int64(n)
	u.until = time.Now()
	fn.unasked[tp] = u
}

// unasked is what a partition read since it last asked its Pauser.
type unasked struct {
	n     int64
	until time.Time
}
