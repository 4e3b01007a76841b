// Package kafkaio is a native Apache Kafka source and sink for the Beam Go
// SDK, built on github.com/IBM/sarama. Beam Go has no native Kafka IO (only
// the cross-language one, which needs a Java expansion service); this package
// follows the shape of Beam's io/natsio: a splittable DoFn per partition with
// an offset-range restriction and a manual watermark.
//
// # Reading
//
// [Read] returns a PCollection<Record>. The graph is
//
//	Create(topics) ─► discover partitions (splittable, per topic) ─► read (splittable, per partition)
//
// The discovery DoFn lists the partitions of each topic when the pipeline
// starts and resolves each partition's start offset ([ReadConfig.Start])
// and, in bounded mode, its end offset; an unbounded read lists them again
// every [ReadConfig.PartitionDiscoveryInterval]. Every partition becomes one
// element whose restriction is the offset range [start, end):
//
//   - Bounded (Until = "latest"): end is the partition's high-water mark seen
//     at start. The read stops once every offset below end was claimed. Offsets
//     that never appear as records (transaction markers, compacted or deleted
//     records) are skipped: once the broker's high-water mark is at or beyond
//     end and nothing arrives for a second, the remaining range is claimed as
//     done. An empty partition (start == end) finishes immediately.
//   - Unbounded (Until = ""): end is math.MaxInt64 and the restriction is
//     tracked by a growable tracker whose end is estimated from the broker's
//     high-water mark (for progress reports: the backlog).
//
// Each ProcessElement call consumes its partition with a sarama
// PartitionConsumer from the restriction start (the consumer is cached on the
// DoFn instance and reused by the next call for the same partition), claims
// every offset it emits and self-checkpoints after
// [ReadConfig.MaxRecordsPerCheckpoint] records or [ReadConfig.CheckpointInterval],
// whichever comes first (a checkpoint costs about 100 ms on Prism, so it is
// never done per record). As soon as a partition is caught up (nothing
// buffered and the position at the high-water mark), or no record arrives
// within [ReadConfig.PollTimeout], an unbounded read gives the partition
// back to the runner for [ReadConfig.ResumeDelay]: Prism processes the
// partitions of a bundle one after another, so a partition with nothing to
// read must not hold the others up. Measured at 20 records/s over 3
// partitions: produce-to-DoFn latency p50 ≈ 140 ms, p99 ≈ 460 ms.
//
// Element timestamps are the record timestamps (CreateTime or LogAppendTime,
// as the topic is configured). The watermark of a partition is the largest
// record timestamp seen minus [ReadConfig.WatermarkDelay]; while a partition is
// caught up, its watermark advances to now minus WatermarkDelay so an idle
// partition does not hold back the pipeline's watermark (unless
// [ReadConfig.DisableIdleWatermark]). A record whose timestamp is older than
// that (a producer clock far behind) arrives late. The read's watermark is
// the minimum over its partitions: Prism does not compute that minimum
// itself (it takes the estimate of the bundle that finished last), so the
// partitions of a Read share their watermarks within the process and each
// reports the minimum (see watermark.go).
//
// Partitions added to a topic while an unbounded read runs are found within
// [ReadConfig.PartitionDiscoveryInterval] and read from their earliest
// offset; their records count from the watermark at discovery, so records
// older than that may arrive late.
//
// Errors: a bad configuration (unreachable brokers or a missing topic at
// start) fails the pipeline. Once running, the reader retries every Kafka
// error after a second (counted in "read_errors") instead of failing the
// bundle, since on Prism a failed bundle fails the whole job: a broker
// restart only pauses the read.
//
// # Offsets and delivery semantics
//
// Delivery is at-least-once. With [ReadConfig.Group] set, the reader commits
// to that consumer group, for each partition, the offset of the next record
// to read — but only for records whose bundle the runner has committed. It
// does so at the start of every ProcessElement call: a self-checkpoint's
// residual restriction starts where the previous bundle stopped, and the
// runner schedules the residual only after it has committed that bundle's
// output, so every offset below the restriction's start is safe to commit. A
// bounded read with a Group ends each partition with one extra checkpoint
// (its restriction is [start, end+1), the last position being a commit
// sentinel) so that the end offset is committed too.
//
// Beam bundle finalization (beam.BundleFinalization) would be the textbook
// hook, but in Beam Go v2.77.0 it only works for the first bundle of each
// execution plan: exec.Plan.Finalize replaces the plan's finalizer while the
// DoFns keep the old one, so later callbacks never run (and pile up in
// memory). The reader does not use it.
//
// The reader does not join the group: it commits as a "simple" consumer
// (generation -1), reads every partition itself and leaves distribution to
// the runner. Never let a group-member consumer share the group name. A
// failed commit is logged and counted ("commit_errors"), not retried: the
// next one supersedes it.
//
// What a restart replays: a pipeline started with Start = "committed" (the
// default with a Group) resumes every partition at its committed offset, so
// it replays the records of each partition's last bundle (at most
// MaxRecordsPerCheckpoint records or CheckpointInterval of reading) and of
// bundles still in flight when the previous run stopped. Those are the only
// duplicates. Partitions without a committed offset start at the earliest
// offset; a committed offset already deleted by retention moves to the
// earliest one (counted in "records_skipped").
//
// What "committed by the runner" means depends on the runner. On Dataflow and
// Flink a bundle's output is in the runner's persistent state. On Prism (in
// process) it is in memory: stages fused with the read (everything up to the
// first GroupByKey) have fully processed a bundle's records before its
// residual runs, but records already handed to a later stage are lost if the
// process dies after the commit. End-to-end at-least-once on Prism therefore
// holds for a fused read → … → sink chain; a shuffle before the sink widens
// the window to whatever that stage holds. For this reasoning to hold, the
// reader refuses runner-initiated splits while it reads a partition (Prism
// splits restrictions that make no progress, e.g. during a poll): a split's
// residual would otherwise commit its start while the primary part is still
// emitting the records before it. A partition is read by one consumer in
// order anyway; parallelism comes from partitions.
//
// # Writing
//
// [Write] writes a PCollection<Message> with an idempotent sarama
// SyncProducer (acks=all, one in-flight request per broker). Messages are
// buffered per bundle and sent in batches of [WriteConfig.BatchSize] and at
// the end of every bundle; the bundle only succeeds once Kafka acknowledged
// every message. Failed messages are sent again (only those) for up to
// [WriteConfig.RetryTimeout]; then, or at once for an error that cannot go
// away (message too large, invalid topic, not authorized), the bundle fails
// and the runner retries it — on Prism, the job fails. Nothing is dropped
// silently. Write is at-least-once: a retried bundle, or a message whose
// acknowledgement was lost, may be written twice (the idempotent producer
// only removes duplicates of its own retries within one producer session).
//
// # Security
//
// [ReadConfig.Security] and [WriteConfig.Security] turn on TLS (optionally
// mutual) and SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. They carry file
// paths and an environment variable name only: the graph holds no secret,
// and the password and certificates are read on the worker when the client
// is made. A refused password fails the read at start (and a write at
// once) with [ErrAuthentication] and the mechanism and user to check; TLS
// errors name the CA file and whether the listener speaks TLS.
//
// # Prism: stages without an output
//
// Prism (v2.77.0) busy-waits, burning a core, for as long as a bundle of a
// stage that has no consumed output runs (worker.B.DataWait is closed at
// once, and stage.Execute's progress loop spins on it). Measured here: an
// idle unbounded read of 3 partitions into a terminal ParDo0 used 60% of a
// core (12 partitions: 120%), and a bounded read into one ran at 52–64k
// records/s instead of 125–145k. Read and Write therefore each give their
// stage an output: an extra, always empty, PCollection consumed through a
// Reshuffle (idle read now: 2–3% of a core). Pipelines should do the same
// for their own terminal stages that do not end in Read's or Write's stage.
//
// # Metrics
//
// Counters in namespace "kafkaio": "records_read/<topic>/<partition>",
// "bytes_read/<topic>/<partition>" (key + value bytes),
// "records_skipped/<topic>/<partition>" (offsets lost to retention),
// "read_errors/<topic>/<partition>",
// "records_written", "bytes_written", "write_errors", "commit_errors";
// distribution "consumer_lag/<topic>/<partition>" (records between the
// position and the high-water mark, sampled at every checkpoint).
package kafkaio

