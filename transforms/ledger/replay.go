package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn4x1[context.Context, []byte, func(recipient.Request), func(Output), error](&replayFn{})
	register.Emitter1[recipient.Request]()
	register.Emitter1[Output]()
}

var replayed = beam.NewCounter("pushflow", "ledger_replayed")

// Replay returns the work a previous run of the pipeline left open in the
// ledger, read once when the pipeline starts: PCollection<recipient.Request>
// (requests to process again, marked Replayed) and PCollection<Output>
// (outputs decided at admission that were not written). Each replayed entry
// starts its progress afresh and now belongs to this run. With the ledger
// off both are empty.
func Replay(s beam.Scope, cfg Config) (reqs, outs beam.PCollection) {
	s = s.Scope("ledger.Replay")
	if cfg.Enabled() && (cfg.RedisAddr == "" || cfg.Run == "") {
		panic("ledger.Replay: RedisAddr and Run are required")
	}
	return beam.ParDo2(s, &replayFn{Cfg: cfg}, beam.Impulse(s))
}

type replayFn struct {
	Cfg Config
}

func (fn *replayFn) ProcessElement(ctx context.Context, _ []byte, emit func(recipient.Request), outs func(Output)) error {
	if !fn.Cfg.Enabled() {
		return nil
	}
	reg := redisio.Open(fn.Cfg.RedisAddr)
	defer reg.Close()
	start := time.Now()
	pools := map[string]*redisio.LedgerPool{}
	var order []string
	values := map[string][]byte{}
	var reqs []recipient.Request
	var done []Output
	err := reg.LedgerScan(ctx, fn.Cfg.Name, 1000, func(key string, val []byte) error {
		var e entry
		if err := json.Unmarshal(val, &e); err != nil {
			return fmt.Errorf("ledger: entry %s: %w", key, err)
		}
		if e.Run == fn.Cfg.Run {
			return nil // admitted by this run
		}
		e.Run = fn.Cfg.Run
		nv, err := json.Marshal(e)
		if err != nil {
			return err
		}
		values[key] = nv
		p := pools[e.Pool]
		if p == nil {
			p = &redisio.LedgerPool{Pool: e.Pool}
			pools[e.Pool] = p
			order = append(order, e.Pool)
		}
		p.Keys = append(p.Keys, key)
		if e.Out != nil {
			p.Units++
			done = append(done, *e.Out)
			return nil
		}
		req, err := pushflow.DecodePushRequest(e.Raw)
		if err != nil {
			// It was valid when admitted: only a changed contract gets here.
			return fmt.Errorf("ledger: entry %s no longer decodes: %w", key, err)
		}
		units, final := InitialUnits(req)
		p.Units += units
		if !final {
			p.Expanding++
		}
		reqs = append(reqs, recipient.Request{Req: req, Source: parseSource(e.Source), ReceivedAt: e.ReceivedAt, Replayed: true})
		return nil
	})
	if err != nil {
		return err
	}
	// Reset before emitting: the replayed work reports against fresh counts.
	var batch []redisio.LedgerPool
	for i, name := range order {
		batch = append(batch, *pools[name])
		if len(batch) == 1000 || i == len(order)-1 {
			if err := reg.LedgerReset(ctx, fn.Cfg.Name, batch, values); err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			batch = batch[:0]
		}
	}
	if len(values) > 0 {
		slog.InfoContext(ctx, "ledger: replaying work a previous run left open", "ledger", fn.Cfg.Name, "requests", len(reqs), "outputs", len(done), "took", time.Since(start))
	}
	replayed.Inc(ctx, int64(len(values)))
	for _, r := range reqs {
		emit(r)
	}
	for _, o := range done {
		outs(o)
	}
	return nil
}
