package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow/internal/stageout"
)

func init() {
	register.DoFn5x2[
		context.Context, *watermarkEstimator, *sdf.LockRTracker, string,
		func(beam.EventTime, topicPartition), sdf.ProcessContinuation, error,
	](&discoverFn{})
	register.DoFn6x2[
		context.Context, *watermarkEstimator, *sdf.LockRTracker, topicPartition,
		func(beam.EventTime, Record), func(int), sdf.ProcessContinuation, error,
	](&readFn{})
	register.Emitter2[beam.EventTime, topicPartition]()
	register.Emitter2[beam.EventTime, Record]()
	beam.RegisterType(reflect.TypeOf((*topicPartition)(nil)).Elem())
}

// Defaults of the ReadConfig tuning fields.
const (
	DefaultMaxRecordsPerCheckpoint = 50000
	DefaultCheckpointInterval      = 1 * time.Second
	DefaultPollTimeout             = 100 * time.Millisecond
	DefaultResumeDelay             = 200 * time.Millisecond
	DefaultWatermarkDelay          = 1 * time.Second
	DefaultDiscoveryInterval       = 30 * time.Second
)

// gapTimeout is how long a bounded read waits for offsets below its end
// that the broker's high-water mark says exist but no record delivers
// (transaction markers, compacted or aborted records) before it claims the
// rest of its range as done.
const gapTimeout = 1 * time.Second

// errorBackoff is how long a read waits after an error before retrying.
const errorBackoff = time.Second

// idleConsumerTTL is how long a cached partition consumer may go unused
// before it is closed (its restriction moved to another worker).
const idleConsumerTTL = 10 * time.Second

// ReadConfig configures [Read].
type ReadConfig struct {
	// Brokers are the bootstrap broker addresses (host:port). Required.
	Brokers []string
	// Topics to read; every partition of every topic is read. Required.
	Topics []string
	// Group is the consumer group the reader commits read offsets to, once
	// the runner has committed the bundles that read them (see the package
	// doc). "" = no commits.
	Group string
	// Start is where partitions start: "committed" (the group's committed
	// offset, or the earliest offset for a partition without one; the
	// default when Group is set), "earliest" (the default without Group),
	// "latest" (only records produced after the pipeline starts), or an RFC
	// 3339 time (the first record whose timestamp is at or after it).
	Start string
	// Until is "" for an unbounded streaming read (the default) or "latest"
	// for a bounded read that stops at the end offsets seen at start.
	Until string
	// ClientID is the Kafka client ID. Default "pushflow".
	ClientID string
	// Security is the connection's TLS and SASL settings (default:
	// plaintext, no authentication).
	Security Security

	// MaxRecordsPerCheckpoint is the number of records after which a
	// partition's read self-checkpoints, making its output visible
	// downstream and its offsets committable. Default 50000.
	MaxRecordsPerCheckpoint int
	// CheckpointInterval is the longest a partition's read runs before it
	// self-checkpoints. Stages fused with the read see each record at once;
	// this bounds how long stages after a shuffle, the offset commits and
	// the bundle's other partitions wait. Default 1s.
	CheckpointInterval time.Duration
	// PollTimeout is how long the reader waits for the next record before it
	// treats a partition as caught up. Default 100ms.
	PollTimeout time.Duration
	// ResumeDelay is how long an unbounded read leaves a caught-up partition
	// before polling it again. Default 200ms.
	ResumeDelay time.Duration
	// WatermarkDelay is subtracted from the record timestamps (and, for an
	// idle partition, from the current time) to form the watermark: records
	// up to this much out of order are not late. Default 1s.
	WatermarkDelay time.Duration
	// DisableIdleWatermark keeps the watermark of a caught-up partition at
	// its last record's timestamp instead of advancing it with the clock.
	// Windows downstream then only close when every partition receives newer
	// records. Default false.
	DisableIdleWatermark bool
	// PartitionDiscoveryInterval is how often an unbounded read looks for
	// partitions added to its topics; new partitions are read from their
	// earliest offset. Negative disables discovery after the start. Default
	// 30s.
	PartitionDiscoveryInterval time.Duration

	// Pause names a Pauser (RegisterPauser) the read asks, with PauseArg,
	// how many records it may read before each call on a partition: the
	// call reads at most that many, and when it has read them, or the
	// Pauser said none, the partition's records wait in Kafka until the
	// read asks again after PauseDelay (default DefaultPauseDelay), by
	// when what it read has reached whatever the Pauser measures. "" =
	// never pause. Use it for backpressure on a topic whose records may
	// wait (bulk traffic), not on one whose records must not.
	Pause      string
	PauseArg   string
	PauseDelay time.Duration
}

