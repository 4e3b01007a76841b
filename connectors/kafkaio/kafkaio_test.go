package kafkaio

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/twmb/franz-go/pkg/kfake"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) {
	log.LogLevel = "warn"
	// Close idle clients sooner than in production, so that the clients of
	// cancelled pipelines are gone by TestNoClientLeakAfterCancel.
	idleTTL.Store(int64(2 * time.Second))
	ptest.Main(m)
}

func init() {
	beam.RegisterFunction(valueOf)
	beam.RegisterFunction(badTimestamp)
	beam.RegisterType(reflect.TypeOf((*collectFn)(nil)).Elem())
}

// --- helpers -------------------------------------------------------------

// startCluster starts an in-process Kafka-protocol broker with the topics
// seeded with the given number of partitions.
func startCluster(t testing.TB, partitions int32, topics ...string) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...), kfake.Ports(0))
	if err != nil {
		t.Fatalf("kfake.NewCluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// produce writes msgs with a raw sarama producer; msgs[i].Partition picks
// the partition.
func produce(t testing.TB, brokers []string, msgs []*sarama.ProducerMessage) {
	t.Helper()
	cfg := NewSaramaConfig("test-producer")
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatalf("NewSyncProducer: %v", err)
	}
	defer p.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), 2000)
		if err := p.SendMessages(msgs[:n]); err != nil {
			t.Fatalf("SendMessages: %v", err)
		}
		msgs = msgs[n:]
	}
}

// produceN writes n records "<prefix>-<i>" spread round-robin over parts
// partitions and returns the values.
func produceN(t testing.TB, brokers []string, topic, prefix string, n int, parts int32) []string {
	t.Helper()
	var msgs []*sarama.ProducerMessage
	var vals []string
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("%s-%d", prefix, i)
		vals = append(vals, v)
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic: topic, Partition: int32(i) % parts,
			Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(v),
		})
	}
	produce(t, brokers, msgs)
	return vals
}

func valueOf(r Record) string { return string(r.Value) }

// badTimestamp emits a description of r when its element timestamp is not
// its record timestamp.
func badTimestamp(et beam.EventTime, r Record, emit func(string)) {
	if int64(et) != r.Timestamp.UnixMilli() {
		emit(fmt.Sprintf("%s/%d@%d: element time %v, record time %v", r.Topic, r.Partition, r.Offset, et.ToTime(), r.Timestamp))
	}
}

// collected holds what collectFn saw, by key: Prism runs in process, so the
// test reads it after (or while) the pipeline runs.
var collected = struct {
	sync.Mutex
	m map[string][]Record
}{m: map[string][]Record{}}

type collectFn struct{ Key string }

func (f *collectFn) ProcessElement(r Record) {
	collected.Lock()
	defer collected.Unlock()
	collected.m[f.Key] = append(collected.m[f.Key], r)
}

func collect(s beam.Scope, key string, recs beam.PCollection) {
	collected.Lock()
	delete(collected.m, key)
	collected.Unlock()
	beam.ParDo0(s, &collectFn{Key: key}, recs)
}

func got(key string) []Record {
	collected.Lock()
	defer collected.Unlock()
	out := append([]Record(nil), collected.m[key]...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out
}

func values(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	sort.Strings(out)
	return out
}

func bounded(brokers []string, topics ...string) ReadConfig {
	return ReadConfig{Brokers: brokers, Topics: topics, Until: UntilLatest}
}

func run(t *testing.T, p *beam.Pipeline) {
	t.Helper()
	if err := ptest.Run(p); err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}
}

// --- tests ---------------------------------------------------------------

func TestReadBoundedMultiPartition(t *testing.T) {
	_, brokers := startCluster(t, 3, "t")
	want := produceN(t, brokers, "t", "v", 3000, 3)

	p, s := beam.NewPipelineWithRoot()
	recs := Read(s, bounded(brokers, "t"))
	passert.EqualsList(s, beam.ParDo(s, valueOf, recs), want)
	passert.Empty(s, beam.ParDo(s, badTimestamp, recs))
	collect(s, t.Name(), recs)
	pr, err := ptest.RunWithMetrics(p)
	if err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}
	readCounts := map[string]int64{}
	for _, c := range pr.Metrics().AllMetrics().Counters() {
		if c.Namespace() == "kafkaio" {
			readCounts[c.Name()] += c.Result()
		}
	}
	for p := 0; p < 3; p++ {
		if n := readCounts[fmt.Sprintf("records_read/t/%d", p)]; n != 1000 {
			t.Errorf("counter records_read/t/%d = %d, want 1000 (all: %v)", p, n, readCounts)
		}
	}

	recs2 := got(t.Name())
	perPart := map[int32]int{}
	for i, r := range recs2 {
		perPart[r.Partition]++
		if i > 0 && recs2[i-1].Partition == r.Partition && recs2[i-1].Offset == r.Offset {
			t.Errorf("duplicate %s/%d@%d", r.Topic, r.Partition, r.Offset)
		}
	}
	if len(perPart) != 3 || perPart[0] != 1000 || perPart[1] != 1000 || perPart[2] != 1000 {
		t.Errorf("records per partition = %v, want 1000 each of 3", perPart)
	}
}

