package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/transforms/decode"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn5x1[context.Context, beam.EventTime, kafkaio.Record, func(beam.EventTime, recipient.Request), func(beam.EventTime, Output), error](&admitFn{})
	register.Emitter2[beam.EventTime, recipient.Request]()
	register.Emitter2[beam.EventTime, Output]()
}

var (
	admitted = beam.NewCounter("pushflow", "ledger_admitted")
	rereads  = beam.NewCounter("pushflow", "ledger_rereads_skipped")
)

// admitBatch is how many records Admit buffers before it writes their
// entries (it also writes at the end of every bundle).
const admitBatch = 500

// Admit decodes PCollection<kafkaio.Record> from push.requests as
// decode.Requests does and records every record in the ledger before its
// bundle ends (so before the reader can commit its offset): it returns
// PCollection<recipient.Request> (valid requests, now open in the ledger)
// and PCollection<Output> (the dead letter and "dropped" event of each
// invalid record, and one "dropped duplicate" event for a second copy of a
// request still open, each an entry of its own until Deliver writes it).
//
// A record whose request is already open from an earlier run at the same
// Kafka position (the reader re-reads what the last run did not commit) is
// skipped: Replay replays it. With the ledger off, Admit is decode.Requests
// with its outputs wrapped.
func Admit(s beam.Scope, records beam.PCollection, cfg Config) (reqs, outs beam.PCollection) {
	s = s.Scope("ledger.Admit")
	if cfg.Enabled() && cfg.RedisAddr == "" {
		panic("ledger.Admit: RedisAddr is required")
	}
	return beam.ParDo2(s, &admitFn{Cfg: cfg}, records)
}

// entry is a ledger entry's value.
type entry struct {
	Run    string `json:"run"`
	Pool   string `json:"pool"`
	Source string `json:"source"`
	// A request: the record's bytes, decoded again on replay.
	Raw        []byte    `json:"raw,omitempty"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
	// A record whose outputs were decided at admission.
	Out *Output `json:"out,omitempty"`
}

type pending struct {
	ts  beam.EventTime
	req *recipient.Request // nil for an output
	out Output
	e   redisio.LedgerEntry
}

type admitFn struct {
	Cfg Config

	reg *redisio.Registry
	buf []pending
}

func (fn *admitFn) Setup() {
	if fn.Cfg.Enabled() {
		fn.reg = redisio.Open(fn.Cfg.RedisAddr)
	}
}

func (fn *admitFn) Teardown() { fn.reg.Close() }

func (fn *admitFn) StartBundle(context.Context, func(beam.EventTime, recipient.Request), func(beam.EventTime, Output)) {
	clear(fn.buf)
	fn.buf = fn.buf[:0]
}

func (fn *admitFn) ProcessElement(ctx context.Context, ts beam.EventTime, rec kafkaio.Record, emit func(beam.EventTime, recipient.Request), outs func(beam.EventTime, Output)) error {
	now := time.Now()
	req, dl, ev := decode.Request(ctx, rec, now)
	src := req.Source.String()
	if dl != nil {
		src = recipient.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}.String()
		out := Output{Key: rejectKey(src), Dead: []pushflow.DeadLetter{*dl}}
		if ev != nil {
			out.Events = []pushflow.DeliveryEvent{*ev}
		}
		if !fn.Cfg.Enabled() {
			out.Key = ""
			outs(ts, out)
			return nil
		}
		val, err := json.Marshal(entry{Run: fn.Cfg.Run, Pool: out.Key, Source: src, Out: &out})
		if err != nil {
			return fmt.Errorf("ledger: entry of %s: %w", src, err)
		}
		fn.buf = append(fn.buf, pending{ts: ts, out: out, e: redisio.LedgerEntry{Key: out.Key, Value: val, Units: 1, Final: true}})
	} else {
		if !fn.Cfg.Enabled() {
			emit(ts, req)
			return nil
		}
		val, err := json.Marshal(entry{Run: fn.Cfg.Run, Pool: RequestKey(req.Req.ID), Source: src, Raw: rec.Value, ReceivedAt: now})
		if err != nil {
			return fmt.Errorf("ledger: entry of %s: %w", req.Req.ID, err)
		}
		units, final := InitialUnits(req.Req)
		fn.buf = append(fn.buf, pending{ts: ts, req: &req, e: redisio.LedgerEntry{Key: entryKey(req.Req.ID, src), Pool: RequestKey(req.Req.ID), Value: val, Units: units, Final: final}})
	}
	if len(fn.buf) >= admitBatch {
		return fn.flush(ctx, emit, outs)
	}
	return nil
}

func (fn *admitFn) FinishBundle(ctx context.Context, emit func(beam.EventTime, recipient.Request), outs func(beam.EventTime, Output)) error {
	return fn.flush(ctx, emit, outs)
}

// flush admits the buffered records and emits what was admitted. A record
// already in the ledger was admitted by an earlier run that did not commit
// its offset: skipped, Replay replays it.
func (fn *admitFn) flush(ctx context.Context, emit func(beam.EventTime, recipient.Request), outs func(beam.EventTime, Output)) error {
	if len(fn.buf) == 0 {
		return nil
	}
	defer func() { clear(fn.buf); fn.buf = fn.buf[:0] }()
	entries := make([]redisio.LedgerEntry, len(fn.buf))
	for i, p := range fn.buf {
		entries[i] = p.e
	}
	ok, err := fn.reg.LedgerAdmit(ctx, fn.Cfg.Name, entries)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	for i, p := range fn.buf {
		switch {
		case !ok[i]:
			rereads.Inc(ctx, 1)
		case p.req != nil:
			admitted.Inc(ctx, 1)
			emit(p.ts, *p.req)
		default:
			admitted.Inc(ctx, 1)
			outs(p.ts, p.out)
		}
	}
	return nil
}

// parseSource is the inverse of recipient.Source.String.
func parseSource(s string) recipient.Source {
	var src recipient.Source
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return src
	}
	j := strings.LastIndexByte(s[:i], '/')
	if j < 0 {
		return src
	}
	src.Topic = s[:j]
	fmt.Sscan(s[j+1:i], &src.Partition)
	fmt.Sscan(s[i+1:], &src.Offset)
	return src
}
