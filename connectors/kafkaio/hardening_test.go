package kafkaio

import (
	"fmt"
	"net"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/twmb/franz-go/pkg/kfake"
)

func init() {
	beam.RegisterFunction(constKey)
	beam.RegisterFunction(toMessage)
	beam.RegisterType(reflect.TypeOf((*windowCollectFn)(nil)).Elem())
}

func constKey(Record) string { return "k" }

// windows holds, by test, the end of every window a count fired for.
var windows = struct {
	sync.Mutex
	m map[string][]time.Time
}{m: map[string][]time.Time{}}

type windowCollectFn struct{ Key string }

func (f *windowCollectFn) ProcessElement(w beam.Window, _ string, _ int) {
	windows.Lock()
	defer windows.Unlock()
	windows.m[f.Key] = append(windows.m[f.Key], w.MaxTimestamp().ToTime())
}

func firedWindows(key string) int {
	windows.Lock()
	defer windows.Unlock()
	return len(windows.m[key])
}

// TestIdlePartitionWatermark reads two partitions of which only one gets
// records, into 1 s fixed windows: the windows must fire, i.e. the idle
// partition must not hold the watermark back. With DisableIdleWatermark
// they must not.
func TestIdlePartitionWatermark(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableIdleWatermark=%v", disable), func(t *testing.T) {
			_, brokers := startCluster(t, 2, "idle")
			windows.Lock()
			delete(windows.m, t.Name())
			windows.Unlock()
			p, s := beam.NewPipelineWithRoot()
			recs := Read(s, ReadConfig{Brokers: brokers, Topics: []string{"idle"}, DisableIdleWatermark: disable})
			counts := stats.Count(s, beam.ParDo(s, constKey, beam.WindowInto(s, window.NewFixedWindows(time.Second), recs)))
			beam.ParDo0(s, &windowCollectFn{Key: t.Name()}, counts)
			ended, stop := runStreaming(t, p)
			defer stop()

			// Partition 0 gets a record every 100 ms, partition 1 nothing.
			cfg := NewSaramaConfig("idle-producer")
			cfg.Producer.Partitioner = sarama.NewManualPartitioner
			prod, err := sarama.NewSyncProducer(brokers, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			wait := 20 * time.Second
			if disable {
				wait = 5 * time.Second
			}
			deadline := time.Now().Add(wait)
			for i := 0; time.Now().Before(deadline) && firedWindows(t.Name()) == 0; i++ {
				if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "idle", Partition: 0, Value: sarama.StringEncoder(strconv.Itoa(i))}); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-ended:
					t.Fatalf("pipeline ended early: %v", err)
				case <-time.After(100 * time.Millisecond):
				}
			}
			fired := firedWindows(t.Name())
			windows.Lock()
			t.Logf("now %v, windows fired: %v", time.Now(), windows.m[t.Name()])
			windows.Unlock()
			if !disable && fired == 0 {
				t.Errorf("no window fired in %v while partition 1 was idle: the idle partition holds the watermark back", wait)
			}
			if disable && fired != 0 {
				t.Errorf("%d windows fired with DisableIdleWatermark while partition 1 never got a record", fired)
			}
		})
	}
}

// TestNewPartitions adds partitions to a topic while an unbounded read runs.
func TestNewPartitions(t *testing.T) {
	_, brokers := startCluster(t, 1, "grow")
	first := produceN(t, brokers, "grow", "first", 10, 1)

	p, s := beam.NewPipelineWithRoot()
	collect(s, t.Name(), Read(s, ReadConfig{Brokers: brokers, Topics: []string{"grow"}, PartitionDiscoveryInterval: 300 * time.Millisecond}))
	ended, stop := runStreaming(t, p)
	defer stop()
	waitFor(t, t.Name(), len(first), ended, "records before the partitions were added")

	admin, err := sarama.NewClusterAdmin(brokers, NewSaramaConfig("admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreatePartitions("grow", 3, nil, false); err != nil {
		t.Fatalf("CreatePartitions: %v", err)
	}
	var msgs []*sarama.ProducerMessage
	var want []string
	for i := 0; i < 30; i++ {
		v := fmt.Sprintf("second-%d", i)
		want = append(want, v)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "grow", Partition: int32(i % 3), Value: sarama.StringEncoder(v)})
	}
	produce(t, brokers, msgs)
	waitFor(t, t.Name(), len(first)+len(want), ended, "records in the new partitions")

	want = append(want, first...)
	sort.Strings(want)
	if gotVals := values(got(t.Name())); !reflect.DeepEqual(gotVals, want) {
		t.Errorf("read = %v, want %v", gotVals, want)
	}
	parts := map[int32]int{}
	for _, r := range got(t.Name()) {
		parts[r.Partition]++
	}
	if len(parts) != 3 {
		t.Errorf("records per partition = %v, want 3 partitions", parts)
	}
}