func (c ReadConfig) withDefaults() (ReadConfig, error) {
	if len(c.Brokers) == 0 {
		return c, errors.New("no Brokers")
	}
	if len(c.Topics) == 0 {
		return c, errors.New("no Topics")
	}
	if err := c.Security.Validate(); err != nil {
		return c, fmt.Errorf("Security: %w", err)
	}
	for _, t := range c.Topics {
		if t == "" {
			return c, errors.New("empty topic name")
		}
	}
	if c.Start == "" {
		c.Start = StartEarliest
		if c.Group != "" {
			c.Start = StartCommitted
		}
	}
	switch c.Start {
	case StartEarliest, StartLatest:
	case StartCommitted:
		if c.Group == "" {
			return c, errors.New(`ReadConfig.Start "committed" needs a Group`)
		}
	default:
		if _, err := time.Parse(time.RFC3339Nano, c.Start); err != nil {
			return c, fmt.Errorf(`ReadConfig.Start %q is neither "committed", "earliest", "latest" nor an RFC 3339 time`, c.Start)
		}
	}
	if c.Until != "" && c.Until != UntilLatest {
		return c, fmt.Errorf(`ReadConfig.Until %q: want "" (unbounded) or "latest"`, c.Until)
	}
	if c.MaxRecordsPerCheckpoint == 0 {
		c.MaxRecordsPerCheckpoint = DefaultMaxRecordsPerCheckpoint
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.ResumeDelay == 0 {
		c.ResumeDelay = DefaultResumeDelay
	}
	if c.PauseDelay == 0 {
		c.PauseDelay = DefaultPauseDelay
	}
	if c.Pause != "" {
		if _, ok := lookupPauser(c.Pause); !ok {
			return c, fmt.Errorf("ReadConfig.Pause %q: no such Pauser (register it with RegisterPauser in an init function)", c.Pause)
		}
	}
	if c.WatermarkDelay == 0 {
		c.WatermarkDelay = DefaultWatermarkDelay
	}
	if c.PartitionDiscoveryInterval == 0 {
		c.PartitionDiscoveryInterval = DefaultDiscoveryInterval
	}
	if c.MaxRecordsPerCheckpoint < 0 || c.CheckpointInterval < 0 || c.PollTimeout < 0 || c.ResumeDelay < 0 || c.WatermarkDelay < 0 {
		return c, errors.New("negative MaxRecordsPerCheckpoint, CheckpointInterval, PollTimeout, ResumeDelay or WatermarkDelay")
	}
	return c, nil
}

// Read reads every partition of cfg.Topics and returns a PCollection<Record>
// whose element timestamps are the record timestamps. With cfg.Until =
// "latest" the PCollection is bounded (the pipeline drains and ends);
// otherwise it is unbounded. Read panics, with a "kafkaio.Read:" prefix, on
// an invalid configuration. See the package doc for offsets, watermarks and
// delivery semantics.
func Read(s beam.Scope, cfg ReadConfig) beam.PCollection {
	s = s.Scope("kafkaio.Read")
	c, err := cfg.withDefaults()
	if err != nil {
		panic(fmt.Sprintf("kafkaio.Read: invalid ReadConfig: %v", err))
	}
	parts := beam.ParDo(s, &discoverFn{
		Brokers:        c.Brokers,
		ClientID:       c.ClientID,
		Security:       c.Security,
		Group:          c.Group,
		Start:          c.Start,
		Bounded:        c.Until == UntilLatest,
		Sentinel:       c.Until == UntilLatest && c.Group != "",
		Interval:       c.PartitionDiscoveryInterval,
		WatermarkDelay: c.WatermarkDelay,
	}, beam.CreateList(s, c.Topics))
	recs, none := beam.ParDo2(s, &readFn{
		ReadID:               newReadID(),
		Brokers:              c.Brokers,
		ClientID:             c.ClientID,
		Security:             c.Security,
		Group:                c.Group,
		MaxRecords:           c.MaxRecordsPerCheckpoint,
		CheckpointInterval:   c.CheckpointInterval,
		PollTimeout:          c.PollTimeout,
		ResumeDelay:          c.ResumeDelay,
		WatermarkDelay:       c.WatermarkDelay,
		DisableIdleWatermark: c.DisableIdleWatermark,
		CommitSentinel:       c.Until == UntilLatest && c.Group != "",
		Pause:                c.Pause,
		PauseArg:             c.PauseArg,
		PauseDelay:           c.PauseDelay,
	}, parts)
	// The read's stage, fused with whatever follows it, often has no
	// consumed output; readFn's second output stays empty and gives it one.
	stageout.Consume(s, none)
	return recs
}

// readFn is the splittable DoFn that reads one partition per element.
type readFn struct {
	Brokers              []string
	ClientID             string
	Security             Security
	Group                string
	MaxRecords           int
	CheckpointInterval   time.Duration
	PollTimeout          time.Duration
	ResumeDelay          time.Duration
	WatermarkDelay       time.Duration
	DisableIdleWatermark bool
	// ReadID identifies the Read among the reads of the process, to share
	// watermarks between its partitions (see watermark.go).
	ReadID string
	// CommitSentinel: a bounded restriction [start, end+1) holds the records
	// [start, end) plus the position end, whose run commits offset end.
	CommitSentinel bool
	// Pause, PauseArg, PauseDelay: see ReadConfig.
	Pause      string
	PauseArg   string
	PauseDelay time.Duration

	// mu guards client, consumer and hwms: split and progress requests call
	// the end estimator concurrently with ProcessElement.
	mu       sync.Mutex
	client   sarama.Client
	consumer sarama.Consumer
	hwms     map[topicPartition]int64 // last high-water mark seen per partition

	// Used by ProcessElement (under jan.busy) only; keyed with Start/End zeroed.
	pcs       map[topicPartition]*cachedConsumer
	committed map[topicPartition]int64
	metrics   map[topicPartition]*partitionMetrics
	unasked   map[topicPartition]unasked // records read since the Pauser was last asked
	jan       janitor
}

// cachedConsumer is a partition consumer kept between ProcessElement calls.
type cachedConsumer struct {
	pc       sarama.PartitionConsumer
	next     int64                   // offset the next delivered record may have (1 + last taken)
	peek     *sarama.ConsumerMessage // a record taken from pc but not claimed
	lastUsed time.Time
}

type partitionMetrics struct {
	records, bytes, skipped, errors, paused beam.Counter
	lag                                     beam.Distribution
}

// getClient creates the client lazily, not in Setup: the runner does not
// call Setup on the instance that runs CreateInitialRestriction and
// RestrictionSize, and a broker that is down must not fail the job (Prism
// fails a job whose Setup fails).
func (fn *readFn) getClient() (sarama.Client, error) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.client != nil && !fn.client.Closed() {
		return fn.client, nil
	}
	scfg, err := fn.Security.saramaConfig(fn.ClientID)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(fn.Brokers, scfg)
	if err != nil {
		return nil, fn.Security.connectError("connect to", fn.Brokers, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("kafkaio: consumer: %w", err)
	}
	fn.client, fn.consumer = client, consumer
	fn.jan.touch(fn.resetClient)
	return client, nil
}

// resetClient closes the client and its consumers; the next use makes new
// ones. It runs under jan.busy.
func (fn *readFn) resetClient() {
	for k, c := range fn.pcs {
		c.pc.AsyncClose()
		delete(fn.pcs, k)
	}
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.consumer != nil {
		fn.consumer.Close()
		fn.consumer = nil
	}
	if fn.client != nil {
		fn.client.Close()
		fn.client = nil
	}
}

func (fn *readFn) Teardown() error {
	fn.jan.busy.Lock()
	defer fn.jan.busy.Unlock()
	fn.resetClient()
	return nil
}

func (fn *readFn) CreateInitialRestriction(tp topicPartition) offsetrange.Restriction {
	return offsetrange.Restriction{Start: tp.Start, End: tp.End}
}

func (fn *readFn) SplitRestriction(_ topicPartition, rest offsetrange.Restriction) []offsetrange.Restriction {
	return []offsetrange.Restriction{rest}
}

func (fn *readFn) RestrictionSize(tp topicPartition, rest offsetrange.Restriction) (float64, error) {
	if rest.End != noEnd {
		return float64(max(rest.End-rest.Start, 0)), nil
	}
	est := &endEstimator{fn: fn, last: rest.Start}
	est.bind(key(tp))
	end := est.Estimate()
	return float64(max(end-rest.Start, 0)), nil
}

// CreateTracker returns a partitionTracker over an offsetrange.Tracker for a
// bounded restriction and over an offsetrange.GrowableTracker for an
// unbounded one.
func (fn *readFn) CreateTracker(rest offsetrange.Restriction) (*sdf.LockRTracker, error) {
	if rest.End != noEnd {
		return sdf.NewLockRTracker(&partitionTracker{RTracker: offsetrange.NewTracker(rest)}), nil
	}
	// The runner does not pass the element here: ProcessElement binds the
	// partition to the end estimator.
	est := &endEstimator{fn: fn, last: rest.Start}
	rt, err := offsetrange.NewGrowableTracker(rest, est)
	if err != nil {
		return nil, err
	}
	return sdf.NewLockRTracker(&partitionTracker{RTracker: rt, est: est}), nil
}

// partitionTracker wraps the offset trackers to refuse splits while
// ProcessElement runs. A partition is read sequentially by one consumer, so
// a split-off residual gains nothing, and it would break the offset commits:
// the residual would commit its start while the primary is still emitting
// records before it. Only the checkpoint after ProcessElement returns (and
// splits of restrictions not being processed) go through.
type partitionTracker struct {
	sdf.RTracker
	est  *endEstimator // unbounded only
	busy atomic.Bool   // ProcessElement is running
}

func (t *partitionTracker) TrySplit(fraction float64) (primary, residual any, err error) {
	if t.busy.Load() {
		return t.RTracker.GetRestriction(), nil, nil
	}
	return t.RTracker.TrySplit(fraction)
}

func (t *partitionTracker) IsBounded() bool {
	if b, ok := t.RTracker.(sdf.BoundableRTracker); ok {
		return b.IsBounded()
	}
	return true
}

// TruncateRestriction is used on drain: an unbounded read stops where it
// is; a bounded one finishes its range.
func (fn *readFn) TruncateRestriction(rt *sdf.LockRTracker, _ topicPartition) offsetrange.Restriction {
	rest := rt.GetRestriction().(offsetrange.Restriction)
	if rest.End == noEnd {
		return offsetrange.Restriction{Start: rest.Start, End: rest.Start}
	}
	return rest
}

func (fn *readFn) InitialWatermarkEstimatorState(et beam.EventTime, _ offsetrange.Restriction, _ topicPartition) int64 {
	return et.Milliseconds()
}

func (fn *readFn) CreateWatermarkEstimator(ms int64) *watermarkEstimator {
	return &watermarkEstimator{state: ms}
}

func (fn *readFn) WatermarkEstimatorState(we *watermarkEstimator) int64 {
	return we.state
}

func key(tp topicPartition) topicPartition {
	return topicPartition{Topic: tp.Topic, Partition: tp.Partition}
}

func (fn *readFn) metricsFor(tp topicPartition) *partitionMetrics {
	if fn.metrics == nil {
		fn.metrics = make(map[topicPartition]*partitionMetrics)
	}
	m, ok := fn.metrics[tp]
	if !ok {
		m = &partitionMetrics{
			records: beam.NewCounter("kafkaio", counterName("records_read", tp.Topic, tp.Partition)),
			bytes:   beam.NewCounter("kafkaio", counterName("bytes_read", tp.Topic, tp.Partition)),
			skipped: beam.NewCounter("kafkaio", counterName("records_skipped", tp.Topic, tp.Partition)),
			errors:  beam.NewCounter("kafkaio", counterName("read_errors", tp.Topic, tp.Partition)),
			paused:  beam.NewCounter("kafkaio", counterName("read_paused", tp.Topic, tp.Partition)),
			lag:     beam.NewDistribution("kafkaio", counterName("consumer_lag", tp.Topic, tp.Partition)),
		}
		fn.metrics[tp] = m
	}
	return m
}

// partitionConsumer returns a consumer positioned at start, reusing the
// cached one when it is there already.
func (fn *readFn) partitionConsumer(ctx context.Context, tp topicPartition, start int64) (*cachedConsumer, error) {
	now := time.Now()
	if fn.pcs == nil {
		fn.pcs = make(map[topicPartition]*cachedConsumer)
	}
	for k, c := range fn.pcs {
		if k != tp && now.Sub(c.lastUsed) > idleConsumerTTL {
			c.pc.AsyncClose()
			delete(fn.pcs, k)
		}
	}
	if c, ok := fn.pcs[tp]; ok {
		if c.next == start {
			c.lastUsed = now
			return c, nil
		}
		c.pc.AsyncClose()
		delete(fn.pcs, tp)
	}
	client, err := fn.getClient()
	if err != nil {
		return nil, err
	}
	fn.mu.Lock()
	consumer := fn.consumer
	fn.mu.Unlock()
	pc, err := consumer.ConsumePartition(tp.Topic, tp.Partition, start)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		oldest, oerr := client.GetOffset(tp.Topic, tp.Partition, sarama.OffsetOldest)
		if oerr != nil {
			return nil, fmt.Errorf("kafkaio: earliest offset of %v: %w", tp, oerr)
		}
		if oldest <= start {
			// start is beyond the end of the log: the partition was
			// truncated or recreated; wait for it to grow.
			return nil, nil
		}
		log.Warnf(ctx, "kafkaio.Read: %v offsets [%d, %d) were deleted before they were read", tp, start, oldest)
		fn.metricsFor(tp).skipped.Inc(ctx, oldest-start)
		pc, err = consumer.ConsumePartition(tp.Topic, tp.Partition, oldest)
		start = oldest
	}
	if err != nil {
		return nil, fmt.Errorf("kafkaio: consume %v from offset %d: %w", tp, start, err)
	}
	c := &cachedConsumer{pc: pc, next: start, lastUsed: now}
	fn.pcs[tp] = c
	return c, nil
}

