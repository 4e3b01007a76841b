package filter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// BenchmarkSmallBatches filters a backlog of 2,000 one-recipient requests
// (distinct requests and users, every rule on, so settings, interest and
// frequency counts are all read) against a real redis-server, in bundles of
// 500 batches, once flushing every batch (FlushRecipients -1, the behaviour
// before batching across requests) and once with the default
// FlushRecipients, and reports both throughputs and their ratio
// (batched_vs_per_batch).
func BenchmarkSmallBatches(b *testing.B) {
	const (
		requests = 2000
		bundle   = 500
	)
	addr := redistest.Start(b)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	reg := redisio.New(c)
	ctx := context.Background()
	in := make([]recipient.Batch, requests)
	seed := make([]pushflow.DeviceEvent, 0, requests)
	scores := map[string]map[string]float64{}
	for i := range in {
		u := fmt.Sprintf("user-%05d", i)
		in[i] = batch(fmt.Sprintf("req-%05d", i), "news", pushflow.PriorityNormal, 0, user(u))
		seed = append(seed, settingsEvent(u, pushflow.Settings{Timezone: "Europe/Berlin", QuietHours: "23:00-06:00"}))
		scores[u] = map[string]float64{"news": 0.9}
	}
	if err := reg.Apply(ctx, seed); err != nil {
		b.Fatal(err)
	}
	if err := reg.SetInterestScores(ctx, app, scores); err != nil {
		b.Fatal(err)
	}
	noon := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	newFn := func(flush int) *rulesFn {
		// A cap no run reaches: every recipient is counted and kept.
		fn := &rulesFn{Cfg: Config{RedisAddr: addr, FrequencyCap: 1 << 30, MinInterest: 0.5, FlushRecipients: flush}, now: func() time.Time { return noon }}
		fn.Setup()
		b.Cleanup(fn.Teardown)
		return fn
	}
	// run filters the backlog and returns how long it took.
	run := func(fn *rulesFn) time.Duration {
		kept := 0
		emit := func(beam.EventTime, recipient.Batch) { kept++ }
		events := func(beam.EventTime, pushflow.DeliveryEvent) { b.Fatal("dropped a recipient") }
		start := time.Now()
		for i := 0; i < requests; i += bundle {
			fn.StartBundle(ctx, emit, events)
			for j, x := range in[i : i+bundle] {
				if err := fn.ProcessElement(ctx, beam.EventTime(i+j), x, emit, events); err != nil {
					b.Fatal(err)
				}
			}
			if err := fn.FinishBundle(ctx, emit, events); err != nil {
				b.Fatal(err)
			}
		}
		if kept != requests {
			b.Fatalf("kept %d batches, want %d", kept, requests)
		}
		return time.Since(start)
	}
	perBatch, batched := newFn(-1), newFn(0)
	var perBatchTime, batchedTime time.Duration
	for b.Loop() {
		perBatchTime += run(perBatch)
		batchedTime += run(batched)
	}
	perBatchRate := float64(b.N*requests) / perBatchTime.Seconds()
	batchedRate := float64(b.N*requests) / batchedTime.Seconds()
	b.ReportMetric(perBatchRate, "per_batch_recipients/s")
	b.ReportMetric(batchedRate, "batched_recipients/s")
	b.ReportMetric(batchedRate/perBatchRate, "batched_vs_per_batch")
}
