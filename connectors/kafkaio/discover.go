package kafkaio

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
)

// discoverFn is a splittable DoFn over a topic name whose restriction is the
// range of partition numbers [0, ∞): it claims and emits every partition it
// finds (Kafka only ever adds partitions, numbered from 0), resolving each
// partition's offset range. An unbounded read then checkpoints and looks
// again after Interval, so partitions added later are read too; a bounded
// read finishes after the first listing.
type discoverFn struct {
	Brokers        []string
	ClientID       string
	Security       Security
	Group          string
	Start          string
	Bounded        bool
	Sentinel       bool // end one past the high-water mark: see readFn.CommitSentinel
	Interval       time.Duration
	WatermarkDelay time.Duration
}

func (fn *discoverFn) CreateInitialRestriction(string) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: math.MaxInt64}
}

func (fn *discoverFn) SplitRestriction(_ string, rest offsetrange.Restriction) []offsetrange.Restriction {
	return []offsetrange.Restriction{rest}
}

func (fn *discoverFn) RestrictionSize(string, offsetrange.Restriction) float64 { return 1 }

func (fn *discoverFn) CreateTracker(rest offsetrange.Restriction) *sdf.LockRTracker {
	rt, _ := offsetrange.NewGrowableTracker(rest, constEstimator(rest.Start+1))
	return sdf.NewLockRTracker(rt)
}

// constEstimator estimates the number of partitions for progress reports.
type constEstimator int64

func (e constEstimator) Estimate() int64 { return int64(e) }

func (fn *discoverFn) TruncateRestriction(rt *sdf.LockRTracker, _ string) offsetrange.Restriction {
	start := rt.GetRestriction().(offsetrange.Restriction).Start
	return offsetrange.Restriction{Start: start, End: start}
}

func (fn *discoverFn) InitialWatermarkEstimatorState(et beam.EventTime, _ offsetrange.Restriction, _ string) int64 {
	return et.Milliseconds()
}

func (fn *discoverFn) CreateWatermarkEstimator(ms int64) *watermarkEstimator {
	return &watermarkEstimator{state: ms}
}

func (fn *discoverFn) WatermarkEstimatorState(we *watermarkEstimator) int64 { return we.state }

func (fn *discoverFn) ProcessElement(
	ctx context.Context,
	we *watermarkEstimator,
	rt *sdf.LockRTracker,
	topic string,
	emit func(beam.EventTime, topicPartition),
) (sdf.ProcessContinuation, error) {
	rest := rt.GetRestriction().(offsetrange.Restriction)
	first := rest.Start == 0
	// A client per listing: an unbounded read lists every Interval, and a
	// client kept between listings would outlive a cancelled job.
	scfg, err := fn.Security.saramaConfig(fn.ClientID)
	if err != nil {
		return sdf.ResumeProcessingIn(fn.retryDelay()), err // a missing password file or CA: fail
	}
	client, err := sarama.NewClient(fn.Brokers, scfg)
	if err == nil {
		defer client.Close()
	} else {
		err = fn.Security.connectError("connect to", fn.Brokers, err)
		if first {
			return sdf.ResumeProcessingIn(fn.retryDelay()), err
		}
		log.Warnf(ctx, "kafkaio.Read: %v", err)
		return fn.again(we)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		err = fmt.Errorf("kafkaio: partitions of topic %q (does it exist?): %w", topic, err)
		if first {
			return sdf.ResumeProcessingIn(fn.retryDelay()), err // fail fast on a bad configuration
		}
		log.Warnf(ctx, "kafkaio.Read: %v", err)
		return fn.again(we)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	var fresh []int32
	for _, p := range parts {
		if int64(p) >= rest.Start {
			fresh = append(fresh, p)
		}
	}
	start := fn.Start
	et := beam.EventTime(we.state)
	if !first {
		// A partition added while the pipeline runs is read from its
		// beginning; its records count from the current watermark.
		start = StartEarliest
		et = mtimeOf(time.Now().Add(-fn.WatermarkDelay))
	}
	starts, err := resolveStarts(client, fn.Group, start, topic, fresh)
	if err != nil {
		if first {
			return sdf.ResumeProcessingIn(fn.retryDelay()), err
		}
		log.Warnf(ctx, "kafkaio.Read: %v", err)
		return fn.again(we)
	}
	for _, p := range fresh {
		end := int64(noEnd)
		if fn.Bounded {
			if end, err = client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
				return sdf.ResumeProcessingIn(fn.retryDelay()), fmt.Errorf("kafkaio: end offset of %s/%d: %w", topic, p, err)
			}
		}
		tp := topicPartition{Topic: topic, Partition: p, Start: min(starts[p], end), End: end}
		if fn.Sentinel {
			tp.End++
		}
		if !rt.TryClaim(int64(p)) {
			return sdf.StopProcessing(), nil
		}
		if !first {
			log.Infof(ctx, "kafkaio.Read: new partition %v, reading from offset %d", tp, tp.Start)
		}
		emit(et, tp)
	}
	if fn.Bounded || fn.Interval < 0 {
		rt.TryClaim(int64(math.MaxInt64 - 1)) // done
		return sdf.StopProcessing(), nil
	}
	return fn.again(we)
}

func (fn *discoverFn) again(we *watermarkEstimator) (sdf.ProcessContinuation, error) {
	we.ObserveTimestamp(time.Now().Add(-fn.WatermarkDelay))
	return sdf.ResumeProcessingIn(fn.Interval), nil
}

func (fn *discoverFn) retryDelay() time.Duration {
	if fn.Interval > 0 && fn.Interval < 5*time.Second {
		return fn.Interval
	}
	return 5 * time.Second
}
