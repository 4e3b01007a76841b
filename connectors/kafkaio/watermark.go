package kafkaio

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Watermarks.
//
// Each partition's restriction has a manual watermark estimator whose state
// is the partition's own watermark (largest record timestamp minus
// WatermarkDelay, or now minus WatermarkDelay while caught up). A runner
// should hold the read's output watermark at the minimum over all pending
// restrictions, but Prism (v2.77.0) does not: it sets a stage's output
// watermark estimate from the residuals of the bundle that finished last
// (engine.ElementManager, stage.estimatedOutput), so a partition that lags
// behind, or is parked between polls, does not hold the watermark back and
// its records arrive late. To stay correct there, the partitions of one Read
// running in a process publish their watermarks to a process-wide table,
// and every partition reports the minimum over the table's fresh entries
// (updated within siblingTTL) as its output watermark. That is never later
// than its own watermark, so it is also safe on runners that do hold
// watermarks (where a partition that moved to another worker holds this
// worker's watermark back for at most siblingTTL).

// siblingTTL is how long a partition's published watermark counts.
const siblingTTL = 10 * time.Second

var siblings = struct {
	sync.Mutex
	m map[string]map[topicPartition]sibling // by ReadID
}{m: map[string]map[topicPartition]sibling{}}

type sibling struct {
	ms int64
	at time.Time
}

func newReadID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// watermarkEstimator is a manual watermark estimator that only moves
// forward; its state is the partition's own watermark in Unix milliseconds.
type watermarkEstimator struct {
	state int64

	readID string // "" = unbound: report the own watermark
	tp     topicPartition
}

// bind makes the estimator report the minimum watermark of the partitions
// of readID.
func (e *watermarkEstimator) bind(readID string, tp topicPartition) {
	e.readID, e.tp = readID, tp
}

// publish records the partition's own watermark for its siblings.
func (e *watermarkEstimator) publish() {
	if e.readID == "" {
		return
	}
	siblings.Lock()
	defer siblings.Unlock()
	m := siblings.m[e.readID]
	if m == nil {
		m = map[topicPartition]sibling{}
		siblings.m[e.readID] = m
	}
	m[e.tp] = sibling{ms: e.state, at: time.Now()}
}

// forget removes a finished partition from the table.
func (e *watermarkEstimator) forget() {
	if e.readID == "" {
		return
	}
	siblings.Lock()
	defer siblings.Unlock()
	if m := siblings.m[e.readID]; m != nil {
		delete(m, e.tp)
		if len(m) == 0 {
			delete(siblings.m, e.readID)
		}
	}
}

func (e *watermarkEstimator) CurrentWatermark() time.Time {
	ms := e.state
	if e.readID != "" {
		now := time.Now()
		siblings.Lock()
		for tp, s := range siblings.m[e.readID] {
			if tp != e.tp && now.Sub(s.at) < siblingTTL {
				ms = min(ms, s.ms)
			}
		}
		siblings.Unlock()
	}
	return time.UnixMilli(ms)
}

func (e *watermarkEstimator) ObserveTimestamp(t time.Time) {
	if ms := t.UnixMilli(); ms > e.state {
		e.state = ms
	}
}
