package kafkaio_test

import (
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/pushflow/pushflow/connectors/kafkaio"
)

// A streaming copy from one topic to another that commits its progress to a
// consumer group, so a restart resumes where the previous run stopped.
func Example() {
	p, s := beam.NewPipelineWithRoot()
	recs := kafkaio.Read(s, kafkaio.ReadConfig{
		Brokers: []string{"localhost:9092"},
		Topics:  []string{"push.requests"},
		Group:   "pushflow-copy", // Start defaults to "committed"
	})
	msgs := beam.ParDo(s, func(r kafkaio.Record) kafkaio.Message {
		return kafkaio.Message{Key: r.Key, Value: r.Value, Headers: r.Headers}
	}, recs)
	kafkaio.Write(s, kafkaio.WriteConfig{Brokers: []string{"localhost:9092"}, Topic: "push.requests.copy"}, msgs)
	_ = p // run with beamx.Run(ctx, p)
}

// A bounded backfill: every record written since a point in time, up to the
// end offsets at start; the pipeline ends when it has read them.
func ExampleRead_backfill() {
	_, s := beam.NewPipelineWithRoot()
	_ = kafkaio.Read(s, kafkaio.ReadConfig{
		Brokers: []string{"localhost:9092"},
		Topics:  []string{"push.deliveries"},
		Start:   time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC).Format(time.RFC3339),
		Until:   kafkaio.UntilLatest,
	})
}
