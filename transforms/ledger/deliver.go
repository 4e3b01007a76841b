package ledger

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/stageout"
)

func init() {
	register.Function1x1(eventOutput)
	register.Function1x1(deadOutput)
	register.Function3x0(splitOutput)
	register.Emitter1[pushflow.DeliveryEvent]()
	register.Emitter1[pushflow.DeadLetter]()
	register.DoFn3x1[context.Context, Output, func(int), error](&deliverFn{})
	register.Emitter1[int]()
}

// Events wraps PCollection<pushflow.DeliveryEvent> — outcomes of a
// request's recipients — as PCollection<Output>, each settling one unit of
// its request.
func Events(s beam.Scope, events beam.PCollection) beam.PCollection {
	return beam.ParDo(s.Scope("ledger.Events"), eventOutput, events)
}

// DeadLetters wraps PCollection<pushflow.DeadLetter> of valid requests
// rejected after admission (their RequestID set) as PCollection<Output>.
func DeadLetters(s beam.Scope, dead beam.PCollection) beam.PCollection {
	return beam.ParDo(s.Scope("ledger.DeadLetters"), deadOutput, dead)
}

// Split unwraps PCollection<Output> into its PCollection<pushflow.DeliveryEvent>
// and PCollection<pushflow.DeadLetter>.
func Split(s beam.Scope, outs beam.PCollection) (events, dead beam.PCollection) {
	return beam.ParDo2(s.Scope("ledger.Split"), splitOutput, outs)
}

func eventOutput(ev pushflow.DeliveryEvent) Output {
	return Output{Key: RequestKey(ev.RequestID), Events: []pushflow.DeliveryEvent{ev}}
}

func deadOutput(dl pushflow.DeadLetter) Output {
	o := Output{Dead: []pushflow.DeadLetter{dl}}
	if dl.RequestID != "" {
		o.Key = RequestKey(dl.RequestID)
	}
	return o
}

func splitOutput(o Output, events func(pushflow.DeliveryEvent), dead func(pushflow.DeadLetter)) {
	for _, ev := range o.Events {
		events(ev)
	}
	for _, dl := range o.Dead {
		dead(dl)
	}
}

// DeliverConfig configures Deliver.
type DeliverConfig struct {
	Ledger          Config
	Brokers         []string
	ClientID        string
	Security        kafkaio.Security
	DeliveriesTopic string
	DeadLetterTopic string
	// Table is the delivery table (a tableio spec); "" writes none.
	Table string
	// FlushOutputs is how many outputs a bundle buffers before it writes
	// them (default 1000); the rest are written when the bundle ends.
	FlushOutputs int
}

var (
	settled       = beam.NewCounter("pushflow", "ledger_settled")
	deliveredRows = beam.NewCounter("pushflow", "delivered_events")
	deliveredDead = beam.NewCounter("pushflow", "delivered_dead_letters")
)

// Deliver writes PCollection<Output>: events to the delivery table and the
// deliveries topic, dead letters to the dead-letter topic, and only then
// subtracts them from their ledger entries, settling the entries that are
// done. A failed write fails the bundle before anything is settled, so
// whatever was not written stays open in the ledger and is replayed.
func Deliver(s beam.Scope, outs beam.PCollection, cfg DeliverConfig) {
	s = s.Scope("ledger.Deliver")
	if len(cfg.Brokers) == 0 || cfg.DeliveriesTopic == "" || cfg.DeadLetterTopic == "" {
		panic("ledger.Deliver: Brokers, DeliveriesTopic and DeadLetterTopic are required")
	}
	if cfg.Table != "" {
		if _, err := tableio.ParseTable(cfg.Table); err != nil {
			panic(fmt.Sprintf("ledger.Deliver: %v", err))
		}
	}
	if cfg.FlushOutputs <= 0 {
		cfg.FlushOutputs = 1000
	}
	stageout.Consume(s, beam.ParDo(s, &deliverFn{Cfg: cfg}, outs))
}

type deliverFn struct {
	Cfg DeliverConfig

	reg   *redisio.Registry
	kafka *kafkaio.Producer
	dir   string
	buf   []Output
}

func (fn *deliverFn) Setup() error {
	if fn.Cfg.Table != "" {
		t, err := tableio.ParseTable(fn.Cfg.Table)
		if err != nil {
			return err
		}
		fn.dir = t.Dir
	}
	fn.kafka = kafkaio.NewProducer(kafkaio.WriteConfig{Brokers: fn.Cfg.Brokers, ClientID: fn.Cfg.ClientID, Security: fn.Cfg.Security})
	if fn.Cfg.Ledger.Enabled() {
		fn.reg = redisio.Open(fn.Cfg.Ledger.RedisAddr)
	}
	return nil
}

func (fn *deliverFn) Teardown() error {
	fn.reg.Close()
	return fn.kafka.Close()
}

func (fn *deliverFn) StartBundle(context.Context, func(int)) {
	clear(fn.buf)
	fn.buf = fn.buf[:0]
}

func (fn *deliverFn) ProcessElement(ctx context.Context, o Output, _ func(int)) error {
	fn.buf = append(fn.buf, o)
	if len(fn.buf) >= fn.Cfg.FlushOutputs {
		return fn.flush(ctx)
	}
	return nil
}

func (fn *deliverFn) FinishBundle(ctx context.Context, _ func(int)) error {
	return fn.flush(ctx)
}

func (fn *deliverFn) flush(ctx context.Context) error {
	if len(fn.buf) == 0 {
		return nil
	}
	defer func() { clear(fn.buf); fn.buf = fn.buf[:0] }()
	var events []pushflow.DeliveryEvent
	var msgs []kafkaio.Message
	for _, o := range fn.buf {
		for _, ev := range o.Events {
			b, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("ledger: delivery event %s: %w", ev.RequestID, err)
			}
			events = append(events, ev)
			msgs = append(msgs, kafkaio.Message{Topic: fn.Cfg.DeliveriesTopic, Key: []byte(ev.RequestID), Value: b})
		}
		for _, dl := range o.Dead {
			b, err := json.Marshal(dl)
			if err != nil {
				return fmt.Errorf("ledger: dead letter %s/%d/%d: %w", dl.Topic, dl.Partition, dl.Offset, err)
			}
			msgs = append(msgs, kafkaio.Message{Topic: fn.Cfg.DeadLetterTopic, Key: fmt.Appendf(nil, "%s/%d/%d", dl.Topic, dl.Partition, dl.Offset), Value: b})
		}
	}
	if fn.dir != "" && len(events) > 0 {
		if _, err := tableio.WriteBatch(fn.dir, events); err != nil {
			return fmt.Errorf("ledger: delivery table: %w", err)
		}
	}
	if err := fn.kafka.Send(ctx, msgs); err != nil {
		return err
	}
	deliveredRows.Inc(ctx, int64(len(events)))
	deliveredDead.Inc(ctx, int64(len(msgs)-len(events)))
	if fn.reg == nil {
		return nil
	}
	byKey := map[string]int64{}
	var order []string
	for _, o := range fn.buf {
		if o.Key == "" {
			continue
		}
		if _, ok := byKey[o.Key]; !ok {
			order = append(order, o.Key)
		}
		byKey[o.Key]--
	}
	changes := make([]redisio.LedgerChange, len(order))
	for i, k := range order {
		changes[i] = redisio.LedgerChange{Key: k, Delta: byKey[k]}
	}
	done, err := fn.reg.LedgerProgress(ctx, fn.Cfg.Ledger.Name, changes)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	settled.Inc(ctx, int64(len(done)))
	return nil
}
