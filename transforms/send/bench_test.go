package send

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// BenchmarkSendFnBatchedVsPerBatch measures a backlog of tiny requests:
// 2,000 one-recipient batches of distinct requests, in bundles of 500
// batches, sent through redis-server and the APNs-protocol server. Per
// batch (FlushRecipients 1, the behaviour before batching) every batch pays
// a claim round trip and an APNs round trip in turn; batched (the default)
// a bundle's batches are claimed in one round trip and sent to APNs
// concurrently. It reports both rates and their ratio, with the APNs server
// answering at once on loopback (where client and server share the CPU,
// whose ceiling BenchmarkSend in connectors/apnsio measures), and with a
// 2ms delay per response standing for a network round trip (APNs is tens
// of milliseconds away in production).
func BenchmarkSendFnBatchedVsPerBatch(b *testing.B) {
	f := newFixtureWith(b, []apnsiotest.Option{apnsiotest.WithRecordLimit(0)})
	for _, latency := range []time.Duration{0, 2 * time.Millisecond} {
		name := "loopback"
		if latency > 0 {
			name = fmt.Sprintf("apns_latency_%v", latency)
		}
		b.Run(name, func(b *testing.B) {
			f.srv.SetLatency(latency)
			benchmarkBatchedVsPerBatch(b, f, name)
		})
	}
}

func benchmarkBatchedVsPerBatch(b *testing.B, f *fixture, prefix string) {
	const batches, bundleSize = 2000, 500
	ctx := context.Background()

	var sent int
	emit := func(_ beam.EventTime, ev pushflow.DeliveryEvent) {
		if ev.Outcome != pushflow.OutcomeSent {
			b.Fatalf("event %s/%s = %s %s, want sent", ev.RequestID, ev.DeviceID, ev.Outcome, ev.Reason)
		}
		sent++
	}
	// run sends the backlog once with the given FlushRecipients, each
	// request id prefixed by run, and returns how long it took.
	run := func(flush int, run string) time.Duration {
		f.fn.Cfg.FlushRecipients = flush
		in := make([]recipient.Batch, batches)
		for i := range in {
			in[i] = batch(fmt.Sprintf("%s-%s-%d", prefix, run, i), int64(i), ios(fmt.Sprintf("u%d", i), fmt.Sprintf("d%d", i), i))
		}
		sent = 0
		start := time.Now()
		for lo := 0; lo < batches; lo += bundleSize {
			f.fn.StartBundle(ctx, emit, unexpectedRetry(b))
			for _, bt := range in[lo:min(lo+bundleSize, batches)] {
				if err := f.fn.ProcessElement(ctx, 0, bt, emit, unexpectedRetry(b)); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.fn.FinishBundle(ctx, emit, unexpectedRetry(b)); err != nil {
				b.Fatal(err)
			}
		}
		d := time.Since(start)
		if sent != batches {
			b.Fatalf("run %s sent %d, want %d", run, sent, batches)
		}
		return d
	}
	// Warm up: connections, TLS handshake, provider token.
	run(0, "warm-up")

	var perBatch, batched time.Duration
	b.ResetTimer()
	for i := range b.N {
		perBatch += run(1, fmt.Sprintf("per-batch-%d", i))
		batched += run(0, fmt.Sprintf("batched-%d", i))
	}
	b.StopTimer()
	n := float64(batches * b.N)
	b.ReportMetric(n/perBatch.Seconds(), "per_batch_recipients/s")
	b.ReportMetric(n/batched.Seconds(), "batched_recipients/s")
	b.ReportMetric(perBatch.Seconds()/batched.Seconds(), "batched_vs_per_batch")
}
