package kafkaio

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
)

func init() {
	beam.RegisterFunction(countRecord)
	beam.RegisterFunction(recordLatency)
	beam.RegisterFunction(one)
	beam.RegisterFunction(countOne)
	beam.RegisterFunction(checkCount)
	beam.RegisterFunction(genMessages)
	beam.RegisterFunction(dropMessage)
}

// genMessages emits n messages with 200-byte values.
func genMessages(n int, emit func(Message)) {
	val := make([]byte, 200)
	for i := 0; i < n; i++ {
		emit(Message{Key: []byte(strconv.Itoa(i)), Value: val})
	}
}

func dropMessage(Message) {}

var benchCount atomic.Int64

func countRecord(Record) { benchCount.Add(1) }

func one(Record) int { return 1 }

func countOne(r Record) int { benchCount.Add(1); return 1 }

func checkCount(n int) { benchCount.Add(int64(n)) }

// benchRecords is the number of records per benchmark iteration
// (KAFKAIO_BENCH_RECORDS overrides it).
func benchRecords() int {
	if n, err := strconv.Atoi(os.Getenv("KAFKAIO_BENCH_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 200000
}

func benchMessages(topic string, n int, parts int32) []*sarama.ProducerMessage {
	msgs := make([]*sarama.ProducerMessage, n)
	val := make([]byte, 200)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{
			Topic: topic, Partition: int32(i) % parts,
			Key: sarama.StringEncoder(strconv.Itoa(i)), Value: sarama.ByteEncoder(val),
		}
	}
	return msgs
}

// rawConsume reads every partition of topic from the earliest offset to the
// high-water mark with a plain sarama consumer and returns the record count.
func rawConsume(b *testing.B, brokers []string, topic string) int64 {
	b.Helper()
	client, err := sarama.NewClient(brokers, NewSaramaConfig("bench-raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		b.Fatal(err)
	}
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			b.Fatal(err)
		}
		if hwm == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close()
			for m := range pc.Messages() {
				total.Add(1)
				if m.Offset >= hwm-1 {
					return
				}
			}
		}()
	}
	wg.Wait()
	return total.Load()
}

// BenchmarkRead compares a bounded Read on Prism with a raw sarama consumer
// reading the same topic (3 partitions, 200-byte values). Metrics:
// records/s of each and their ratio.
func BenchmarkRead(b *testing.B) {
	cps := []int{0}
	if v := os.Getenv("KAFKAIO_BENCH_CHECKPOINTS"); v != "" {
		cps = nil
		for _, f := range strings.Split(v, ",") {
			n, _ := strconv.Atoi(f)
			cps = append(cps, n)
		}
	}
	for _, cp := range cps {
		for _, sink := range []string{"terminal", "combine", "dangling"} {
			name := "sink=" + sink
			if cp > 0 {
				name += fmt.Sprintf(",checkpoint=%d", cp)
			}
			b.Run(name, func(b *testing.B) { benchRead(b, cp, sink) })
		}
	}
}

// benchRead reads a bounded topic into either a terminal ParDo0 (the fused
// stage has no output) or a global combine (it has one).
func benchRead(b *testing.B, cp int, sink string) {
	n := benchRecords()
	_, brokers := startCluster(b, 3, "bench")
	produce(b, brokers, benchMessages("bench", n, 3))

	var rawDur, beamDur time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if got := rawConsume(b, brokers, "bench"); got != int64(n) {
			b.Fatalf("raw consume read %d records, want %d", got, n)
		}
		rawDur += time.Since(start)

		benchCount.Store(0)
		p, s := beam.NewPipelineWithRoot()
		cfg := bounded(brokers, "bench")
		cfg.MaxRecordsPerCheckpoint = cp
		recs := Read(s, cfg)
		switch sink {
		case "terminal":
			beam.ParDo0(s, countRecord, recs)
		case "dangling": // an output PCollection nobody reads
			beam.ParDo(s, countOne, recs)
		default:
			beam.ParDo0(s, checkCount, stats.Sum(s, beam.ParDo(s, one, recs)))
		}
		start = time.Now()
		if err := ptest.Run(p); err != nil {
			b.Fatal(err)
		}
		beamDur += time.Since(start)
		if got := benchCount.Load(); got != int64(n) {
			b.Fatalf("Read emitted %d records, want %d", got, n)
		}
	}
	raw := float64(n*b.N) / rawDur.Seconds()
	rd := float64(n*b.N) / beamDur.Seconds()
	b.ReportMetric(raw, "raw_rec/s")
	b.ReportMetric(rd, "read_rec/s")
	b.ReportMetric(rd/raw, "read/raw")
}