func TestReadBoundedEmpty(t *testing.T) {
	_, brokers := startCluster(t, 3, "empty", "one")
	// "one" has records in partition 1 only.
	produce(t, brokers, []*sarama.ProducerMessage{
		{Topic: "one", Partition: 1, Value: sarama.StringEncoder("a")},
		{Topic: "one", Partition: 1, Value: sarama.StringEncoder("b")},
	})

	p, s := beam.NewPipelineWithRoot()
	passert.Empty(s, Read(s.Scope("empty"), bounded(brokers, "empty")))
	passert.Equals(s, beam.ParDo(s, valueOf, Read(s.Scope("one"), bounded(brokers, "one"))), "a", "b")
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(t, p)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("bounded read of an empty topic did not terminate in 60s")
	}
}

func TestWriteThenRead(t *testing.T) {
	_, brokers := startCluster(t, 2, "out", "other")
	var msgs []Message
	for i := 0; i < 200; i++ {
		m := Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))}
		if i%2 == 0 {
			m.Headers = []Header{{Key: "h1", Value: []byte("x")}, {Key: "h2", Value: []byte{0, 1, 2}}}
		}
		if i%10 == 0 {
			m.Topic = "other"
		}
		msgs = append(msgs, m)
	}
	p, s := beam.NewPipelineWithRoot()
	Write(s, WriteConfig{Brokers: brokers, Topic: "out", BatchSize: 64}, beam.CreateList(s, msgs))
	run(t, p)

	p, s = beam.NewPipelineWithRoot()
	collect(s, t.Name(), Read(s, bounded(brokers, "out", "other")))
	run(t, p)

	recs := got(t.Name())
	if len(recs) != len(msgs) {
		t.Fatalf("read %d records, want %d", len(recs), len(msgs))
	}
	byKey := map[string]Record{}
	for _, r := range recs {
		byKey[string(r.Key)] = r
	}
	for _, m := range msgs {
		r, ok := byKey[string(m.Key)]
		if !ok {
			t.Errorf("key %q not read back", m.Key)
			continue
		}
		wantTopic := m.Topic
		if wantTopic == "" {
			wantTopic = "out"
		}
		if r.Topic != wantTopic || !bytes.Equal(r.Value, m.Value) || !reflect.DeepEqual(r.Headers, m.Headers) {
			t.Errorf("key %q: read topic %q value %q headers %v, want %q %q %v", m.Key, r.Topic, r.Value, r.Headers, wantTopic, m.Value, m.Headers)
		}
	}
}

func TestHugeAndBinaryValues(t *testing.T) {
	_, brokers := startCluster(t, 1, "bin")
	rng := rand.New(rand.NewSource(1))
	huge := make([]byte, 900<<10)
	rng.Read(huge)
	garbage := make([]byte, 4096)
	rng.Read(garbage)
	msgs := []Message{
		{Key: []byte("huge"), Value: huge},
		{Key: []byte("garbage"), Value: garbage},
		{Key: []byte("nul"), Value: []byte{0, 0, 0xff, 0xfe, '\n', 0}},
		{Key: []byte{0xff, 0, 0x80}, Value: []byte("binary key")},
		{Key: []byte("empty"), Value: []byte{}},
		{Key: []byte("nil")},
	}
	p, s := beam.NewPipelineWithRoot()
	Write(s, WriteConfig{Brokers: brokers, Topic: "bin"}, beam.CreateList(s, msgs))
	run(t, p)

	p, s = beam.NewPipelineWithRoot()
	collect(s, t.Name(), Read(s, bounded(brokers, "bin")))
	run(t, p)

	recs := got(t.Name())
	if len(recs) != len(msgs) {
		t.Fatalf("read %d records, want %d", len(recs), len(msgs))
	}
	for i, m := range msgs {
		r := recs[i] // one partition: offset order is write order
		if !bytes.Equal(r.Key, m.Key) || !bytes.Equal(r.Value, m.Value) {
			t.Errorf("record %d: key %q, %d value bytes; want key %q, %d bytes (equal=%v)",
				i, r.Key, len(r.Value), m.Key, len(m.Value), bytes.Equal(r.Value, m.Value))
		}
	}
}

