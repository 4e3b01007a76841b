// Package devices applies DeviceEvents to the Redis device registry. It is
// the registry pipeline's one writing transform: events are buffered per
// bundle and applied with one pipelined round trip per flush, in arrival
// order, so a user's events (keyed app/user_id, one Kafka partition) keep
// their order.
package devices

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/internal/stageout"
)

func init() {
	register.DoFn3x1[context.Context, pushflow.DeviceEvent, func(int), error](&applyFn{})
	register.Emitter1[int]()
}

// Apply writes PCollection<pushflow.DeviceEvent> to the registry at
// redisAddr. It returns nothing; a failed write fails the bundle, which the
// runner retries (events are idempotent upserts).
func Apply(s beam.Scope, events beam.PCollection, redisAddr string) {
	s = s.Scope("devices.Apply")
	if redisAddr == "" {
		panic("devices.Apply: redisAddr is required")
	}
	// applyFn emits nothing; its output gives the stage a consumed output
	// (see package stageout).
	stageout.Consume(s, beam.ParDo(s, &applyFn{RedisAddr: redisAddr, FlushSize: 500}, events))
}

var applied = map[string]beam.Counter{
	pushflow.OpRegister:   beam.NewCounter("pushflow", "registry_register"),
	pushflow.OpUnregister: beam.NewCounter("pushflow", "registry_unregister"),
	pushflow.OpSettings:   beam.NewCounter("pushflow", "registry_settings"),
}

type applyFn struct {
	RedisAddr string
	FlushSize int

	reg *redisio.Registry
	buf []pushflow.DeviceEvent
}

func (fn *applyFn) Setup() {
	fn.reg = redisio.Open(fn.RedisAddr)
}

func (fn *applyFn) Teardown() {
	fn.reg.Close()
}

func (fn *applyFn) ProcessElement(ctx context.Context, ev pushflow.DeviceEvent, _ func(int)) error {
	fn.buf = append(fn.buf, ev)
	if len(fn.buf) >= fn.FlushSize {
		return fn.flush(ctx)
	}
	return nil
}

func (fn *applyFn) FinishBundle(ctx context.Context, _ func(int)) error { return fn.flush(ctx) }

func (fn *applyFn) flush(ctx context.Context) error {
	if len(fn.buf) == 0 {
		return nil
	}
	if err := fn.reg.Apply(ctx, fn.buf); err != nil {
		n := len(fn.buf)
		fn.buf = fn.buf[:0]
		return fmt.Errorf("devices: apply %d events: %w", n, err)
	}
	for _, ev := range fn.buf {
		applied[ev.Op].Inc(ctx, 1)
	}
	fn.buf = fn.buf[:0]
	return nil
}
