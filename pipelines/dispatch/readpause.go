package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
)

// pacedBacklogPauser is the kafkaio Pauser of the requests topic's reader
// when realtime requests have their own topic: it lets the reader read as
// many requests as the paced lane has room for, Max recipients minus what
// it holds, all campaigns together (the pacer's reports, see
// transforms/pace), and pauses it at Max. A backlog of requests then waits
// in Kafka rather than in pacing state. Registered by name so that every
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

// pauseRegistries holds one Redis client per address for the Pauser, for
// the life of the worker.
var pauseRegistries = struct {
	sync.Mutex
	m map[string]*redisio.Registry
}{m: map[string]*redisio.Registry{}}

func init() {
	kafkaio.RegisterPauser(pacedBacklogPauser, func(ctx context.Context, arg string) (int64, error) {
		var a readPause
		if err := json.Unmarshal([]byte(arg), &a); err != nil {
			return 0, fmt.Errorf("%s: bad argument %q: %w", pacedBacklogPauser, arg, err)
		}
		pauseRegistries.Lock()
		reg := pauseRegistries.m[a.Redis]
		if reg == nil {
			reg = redisio.Open(a.Redis)
			pauseRegistries.m[a.Redis] = reg
		}
		pauseRegistries.Unlock()
		n, err := reg.TotalBacklog(ctx, a.Lane, a.Shards)
		if err != nil {
			return 0, err
		}
		return a.Max - n, nil
	})
}
