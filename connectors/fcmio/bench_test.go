package fcmio

import (
	"context"
	"testing"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
)

// BenchmarkSend measures the firebase SDK through Client.Send against
// fcmiotest over plain HTTP/1.1 on loopback, with the default Concurrency:
// the ceiling the pipelines' send stage is compared with. Server and client
// share the machine's cores; besides notifications/s it reports the process
// CPU time per notification (client and server together), which does not
// depend on what else the machine runs: 2 idle cores sustain about
// 2s / cpu-µs.
func BenchmarkSend(b *testing.B) {
	e := newEnv(b, fcmiotest.WithRecordLimit(0))
	c := newTestClient(b, e.cfg)
	const batch = 1000
	msgs := make([]Message, batch)
	for i := range msgs {
		msgs[i] = Message{Token: fcmiotest.Token(i), Priority: pushflow.PriorityNormal,
			Notification: pushflow.Notification{Title: "Goal", Body: "1-0", Data: map[string]string{"match": "7"}}}
	}
	// Warm up: connections.
	for i, r := range c.Send(context.Background(), msgs[:DefaultConcurrency]) {
		if r.Outcome != pushflow.OutcomeSent {
			b.Fatalf("warm-up Send() result %d = %+v", i, r)
		}
	}
	e.srv.Reset()

	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += batch {
		n := min(batch, b.N-sent)
		for i, r := range c.Send(context.Background(), msgs[:n]) {
			if r.Outcome != pushflow.OutcomeSent {
				b.Fatalf("Send() result %d = %+v, want sent", i, r)
			}
		}
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	if got := e.srv.Count(); got != int64(b.N) {
		b.Fatalf("server accepted %d notifications, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/notification")
}