func (fn *readFn) dropConsumer(tp topicPartition) {
	if c, ok := fn.pcs[tp]; ok {
		c.pc.AsyncClose()
		delete(fn.pcs, tp)
	}
}

// ProcessElement reads one partition from the restriction's start until it
// checkpoints, catches up (unbounded) or reaches the restriction's end.
func (fn *readFn) ProcessElement(
	ctx context.Context,
	we *watermarkEstimator,
	rt *sdf.LockRTracker,
	elem topicPartition,
	emit func(beam.EventTime, Record),
	_ func(int), // never emitted: see Read
) (sdf.ProcessContinuation, error) {
	fn.jan.busy.Lock()
	defer func() {
		fn.jan.touch(fn.resetClient)
		fn.jan.busy.Unlock()
	}()
	rest := rt.GetRestriction().(offsetrange.Restriction)
	tp := key(elem)
	if pt, ok := rt.Rt.(*partitionTracker); ok {
		pt.busy.Store(true)
		defer pt.busy.Store(false)
		if pt.est != nil {
			pt.est.bind(tp)
		}
	}
	we.bind(fn.ReadID, tp)
	if fn.Group != "" {
		// Everything before the restriction's start was emitted by bundles
		// the runner has committed (it scheduled this residual only then).
		fn.commit(ctx, tp, rest.Start)
	}
	bounded := rest.End != noEnd
	dataEnd := rest.End // bounded: offsets of records to read are below dataEnd
	if bounded && fn.CommitSentinel {
		dataEnd = rest.End - 1
	}
	if bounded && rest.Start >= dataEnd {
		if rest.Start < rest.End {
			rt.TryClaim(rest.Start) // the sentinel: its commit is done above
		}
		we.forget()
		return sdf.StopProcessing(), nil
	}
	m := fn.metricsFor(tp)
	room := fn.room(ctx, tp)
	if room <= 0 {
		m.paused.Inc(ctx, 1)
		return sdf.ResumeProcessingIn(fn.PauseDelay), nil
	}
	c, err := fn.partitionConsumer(ctx, tp, rest.Start)
	if err != nil {
		// Returning the error would fail the bundle, and on Prism the whole
		// job: the broker may be restarting, so retry later instead, as any
		// Kafka consumer does.
		m.errors.Inc(ctx, 1)
		log.Warnf(ctx, "kafkaio.Read: %v (retrying in %v)", err, errorBackoff)
		if errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrClosedClient) {
			fn.resetClient()
		}
		return sdf.ResumeProcessingIn(errorBackoff), nil
	}
	if c == nil {
		return sdf.ResumeProcessingIn(fn.ResumeDelay), nil
	}

	var (
		count    int
		size     int64
		last     = rest.Start - 1 // last claimed offset
		idle     time.Duration
		deadline = time.Now().Add(fn.CheckpointInterval)
		timer    = time.NewTimer(fn.PollTimeout)
	)
	defer timer.Stop()
	finish := func(cont sdf.ProcessContinuation) (sdf.ProcessContinuation, error) {
		if count > 0 {
			m.records.Inc(ctx, int64(count))
			m.bytes.Inc(ctx, size)
			fn.readSince(tp, count)
		}
		hwm := c.pc.HighWaterMarkOffset()
		fn.setHWM(tp, hwm)
		m.lag.Update(ctx, max(hwm-(last+1), 0))
		if bounded && rt.IsDone() {
			we.forget()
		} else {
			we.publish()
		}
		return cont, nil
	}
	// end finishes a bounded restriction whose records were all read: with a
	// commit sentinel, checkpoint so the sentinel's run commits the end
	// offset once this bundle is committed.
	end := func() (sdf.ProcessContinuation, error) {
		if last < dataEnd-1 && !rt.TryClaim(dataEnd-1) { // skip a trailing gap
			return finish(sdf.StopProcessing())
		}
		last = dataEnd - 1
		if fn.CommitSentinel {
			return finish(sdf.ResumeProcessingIn(0))
		}
		return finish(sdf.StopProcessing())
	}

	// idleUnbounded gives a caught-up partition back to the runner for
	// ResumeDelay, advancing its watermark with the clock.
	idleUnbounded := func() (sdf.ProcessContinuation, error) {
		if !fn.DisableIdleWatermark {
			we.ObserveTimestamp(time.Now().Add(-fn.WatermarkDelay))
		}
		return finish(sdf.ResumeProcessingIn(fn.ResumeDelay))
	}

	for {
		var msg *sarama.ConsumerMessage
		if c.peek != nil {
			msg, c.peek = c.peek, nil
		} else {
			select {
			case msg = <-c.pc.Messages():
				if msg == nil { // consumer closed
					fn.dropConsumer(tp)
					return finish(sdf.ResumeProcessingIn(fn.ResumeDelay))
				}
			case cerr := <-c.pc.Errors():
				if cerr == nil {
					fn.dropConsumer(tp)
					return finish(sdf.ResumeProcessingIn(fn.ResumeDelay))
				}
				log.Warnf(ctx, "kafkaio.Read: %v: %v", tp, cerr.Err)
				continue
			case <-ctx.Done():
				fn.dropConsumer(tp)
				return finish(sdf.ResumeProcessingIn(fn.ResumeDelay))
			case <-timer.C:
				idle += fn.PollTimeout
				hwm := c.pc.HighWaterMarkOffset()
				if bounded {
					if hwm >= dataEnd && idle >= gapTimeout {
						// Every offset below dataEnd exists but no more records
						// come: the rest are transaction markers or compacted away.
						return end()
					}
					if hwm < dataEnd || time.Now().After(deadline) {
						return finish(sdf.ResumeProcessingIn(fn.ResumeDelay))
					}
				} else {
					if c.next >= hwm { // caught up
						return idleUnbounded()
					}
					if time.Now().After(deadline) {
						return finish(sdf.ResumeProcessingIn(0))
					}
				}
				timer.Reset(fn.PollTimeout)
				continue
			}
		}
		if msg.Offset < c.next {
			continue // sarama may deliver earlier offsets of a compressed batch
		}
		if bounded && msg.Offset >= dataEnd {
			c.peek = msg
			return end()
		}
		if !rt.TryClaim(msg.Offset) {
			// Beyond a split point: keep the record for the restriction
			// that owns it.
			c.peek = msg
			return finish(sdf.StopProcessing())
		}
		c.next = msg.Offset + 1
		last = msg.Offset
		idle = 0
		emit(mtimeOf(msg.Timestamp), recordOf(msg))
		we.ObserveTimestamp(msg.Timestamp.Add(-fn.WatermarkDelay))
		count++
		size += int64(len(msg.Key) + len(msg.Value))
		if bounded && msg.Offset >= dataEnd-1 {
			return end()
		}
		if int64(count) >= room {
			return finish(sdf.ResumeProcessingIn(fn.PauseDelay))
		}
		if count >= fn.MaxRecords || (count&63 == 0 && time.Now().After(deadline)) {
			return finish(sdf.ResumeProcessingIn(0))
		}
		if !bounded && len(c.pc.Messages()) == 0 && c.next >= c.pc.HighWaterMarkOffset() {
			// Caught up: give the bundle's other partitions their turn now
			// rather than after PollTimeout.
			return idleUnbounded()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(fn.PollTimeout)
	}
}

