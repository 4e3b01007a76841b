package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
)

// pacedBacklogPauser is the kafkaio Pauser of the requests topic's reader
// when realtime requests have their own topic: it lets the reader read as
// many requests as the paced lane has room for, Max recipients minus what
// it holds, all campaigns together (the pacer's reports, see
// transforms/pace), less what the reader read that the pacer has not
// received yet, and pauses it at Max. A backlog of requests then waits in
// Kafka rather than in pacing state. Registered by name so that every
// worker binary has it.
const pacedBacklogPauser = "pushflow.dispatch.paced_backlog"

// readPause is the Pauser's argument, JSON in ReadConfig.PauseArg.
type readPause struct {
	Redis  string `json:"redis"`
	Lane   string `json:"lane"`
	Shards int    `json:"shards"`
	Max    int64  `json:"max"`
}

func (a readPause) String() string {
	b, _ := json.Marshal(a)
	return string(b)
}

// pauseState is what the Pauser of one argument keeps in a worker: a
// Redis client, and the reads whose requests the pacer has not reported
// yet.
type pauseState struct {
	reg     *redisio.Registry
	transit []transitRead
}

// transitRead is a read of n records, the last at until (unix ns).
type transitRead struct{ n, until int64 }

// transitFor is the longest a read counts as in transit: requests the lane
// drops (invalid, filtered out) never reach the pacer.
const transitFor = 10 * time.Second

var pauseStates = struct {
	sync.Mutex
	m map[string]*pauseState
}{m: map[string]*pauseState{}}

func init() {
	kafkaio.RegisterPauser(pacedBacklogPauser, func(ctx context.Context, arg string, read int64, until time.Time) (int64, error) {
		var a readPause
		if err := json.Unmarshal([]byte(arg), &a); err != nil {
			return 0, fmt.Errorf("%s: bad argument %q: %w", pacedBacklogPauser, arg, err)
		}
		pauseStates.Lock()
		defer pauseStates.Unlock()
		st := pauseStates.m[arg]
		if st == nil {
			st = &pauseState{reg: redisio.Open(a.Redis)}
			pauseStates.m[arg] = st
		}
		if read > 0 {
			st.transit = append(st.transit, transitRead{read, until.UnixNano()})
		}
		n, newest, err := st.reg.TotalBacklog(ctx, a.Lane, a.Shards)
		if err != nil {
			return 0, err
		}
		return a.Max - n - st.inTransit(newest, time.Now()), nil
	})
}

// inTransit drops the reads the pacer has reported (it has received a
// batch emitted after them) or that are too old to wait for, and returns
// the records of the rest: one-user requests are one recipient each, and
// larger ones hold their expansion back on their own.
func (st *pauseState) inTransit(newest int64, now time.Time) int64 {
	keep := st.transit[:0]
	var n int64
	for _, r := range st.transit {
		if r.until > newest && now.Sub(time.Unix(0, r.until)) < transitFor {
			keep = append(keep, r)
			n += r.n
		}
	}
	st.transit = keep
	return n
}