// BenchmarkWrite compares Write on Prism with a raw sarama SyncProducer
// sending the same messages in batches of 1000 (3 partitions, 200-byte
// values). Metrics: records/s of each and their ratio.
func BenchmarkWrite(b *testing.B) {
	n := benchRecords()
	_, brokers := startCluster(b, 3, "raw", "beam")
	val := make([]byte, 200)
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Key: []byte(strconv.Itoa(i)), Value: val}
	}

	var rawDur, beamDur, noopDur time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		cfg := NewSaramaConfig("bench-raw")
		p, err := sarama.NewSyncProducer(brokers, cfg)
		if err != nil {
			b.Fatal(err)
		}
		batch := make([]*sarama.ProducerMessage, 0, DefaultBatchSize)
		for _, m := range msgs {
			batch = append(batch, &sarama.ProducerMessage{Topic: "raw", Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(m.Value)})
			if len(batch) == cap(batch) {
				if err := p.SendMessages(batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := p.SendMessages(batch); err != nil {
			b.Fatal(err)
		}
		p.Close()
		rawDur += time.Since(start)

		pl, s := beam.NewPipelineWithRoot()
		Write(s, WriteConfig{Brokers: brokers, Topic: "beam"}, beam.ParDo(s, genMessages, beam.Create(s, n)))
		start = time.Now()
		if err := ptest.Run(pl); err != nil {
			b.Fatal(err)
		}
		beamDur += time.Since(start)

		pl, s = beam.NewPipelineWithRoot()
		beam.ParDo0(s, dropMessage, beam.ParDo(s, genMessages, beam.Create(s, n)))
		start = time.Now()
		if err := ptest.Run(pl); err != nil {
			b.Fatal(err)
		}
		noopDur += time.Since(start)
	}
	raw := float64(n*b.N) / rawDur.Seconds()
	wr := float64(n*b.N) / beamDur.Seconds()
	b.ReportMetric(raw, "raw_rec/s")
	b.ReportMetric(wr, "write_rec/s")
	b.ReportMetric(wr/raw, "write/raw")
	b.ReportMetric(float64(n*b.N)/noopDur.Seconds(), "gen+drop_rec/s")
}

var latencies = struct {
	sync.Mutex
	d []time.Duration
}{}

func recordLatency(r Record) {
	latencies.Lock()
	latencies.d = append(latencies.d, time.Since(r.Timestamp))
	latencies.Unlock()
}

// BenchmarkStreamingLatency measures, on an unbounded read of 3 partitions
// with default settings, the time from produce (the record's CreateTime) to
// the record reaching the DoFn after Read, at 20 records/s. Metrics: p50 and
// p99 in milliseconds.
func BenchmarkStreamingLatency(b *testing.B) {
	_, brokers := startCluster(b, 3, "lat")
	cfg := NewSaramaConfig("lat-producer")
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()

	latencies.Lock()
	latencies.d = nil
	latencies.Unlock()
	p, s := beam.NewPipelineWithRoot()
	beam.ParDo0(s, recordLatency, Read(s, ReadConfig{Brokers: brokers, Topics: []string{"lat"}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		beam.Run(ctx, "prism", p)
	}()
	time.Sleep(2 * time.Second) // let the read start
	b.ResetTimer()
	n := 100 * b.N
	for i := 0; i < n; i++ {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "lat", Partition: int32(i % 3), Value: sarama.StringEncoder("x")}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		latencies.Lock()
		got := len(latencies.d)
		latencies.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	latencies.Lock()
	d := append([]time.Duration(nil), latencies.d...)
	latencies.Unlock()
	if len(d) < n {
		b.Fatalf("%d of %d records arrived", len(d), n)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, "max_ms")
}
