package devstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
)

// Lines reads the non-empty lines of a JSONL file, verbatim (malformed lines
// included: they are test input for the dead-letter path).
func Lines(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), pushflow.MaxRecordBytes*2)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	return out, sc.Err()
}

// Key is the Kafka key the contract gives a record: "id" for requests,
// "app/user_id" for device events. Unparseable records get no key.
func Key(topicKind string, value []byte) []byte {
	var m struct {
		ID     string `json:"id"`
		App    string `json:"app"`
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(value, &m) != nil {
		return nil
	}
	switch topicKind {
	case pushflow.TopicDevices:
		if m.App != "" || m.UserID != "" {
			return []byte(m.App + "/" + m.UserID)
		}
	default:
		if m.ID != "" {
			return []byte(m.ID)
		}
	}
	return nil
}

// Produce writes values to topic with the contract's keys, synchronously.
// keyKind is pushflow.TopicRequests or pushflow.TopicDevices.
func Produce(ctx context.Context, brokers []string, topic, keyKind string, values [][]byte) error {
	cfg := kafkaio.NewSaramaConfig("pushflow-devstack")
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.MaxMessageBytes = 2 * pushflow.MaxRecordBytes
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return fmt.Errorf("devstack: producer: %w", err)
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, len(values))
	for i, v := range values {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(v)}
		if k := Key(keyKind, v); k != nil {
			msgs[i].Key = sarama.ByteEncoder(k)
		}
	}
	if err := p.SendMessages(msgs); err != nil {
		return fmt.Errorf("devstack: produce %d records to %s: %w", len(msgs), topic, err)
	}
	return ctx.Err()
}

// ProduceFile produces every line of a JSONL file to topic.
func ProduceFile(ctx context.Context, brokers []string, topic, keyKind, path string) (int, error) {
	lines, err := Lines(path)
	if err != nil {
		return 0, err
	}
	return len(lines), Produce(ctx, brokers, topic, keyKind, lines)
}

// ApplyDevicesFile writes the valid device events of a JSONL file straight
// into the registry at redisAddr through the registry's own write path
// (redisio.Registry.Apply), skipping the lines that do not decode. It lets a
// pipeline other than registry run alone on the dev stack.
func ApplyDevicesFile(ctx context.Context, redisAddr, path string) (applied int, err error) {
	lines, err := Lines(path)
	if err != nil {
		return 0, err
	}
	var evs []pushflow.DeviceEvent
	for _, l := range lines {
		if ev, err := pushflow.DecodeDeviceEvent(l); err == nil {
			evs = append(evs, ev)
		}
	}
	reg := redisio.Open(redisAddr)
	defer reg.Close()
	if err := reg.Apply(ctx, evs); err != nil {
		return 0, fmt.Errorf("devstack: %w", err)
	}
	return len(evs), nil
}

// UnregisterTokensFile makes the APNs test server answer 410 Unregistered
// for every token listed in path (one per line, # comments).
func (st *Stack) UnregisterTokensFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			st.APNs.Unregister(l)
		}
	}
	return nil
}

// ReadTopic returns the values of every record of topic, from the earliest
// offset to the end offsets at the time of the call, partition by partition.
func ReadTopic(brokers []string, topic string) ([][]byte, error) {
	c, err := sarama.NewClient(brokers, kafkaio.NewSaramaConfig("pushflow-devstack-reader"))
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	defer c.Close()
	consumer, err := sarama.NewConsumerFromClient(c)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	defer consumer.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("devstack: partitions of %s: %w", topic, err)
	}
	var out [][]byte
	for _, p := range parts {
		end, err := c.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("devstack: end offset of %s/%d: %w", topic, p, err)
		}
		start, err := c.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("devstack: start offset of %s/%d: %w", topic, p, err)
		}
		if start >= end {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, start)
		if err != nil {
			return nil, fmt.Errorf("devstack: consume %s/%d: %w", topic, p, err)
		}
		for m := range pc.Messages() {
			out = append(out, m.Value)
			if m.Offset >= end-1 {
				break
			}
		}
		pc.Close()
	}
	return out, nil
}

// CreateTopic creates topic with the given partitions (replication 1), so a
// test or benchmark can use a fresh topic without relying on auto-creation.
func CreateTopic(brokers []string, topic string, partitions int32) error {
	admin, err := sarama.NewClusterAdmin(brokers, kafkaio.NewSaramaConfig("pushflow-devstack-admin"))
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		return fmt.Errorf("devstack: create topic %s: %w", topic, err)
	}
	return nil
}
