package kafkaio

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

// gate is what the "test-gate" Pauser answers: closed pauses every read.
var gate struct {
	closed   atomic.Bool
	room     atomic.Int64 // what an open gate allows per call
	read     atomic.Int64 // sum of what the reads said they read
	failing  atomic.Bool
	calls    atomic.Int64
	lastArg  atomic.Value
	violated atomic.Int64 // records that reached the pipeline while closed
}

func init() {
	RegisterPauser("test-gate", func(_ context.Context, arg string, read int64, _ time.Time) (int64, error) {
		gate.calls.Add(1)
		gate.read.Add(read)
		gate.lastArg.Store(arg)
		if gate.failing.Load() {
			return 0, errors.New("backlog store down")
		}
		if gate.closed.Load() {
			return 0, nil
		}
		return gate.room.Load(), nil
	})
	register.Function1x0(checkGate)
}

// checkGate runs fused with the read: a record here was read now.
func checkGate(Record) {
	if gate.closed.Load() {
		gate.violated.Add(1)
	}
}

func TestReadPauses(t *testing.T) {
	_, brokers := startCluster(t, 2, "paused")
	want := produceN(t, brokers, "paused", "v", 3000, 2)
	gate.closed.Store(true)
	gate.failing.Store(false)
	gate.calls.Store(0)
	gate.read.Store(0)
	gate.violated.Store(0)
	gate.room.Store(100) // 1500 records per partition: at least 15 calls each
	const closedFor = 800 * time.Millisecond
	time.AfterFunc(closedFor, func() { gate.closed.Store(false) })

	p, s := beam.NewPipelineWithRoot()
	cfg := bounded(brokers, "paused")
	cfg.Pause, cfg.PauseArg, cfg.PauseDelay = "test-gate", "lane=bulk", 50*time.Millisecond
	recs := Read(s, cfg)
	beam.ParDo0(s, checkGate, recs)
	collect(s, "paused", recs)
	start := time.Now()
	run(t, p)

	if took := time.Since(start); took < closedFor {
		t.Errorf("the read finished in %v with its Pauser saying pause for %v", took, closedFor)
	}
	if n := gate.violated.Load(); n != 0 {
		t.Errorf("%d records were read while the Pauser said pause", n)
	}
	if gate.calls.Load() < 30 {
		t.Errorf("the Pauser was asked %d times, want at least once per 100 records read (room 100)", gate.calls.Load())
	}
	// Each call reports what the previous call of its partition read; the
	// last call of each partition has nothing after it to report to.
	if r := gate.read.Load(); r < 3000-2*100 || r > 3000 {
		t.Errorf("the reads reported %d records read, want about the 3000 read", r)
	}
	if arg, _ := gate.lastArg.Load().(string); arg != "lane=bulk" {
		t.Errorf("the Pauser got arg %q, want PauseArg %q", arg, "lane=bulk")
	}
	if g := values(got("paused")); strings.Join(g, ",") != strings.Join(sortedCopy(want), ",") {
		t.Errorf("read %d records, want each of the %d once", len(g), len(want))
	}
}

// TestReadPauserErrorReadsOn checks a Pauser that cannot answer does not
// stop the read.
func TestReadPauserErrorReadsOn(t *testing.T) {
	_, brokers := startCluster(t, 1, "pause-err")
	want := produceN(t, brokers, "pause-err", "v", 100, 1)
	gate.failing.Store(true)
	defer gate.failing.Store(false)
	p, s := beam.NewPipelineWithRoot()
	cfg := bounded(brokers, "pause-err")
	cfg.Pause = "test-gate"
	collect(s, "pause-err", Read(s, cfg))
	run(t, p)
	if g := values(got("pause-err")); len(g) != len(want) {
		t.Errorf("read %d records with a failing Pauser, want %d", len(g), len(want))
	}
}

func TestReadUnknownPauser(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `ReadConfig.Pause "nope": no such Pauser`) {
			t.Errorf("Read with an unregistered Pauser: panic %v, want one naming it", r)
		}
	}()
	_, s := beam.NewPipelineWithRoot()
	Read(s, ReadConfig{Brokers: []string{"127.0.0.1:1"}, Topics: []string{"t"}, Pause: "nope"})
}

func sortedCopy(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}
