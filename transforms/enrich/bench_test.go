package enrich

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// BenchmarkTokens enriches 2,000 one-recipient batches of distinct requests
// (a backlog of tiny requests), in bundles of 500, against redis-server:
// each batch resolved on its own (FlushRecipients=1, one round trip per
// batch) and buffered across requests with the default flush size (one
// round trip per bundle), side by side in the same run. It reports the
// recipients/s of each and their ratio, batched_vs_per_batch.
func BenchmarkTokens(b *testing.B) {
	const n, bundle = 2000, 500
	var events []pushflow.DeviceEvent
	ins := make([]input, n)
	for i := range n {
		user, dev := fmt.Sprintf("user-%04d", i), fmt.Sprintf("device-%04d", i)
		events = append(events, registerEvent(user, dev, pushflow.PlatformIOS, i))
		ins[i] = input{TS: 0, B: request(fmt.Sprintf("r-%04d", i), app, 0, recipient.Recipient{UserID: user})}
	}
	f := newFixture(b, events...)
	run := func(fn *tokensFn) time.Duration {
		start := time.Now()
		got := 0
		for i := 0; i < n; i += bundle {
			outs, _ := runBundle(b, fn, ins[i:i+bundle])
			got += len(outs)
		}
		d := time.Since(start)
		if got != n {
			b.Fatalf("FlushRecipients=%d: %d outputs, want %d enriched batches", fn.FlushRecipients, got, n)
		}
		return d
	}
	perBatch := &tokensFn{RedisAddr: f.fn.RedisAddr, FlushRecipients: 1}
	batched := &tokensFn{RedisAddr: f.fn.RedisAddr, FlushRecipients: DefaultFlushRecipients}
	for _, fn := range []*tokensFn{perBatch, batched} {
		fn.Setup()
		defer fn.Teardown()
		run(fn) // connect
	}
	var perBatchTime, batchedTime time.Duration
	for b.Loop() {
		perBatchTime += run(perBatch)
		batchedTime += run(batched)
	}
	perBatchRate := float64(b.N*n) / perBatchTime.Seconds()
	batchedRate := float64(b.N*n) / batchedTime.Seconds()
	b.ReportMetric(perBatchRate, "per_batch_recipients/s")
	b.ReportMetric(batchedRate, "batched_recipients/s")
	b.ReportMetric(batchedRate/perBatchRate, "batched_vs_per_batch")
}
