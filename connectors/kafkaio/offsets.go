package kafkaio

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Start positions accepted by ReadConfig.Start (besides an RFC 3339 time).
const (
	StartCommitted = "committed"
	StartEarliest  = "earliest"
	StartLatest    = "latest"
)

// UntilLatest is the ReadConfig.Until value for a bounded read.
const UntilLatest = "latest"

// noEnd is the end of an unbounded restriction.
const noEnd = math.MaxInt64

// topicPartition is the element the discovery DoFn emits and the read SDF
// consumes: one partition with its resolved start and end offsets.
type topicPartition struct {
	Topic     string
	Partition int32
	Start     int64 // first offset to read
	End       int64 // exclusive; noEnd when unbounded
}

func (tp topicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// resolveStarts returns the first offset to read for every partition of
// topic. start is one of the Start* constants or an RFC 3339 time.
func resolveStarts(client sarama.Client, group, start, topic string, parts []int32) (map[int32]int64, error) {
	out := make(map[int32]int64, len(parts))
	var committed map[int32]int64
	if start == StartCommitted {
		c, err := fetchCommitted(client, group, topic, parts)
		if err != nil {
			return nil, err
		}
		committed = c
	}
	for _, p := range parts {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("kafkaio: earliest offset of %s/%d: %w", topic, p, err)
		}
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("kafkaio: latest offset of %s/%d: %w", topic, p, err)
		}
		var off int64
		switch start {
		case StartEarliest:
			off = oldest
		case StartLatest:
			off = newest
		case StartCommitted:
			off = oldest
			if c, ok := committed[p]; ok && c >= 0 {
				off = c
			}
		default:
			t, err := time.Parse(time.RFC3339Nano, start)
			if err != nil {
				return nil, fmt.Errorf("kafkaio: start %q: %w", start, err)
			}
			off, err = client.GetOffset(topic, p, t.UnixMilli())
			if err != nil {
				return nil, fmt.Errorf("kafkaio: offset of %s/%d at %v: %w", topic, p, t, err)
			}
			if off < 0 { // no record at or after t
				off = newest
			}
		}
		// A committed offset may have been deleted by retention, or be
		// beyond the end after a topic was recreated.
		off = min(max(off, oldest), newest)
		out[p] = off
	}
	return out, nil
}

// withCoordinator calls call with group's coordinator, up to attempts
// times: again after a growing pause and a coordinator refresh when the
// coordinator cannot be found, the request fails, or call says to retry. It
// returns nil once call succeeds, else the last error.
func withCoordinator(client sarama.Client, group string, attempts int, call func(coord *sarama.Broker) (retry bool, err error)) error {
	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
			_ = client.RefreshCoordinator(group)
		}
		coord, err := client.Coordinator(group)
		if err != nil {
			lastErr = err
			continue
		}
		retry, err := call(coord)
		if err == nil {
			return nil
		}
		lastErr = err
		if !retry {
			break
		}
	}
	return lastErr
}

// fetchCommitted returns the group's committed offsets for the partitions of
// topic that have one.
func fetchCommitted(client sarama.Client, group, topic string, parts []int32) (map[int32]int64, error) {
	out := make(map[int32]int64, len(parts))
	var blockErr error // a partition's own error: final, not retried
	err := withCoordinator(client, group, 5, func(coord *sarama.Broker) (bool, error) {
		req := sarama.NewOffsetFetchRequest(client.Config().Version, group, map[string][]int32{topic: parts})
		resp, err := coord.FetchOffset(req)
		if err != nil {
			return true, err
		}
		kerr := responseErr(resp)
		if kerr == sarama.ErrGroupIDNotFound { // kfake: a group that never committed
			return false, nil
		}
		if kerr != sarama.ErrNoError {
			return retriable(kerr), kerr
		}
		for _, p := range parts {
			b := resp.GetBlock(topic, p)
			if b == nil {
				continue
			}
			if b.Err != sarama.ErrNoError {
				blockErr = fmt.Errorf("kafkaio: committed offset of group %q for %s/%d: %w", group, topic, p, b.Err)
				return false, nil
			}
			if b.Offset >= 0 {
				out[p] = b.Offset
			}
		}
		return false, nil
	})
	if blockErr != nil {
		return nil, blockErr
	}
	if err != nil {
		return nil, fmt.Errorf("kafkaio: fetch committed offsets of group %q (is the group coordinator reachable?): %w", group, err)
	}
	return out, nil
}

func responseErr(resp *sarama.OffsetFetchResponse) sarama.KError {
	if resp.Err != sarama.ErrNoError {
		return resp.Err
	}
	for _, g := range resp.Groups {
		if g.Err != sarama.ErrNoError {
			return g.Err
		}
	}
	return sarama.ErrNoError
}

func retriable(err sarama.KError) bool {
	switch err {
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable,
		sarama.ErrOffsetsLoadInProgress, sarama.ErrRequestTimedOut, sarama.ErrNetworkException:
		return true
	}
	return false
}

// commitOffsets commits next-offsets (the offset of the next record to
// read) for the given partitions of topic, as a simple (non-member) consumer.
func commitOffsets(client sarama.Client, group, topic string, offsets map[int32]int64) error {
	err := withCoordinator(client, group, 3, func(coord *sarama.Broker) (bool, error) {
		req := &sarama.OffsetCommitRequest{
			Version:                 commitVersion(client.Config().Version),
			ConsumerGroup:           group,
			ConsumerGroupGeneration: sarama.GroupGenerationUndefined,
			RetentionTime:           -1,
		}
		for p, off := range offsets {
			req.AddBlock(topic, p, off, 0, "")
		}
		resp, err := coord.CommitOffset(req)
		if err != nil {
			return true, err
		}
		var errs []string
		retry := false
		for t, ps := range resp.Errors {
			for p, kerr := range ps {
				if kerr != sarama.ErrNoError {
					errs = append(errs, fmt.Sprintf("%s/%d: %v", t, p, kerr))
					retry = retry || retriable(kerr)
				}
			}
		}
		if len(errs) == 0 {
			return false, nil
		}
		return retry, errors.New(strings.Join(errs, "; "))
	})
	if err != nil {
		return fmt.Errorf("kafkaio: commit offsets of group %q: %w", group, err)
	}
	return nil
}

func commitVersion(v sarama.KafkaVersion) int16 {
	switch {
	case v.IsAtLeast(sarama.V2_4_0_0):
		return 8
	case v.IsAtLeast(sarama.V2_3_0_0):
		return 7
	case v.IsAtLeast(sarama.V2_1_0_0):
		return 6
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 4
	case v.IsAtLeast(sarama.V0_11_0_0):
		return 3
	case v.IsAtLeast(sarama.V0_9_0_0):
		return 2
	}
	return 1
}