import (
	"fmt"
	"reflect"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
)

func init() {
	beam.RegisterType(reflect.TypeOf((*Record)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Message)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Header)(nil)).Elem())
}

// Record is one Kafka record as read.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Timestamp time.Time
	Headers   []Header
}

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is one record to write.
type Message struct {
	Topic   string // optional: overrides WriteConfig.Topic
	Key     []byte
	Value   []byte
	Headers []Header
}

// KafkaVersion is the protocol version [NewSaramaConfig] configures. kfake
// and every Kafka broker since 3.6 support it.
var KafkaVersion = sarama.V3_6_0_0

// NewSaramaConfig returns the sarama client configuration shared by the
// reader, the writer and tests: protocol version [KafkaVersion], the given
// client ID (default "pushflow"), no automatic topic creation (a mistyped
// topic is an error, not a new topic), consumer errors returned on the
// Errors channel, 4 MiB fetches waiting at most 100 ms, and an idempotent
// producer (acks from all in-sync replicas, one in-flight request per
// broker, successes returned as SyncProducer needs, 10 retries 100 ms
// apart, messages up to Kafka's default message.max.bytes of 1048588).
func NewSaramaConfig(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = KafkaVersion
	if clientID == "" {
		clientID = "pushflow"
	}
	cfg.ClientID = clientID
	cfg.Metadata.AllowAutoTopicCreation = false

	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Fetch.Default = 4 << 20
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond

	cfg.Producer.MaxMessageBytes = 1048588 // Kafka's default message.max.bytes: let the broker decide
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 100 * time.Millisecond
	cfg.Net.MaxOpenRequests = 1
	return cfg
}

func toSaramaHeaders(hs []Header) []sarama.RecordHeader {
	if len(hs) == 0 {
		return nil
	}
	out := make([]sarama.RecordHeader, len(hs))
	for i, h := range hs {
		out[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
	}
	return out
}

func fromSaramaHeaders(hs []*sarama.RecordHeader) []Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]Header, 0, len(hs))
	for _, h := range hs {
		if h == nil {
			continue
		}
		out = append(out, Header{Key: string(h.Key), Value: h.Value})
	}
	return out
}

func counterName(kind, topic string, partition int32) string {
	return fmt.Sprintf("%s/%s/%d", kind, topic, partition)
}