func TestStartPositions(t *testing.T) {
	_, brokers := startCluster(t, 2, "ts")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var msgs []*sarama.ProducerMessage
	for i := 0; i < 40; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic: "ts", Partition: int32(i % 2), Value: sarama.StringEncoder(fmt.Sprint(i)),
			Timestamp: base.Add(time.Duration(i) * time.Minute),
		})
	}
	produce(t, brokers, msgs)

	p, s := beam.NewPipelineWithRoot()
	latest := bounded(brokers, "ts")
	latest.Start = StartLatest
	passert.Empty(s, Read(s.Scope("latest"), latest))

	at := bounded(brokers, "ts")
	at.Start = base.Add(30 * time.Minute).Format(time.RFC3339Nano)
	var want []string
	for i := 30; i < 40; i++ {
		want = append(want, fmt.Sprint(i))
	}
	recs := Read(s.Scope("time"), at)
	passert.EqualsList(s, beam.ParDo(s, valueOf, recs), want)
	passert.Empty(s, beam.ParDo(s, badTimestamp, recs))

	future := bounded(brokers, "ts")
	future.Start = time.Now().Add(time.Hour).Format(time.RFC3339)
	passert.Empty(s, Read(s.Scope("future"), future))
	run(t, p)
}

func TestCommittedOffsets(t *testing.T) {
	_, brokers := startCluster(t, 3, "c")
	first := produceN(t, brokers, "c", "first", 300, 3)

	cfg := bounded(brokers, "c")
	cfg.Group = "g"
	cfg.MaxRecordsPerCheckpoint = 40 // several bundles, several commits

	p, s := beam.NewPipelineWithRoot()
	passert.EqualsList(s, beam.ParDo(s, valueOf, Read(s, cfg)), first)
	run(t, p)

	client, err := sarama.NewClient(brokers, NewSaramaConfig("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	committed, err := fetchCommitted(client, "g", "c", []int32{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 100, 1: 100, 2: 100}; !reflect.DeepEqual(committed, want) {
		t.Errorf("committed offsets after the first read = %v, want %v", committed, want)
	}

	second := produceN(t, brokers, "c", "second", 90, 3)
	p, s = beam.NewPipelineWithRoot()
	passert.EqualsList(s, beam.ParDo(s, valueOf, Read(s, cfg)), second)
	run(t, p)
}

// runStreaming runs p on Prism in the background; stop cancels it and
// waits (at most 30s) for it to end.
func runStreaming(t *testing.T, p *beam.Pipeline) (ended <-chan error, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := beam.Run(ctx, "prism", p)
		done <- err
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("pipeline did not stop within 30s of cancel")
		}
	}
	t.Cleanup(stop)
	return done, stop
}

// waitFor waits until the collector under key holds n records.
func waitFor(t *testing.T, key string, n int, ended <-chan error, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(got(key)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d records after 60s, want %d", what, len(got(key)), n)
		}
		select {
		case err := <-ended:
			t.Fatalf("pipeline ended early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestUnbounded(t *testing.T) {
	_, brokers := startCluster(t, 3, "live")
	before := produceN(t, brokers, "live", "before", 30, 3)

	p, s := beam.NewPipelineWithRoot()
	collect(s, t.Name(), Read(s, ReadConfig{Brokers: brokers, Topics: []string{"live"}}))
	ended, stop := runStreaming(t, p)

	waitFor(t, t.Name(), len(before), ended, "records produced before start")
	after := produceN(t, brokers, "live", "after", 60, 3)
	start := time.Now()
	waitFor(t, t.Name(), len(before)+len(after), ended, "records produced while running")
	t.Logf("60 records produced while running arrived within %v", time.Since(start))

	want := append(append([]string(nil), before...), after...)
	sort.Strings(want)
	if gotVals := values(got(t.Name())); !reflect.DeepEqual(gotVals, want) {
		t.Errorf("unbounded read = %v, want %v", gotVals, want)
	}
	stop()
}