func (fn *readFn) setHWM(tp topicPartition, hwm int64) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.hwms == nil {
		fn.hwms = make(map[topicPartition]int64)
	}
	fn.hwms[tp] = hwm
}

// commit commits next for tp unless this instance committed it already.
// A failed commit is logged and counted, not returned: the next one catches
// up, and meanwhile a restart only replays more.
func (fn *readFn) commit(ctx context.Context, tp topicPartition, next int64) {
	if fn.committed == nil {
		fn.committed = make(map[topicPartition]int64)
	}
	if prev, ok := fn.committed[tp]; ok && prev == next {
		return
	}
	client, err := fn.getClient()
	if err == nil {
		err = commitOffsets(client, fn.Group, tp.Topic, map[int32]int64{tp.Partition: next})
	}
	if err != nil {
		beam.NewCounter("kafkaio", "commit_errors").Inc(ctx, 1)
		log.Warnf(ctx, "kafkaio.Read: %v", err)
		return
	}
	fn.committed[tp] = next
}

func recordOf(msg *sarama.ConsumerMessage) Record {
	return Record{
		Topic:     msg.Topic,
		Partition: msg.Partition,
		Offset:    msg.Offset,
		Key:       msg.Key,
		Value:     msg.Value,
		Timestamp: msg.Timestamp,
		Headers:   fromSaramaHeaders(msg.Headers),
	}
}

func mtimeOf(t time.Time) beam.EventTime {
	return beam.EventTime(t.UnixMilli())
}

// endEstimator estimates the end of an unbounded restriction as the
// partition's high-water mark: the one the reader last saw, or else the
// broker's, asked at most once a second.
type endEstimator struct {
	fn *readFn

	mu     sync.Mutex // Estimate runs on split and progress requests too
	tp     topicPartition
	bound  bool
	last   int64
	lastAt time.Time
}

func (e *endEstimator) bind(tp topicPartition) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tp, e.bound = tp, true
}

func (e *endEstimator) Estimate() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.bound {
		return e.last
	}
	e.fn.mu.Lock()
	hwm, ok := e.fn.hwms[e.tp]
	e.fn.mu.Unlock()
	if ok {
		e.last = max(e.last, hwm)
	}
	if ok || time.Since(e.lastAt) < time.Second {
		return e.last
	}
	e.lastAt = time.Now()
	client, err := e.fn.getClient()
	if err != nil {
		return e.last
	}
	if hwm, err = client.GetOffset(e.tp.Topic, e.tp.Partition, sarama.OffsetNewest); err == nil {
		e.last = max(e.last, hwm)
	}
	return e.last
}