// TestBrokerRestart restarts the broker (persisted in a data dir, same
// port) under a running unbounded read: records produced after the restart
// arrive, none is lost or duplicated.
func TestBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	c := startPersistent(t, port, dir, true)
	brokers := c.ListenAddrs()
	before := produceN(t, brokers, "r", "before", 20, 2)

	p, s := beam.NewPipelineWithRoot()
	collect(s, t.Name(), Read(s, ReadConfig{Brokers: brokers, Topics: []string{"r"}}))
	ended, stop := runStreaming(t, p)
	defer stop()
	waitFor(t, t.Name(), len(before), ended, "records before the restart")

	c.Close()
	time.Sleep(time.Second)
	c = startPersistent(t, port, dir, false)
	defer c.Close()
	after := produceN(t, brokers, "r", "after", 20, 2)
	waitFor(t, t.Name(), len(before)+len(after), ended, "records after the restart")
	time.Sleep(500 * time.Millisecond) // let duplicates, if any, arrive

	want := append(append([]string(nil), before...), after...)
	sort.Strings(want)
	if gotVals := values(got(t.Name())); !reflect.DeepEqual(gotVals, want) {
		t.Errorf("read = %v, want %v", gotVals, want)
	}
}

// TestWriteBrokerDown starts a Write while the broker is down and brings
// the broker back: the write retries and succeeds, nothing is lost.
func TestWriteBrokerDown(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	c := startPersistent(t, port, dir, true)
	brokers := c.ListenAddrs()
	c.Close()

	var msgs []Message
	var want []string
	for i := 0; i < 50; i++ {
		v := fmt.Sprintf("w-%d", i)
		want = append(want, v)
		msgs = append(msgs, Message{Value: []byte(v)})
	}
	p, s := beam.NewPipelineWithRoot()
	Write(s, WriteConfig{Brokers: brokers, Topic: "r"}, beam.CreateList(s, msgs))
	done := make(chan error, 1)
	go func() { done <- ptest.Run(p) }()
	time.Sleep(2 * time.Second)
	c = startPersistent(t, port, dir, false)
	defer c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write pipeline failed: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("write pipeline did not finish within 60s of the broker's return")
	}

	p, s = beam.NewPipelineWithRoot()
	collect(s, t.Name(), Read(s, bounded(brokers, "r")))
	run(t, p)
	sort.Strings(want)
	if gotVals := values(got(t.Name())); !reflect.DeepEqual(gotVals, want) {
		t.Errorf("read back %v, want %v", gotVals, want)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPersistent starts a broker on port that persists to dir, seeding
// topic "r" (2 partitions) if seed.
func startPersistent(t *testing.T, port int, dir string, seed bool) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir)}
	if seed {
		opts = append(opts, kfake.SeedTopics(2, "r"))
	}
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free again
		var c *kfake.Cluster
		if c, err = kfake.NewCluster(opts...); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("kfake.NewCluster: %v", err)
	return nil
}

// TestBoundedTransactionMarkers reads, bounded, a partition that ends with a
// transaction commit marker: an offset below the end that no record
// delivers. The read must end, and with a Group commit the end offset.
func TestBoundedTransactionMarkers(t *testing.T) {
	_, brokers := startCluster(t, 1, "tx")
	cfg := NewSaramaConfig("tx-producer")
	cfg.Producer.Transaction.ID = "tx-1"
	prod, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	if err := prod.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		v := fmt.Sprintf("tx-%d", i)
		want = append(want, v)
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "tx", Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.CommitTxn(); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	client, err := sarama.NewClient(brokers, NewSaramaConfig("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	hwm, err := client.GetOffset("tx", 0, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	if hwm <= 5 {
		t.Fatalf("high-water mark %d: want a commit marker after the 5 records", hwm)
	}

	rc := bounded(brokers, "tx")
	rc.Group = "txg"
	p, s := beam.NewPipelineWithRoot()
	passert.EqualsList(s, beam.ParDo(s, valueOf, Read(s, rc)), want)
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(t, p)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("bounded read ending in a transaction marker did not terminate in 60s")
	}
	committed, err := fetchCommitted(client, "txg", "tx", []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != hwm {
		t.Errorf("committed offset = %d, want the high-water mark %d", committed[0], hwm)
	}
}

// TestNoClientLeakAfterCancel cancels a streaming pipeline (Prism then never
// calls Teardown) and checks that the janitors close every sarama client.
func TestNoClientLeakAfterCancel(t *testing.T) {
	defer idleTTL.Store(idleTTL.Load())
	idleTTL.Store(int64(time.Second))
	_, brokers := startCluster(t, 3, "leak")
	produceN(t, brokers, "leak", "x", 30, 3)
	p, s := beam.NewPipelineWithRoot()
	recs := Read(s, ReadConfig{Brokers: brokers, Topics: []string{"leak"}})
	collect(s, t.Name(), recs)
	Write(s, WriteConfig{Brokers: brokers, Topic: "leak-out"}, beam.ParDo(s, toMessage, recs))
	ended, stop := runStreaming(t, p)
	waitFor(t, t.Name(), 30, ended, "records")
	stop()

	// Clients of earlier tests' pipelines close within their janitors' TTL
	// (2s, set by TestMain) plus a tick; this test's within about 1.25s.
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := saramaClients()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sarama clients still open 15s after the pipeline was cancelled", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func toMessage(r Record) Message { return Message{Key: r.Key, Value: r.Value} }

// saramaClients counts the live sarama clients by their metadata updater
// goroutines.
func saramaClients() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "sarama.(*client).backgroundMetadataUpdater")
}
