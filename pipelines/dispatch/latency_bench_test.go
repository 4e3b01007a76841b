package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/transforms/pace"
)

// BenchmarkRealtimeLatencyUnderBulkBacklog measures, in one streaming run
// of dispatch on Prism, the request→send latency of realtime requests
// (created_at to the provider's answer, as recorded in each DeliveryEvent):
//
//   - idle: realtime requests on an otherwise idle pipeline;
//   - backlog: the same while a bulk broadcast to PUSHFLOW_BENCH_BACKLOG
//     users (default 1,000,000) drains through the paced lane at
//     PUSHFLOW_BENCH_BULK_QPS (default 4000/s);
//
// and reports p50/p99 of both and the ratio backlog_p99/idle_p99 (issue
// goal ≤ 1.5). Realtime requests go to the same topic as the bulk request
// unless PUSHFLOW_BENCH_REALTIME_TOPIC=1. With PUSHFLOW_BENCH_BACKLOG_KIND=requests
// the backlog is that many bulk requests of one user each already on the
// requests topic (a reader backlog) instead of one broadcast (an expansion
// backlog). The paced lane runs with backpressure at
// PUSHFLOW_BENCH_MAX_PENDING (default 50,000, dispatch's default; 0 = off)
// and, with the realtime topic, the requests reader pausing at
// PUSHFLOW_BENCH_REQUESTS_MAX_PENDING (default 200,000; 0 = off);
// the run reports the largest backlog the pacer reported for the bulk
// campaign and the process's peak RSS (the benchmark, the dev stack's
// broker, APNs server and Prism all live in it).
func BenchmarkRealtimeLatencyUnderBulkBacklog(b *testing.B) {
	kind := os.Getenv("PUSHFLOW_BENCH_BACKLOG_KIND") // "" (one broadcast) or "requests"
	backlog := envInt("PUSHFLOW_BENCH_BACKLOG", 1_000_000)
	bulkQPS := envInt("PUSHFLOW_BENCH_BULK_QPS", 4000)
	maxPending := envInt("PUSHFLOW_BENCH_MAX_PENDING", 50_000)
	requestsMaxPending := envInt("PUSHFLOW_BENCH_REQUESTS_MAX_PENDING", 200_000)
	const rtUsers, perPhase, every = 50, 200, 50 * time.Millisecond
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(b), APNsOptions: []apnsiotest.Option{apnsiotest.WithRecordLimit(0)}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const app = "com.example.live"
	registerUsers(b, st.RedisAddr, app, "b", backlog, 0)
	registerUsers(b, st.RedisAddr, app, "rt", rtUsers, backlog)

	realtimeTopic := ""
	if envInt("PUSHFLOW_BENCH_REALTIME_TOPIC", 0) == 1 {
		realtimeTopic = "bench.realtime"
		if err := devstack.CreateTopic(st.Brokers, realtimeTopic, 1); err != nil {
			b.Fatal(err)
		}
	}
	cfg := Config{
		Common: options.Common{
			KafkaBrokers: st.Brokers[0], RequestsTopic: pushflow.TopicRequests, DevicesTopic: pushflow.TopicDevices, ClicksTopic: pushflow.TopicClicks,
			DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
			RedisAddr: st.RedisAddr, Group: "bench-latency", Start: "earliest", LogLevel: "warn",
		},
		APNs:                apnsio.Config{Endpoint: st.APNsURL, CAFile: st.APNsCAFile, KeyFile: st.APNsKeyFile, KeyID: st.APNsKeyID, TeamID: st.APNsTeamID},
		BatchSize:           500,
		RealtimeTopic:       realtimeTopic,
		RealtimeConcurrency: 16,
		Pace:                pace.Config{GlobalQPS: bulkQPS, Shards: 4},
		PaceMaxPending:      int64(maxPending),
		RequestsMaxPending:  int64(requestsMaxPending),
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	rtTopic := cfg.RequestsTopic
	if realtimeTopic != "" {
		rtTopic = realtimeTopic
	}

	lat := newLatencies(b, st.Brokers)
	defer lat.close()

	for b.Loop() {
		runCtx, cancel := context.WithCancel(ctx)
		p, s := beam.NewPipelineWithRoot()
		Build(s, cfg)
		done := make(chan error, 1)
		go func() { done <- beamx.Run(runCtx, p) }()

		// One long-lived producer, as an upstream service has: a
		// producer per request would add its connection and metadata
		// round trips to every measured latency (created_at is set just
		// before the send).
		pcfg := kafkaio.NewSaramaConfig("bench-realtime")
		pcfg.Producer.Return.Successes = true
		pcfg.Producer.RequiredAcks = sarama.WaitForAll
		producer, err := sarama.NewSyncProducer(st.Brokers, pcfg)
		if err != nil {
			b.Fatal(err)
		}
		produce := func(phase string, n int) {
			for i := range n {
				req := fmt.Appendf(nil, `{"v":1,"id":"%s-%d","app":%q,"priority":"realtime","category":"live","target":{"users":["rt%d"]},"notification":{"title":"Goal!","body":"1-0"},"created_at":%q}`,
					phase, i, app, i%rtUsers, time.Now().UTC().Format(time.RFC3339Nano))
				msg := &sarama.ProducerMessage{Topic: rtTopic, Key: sarama.ByteEncoder(devstack.Key(pushflow.TopicRequests, req)), Value: sarama.ByteEncoder(req)}
				t0 := time.Now()
				if _, _, err := producer.SendMessage(msg); err != nil {
					b.Fatal(err)
				}
				lat.produced(fmt.Sprintf("%s-%d", phase, i), time.Since(t0))
				time.Sleep(every)
			}
		}
		// Warm up: the pipeline is running once one realtime request is sent.
		produce("warmup", 1)
		lat.wait(b, "warmup-", 1, 2*time.Minute)

		produce("idle", perPhase)
		idle := lat.wait(b, "idle-", perPhase, time.Minute)

		bulk := [][]byte{fmt.Appendf(nil, `{"v":1,"id":"broadcast","app":%q,"campaign":"season-pass","priority":"bulk","category":"marketing","target":{"broadcast":true},"notification":{"title":"Season pass","body":"20%% off"}}`, app)}
		if kind == "requests" {
			bulk = make([][]byte, backlog)
			for i := range bulk {
				bulk[i] = fmt.Appendf(nil, `{"v":1,"id":"bulk-%d","app":%q,"campaign":"season-pass","priority":"bulk","category":"marketing","target":{"users":["b%d"]},"notification":{"title":"Season pass","body":"20%% off"}}`, i, app, i)
			}
		}
		stopPeak := samplePeakBacklog(b, st.RedisAddr, PacedLane(cfg.Group), "season-pass", cfg.Pace.Shards)
		for i := 0; i < len(bulk); i += 10000 {
			if err := devstack.Produce(ctx, st.Brokers, cfg.RequestsTopic, pushflow.TopicRequests, bulk[i:min(i+10000, len(bulk))]); err != nil {
				b.Fatal(err)
			}
		}
		// Realtime traffic starts once the backlog is draining.
		start := st.APNs.Count()
		deadline := time.Now().Add(5 * time.Minute)
		for st.APNs.Count() < start+int64(bulkQPS) {
			if time.Now().After(deadline) {
				b.Fatalf("the bulk backlog did not start draining within 5 minutes (%d sent)", st.APNs.Count()-start)
			}
			time.Sleep(50 * time.Millisecond)
		}
		drainFrom, drainStart := st.APNs.Count(), time.Now()
		produce("backlog", perPhase)
		underLoad := lat.wait(b, "backlog-", perPhase, 2*time.Minute)
		peakBacklog := stopPeak()
		drained := st.APNs.Count() - drainFrom
		drainRate := float64(drained) / time.Since(drainStart).Seconds()
		if remaining := int64(backlog) - (st.APNs.Count() - start); remaining <= 0 {
			b.Logf("warning: the backlog finished draining before the last realtime request; raise PUSHFLOW_BENCH_BACKLOG")
		} else {
			b.Logf("bulk backlog still holding %d notifications when the last realtime request was sent", remaining)
		}
		producer.Close()
		cancel()
		<-done

		lat.logSlowest(b, 5)
		ip50, ip99 := percentile(idle, 50), percentile(idle, 99)
		bp50, bp99 := percentile(underLoad, 50), percentile(underLoad, 99)
		b.ReportMetric(float64(ip50), "idle_p50_ms")
		b.ReportMetric(float64(ip99), "idle_p99_ms")
		b.ReportMetric(float64(bp50), "backlog_p50_ms")
		b.ReportMetric(float64(bp99), "backlog_p99_ms")
		b.ReportMetric(float64(bp99)/float64(max(ip99, 1)), "p99_ratio")
		b.ReportMetric(drainRate, "bulk_notif/s")
		b.ReportMetric(float64(peakBacklog), "peak_pacer_backlog")
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak_rss_MiB")
		what := fmt.Sprintf("a %d-user bulk broadcast", backlog)
		if kind == "requests" {
			what = fmt.Sprintf("%d one-user bulk requests", backlog)
		}
		b.Logf("realtime request→send latency: idle p50 %d ms p99 %d ms; during %s paced at %d/s (measured %.0f/s): p50 %d ms p99 %d ms; p99 ratio %.2f (realtime topic: %v)",
			ip50, ip99, what, bulkQPS, drainRate, bp50, bp99, float64(bp99)/float64(max(ip99, 1)), realtimeTopic != "")
		b.Logf("backpressure --pace_max_pending=%d: the pacer held at most %d recipients of the bulk campaign; peak RSS %d MiB",
			maxPending, peakBacklog, peakRSS()>>20)
	}
}

// samplePeakBacklog samples, every 20 ms until the returned function is
// called, the backlog the pacer reports for campaign, and the returned
// function gives the largest seen.
func samplePeakBacklog(_ testing.TB, redisAddr, lane, campaign string, shards int) (stop func() int64) {
	reg := redisio.Open(redisAddr)
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var p int64
		defer func() { peak <- p }()
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if n, err := reg.Backlog(context.Background(), lane, campaign, shards); err == nil {
				p = max(p, n)
			}
		}
	}()
	return func() int64 {
		close(done)
		p := <-peak
		reg.Close()
		return p
	}
}

// peakRSS is the process's peak resident set size in bytes (VmHWM), or 0
// where /proc is not there.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

// registerUsers registers n users prefix0..prefix{n-1}, one iOS device each,
// with tokens numbered from tokenBase.
func registerUsers(b testing.TB, redisAddr, app, prefix string, n, tokenBase int) {
	b.Helper()
	rc := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rc.Close()
	reg := redisio.New(rc)
	evs := make([]pushflow.DeviceEvent, 0, 2000)
	for i := range n {
		evs = append(evs, pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: fmt.Sprintf("%s%d", prefix, i),
			DeviceID: fmt.Sprintf("%s-d%d", prefix, i), Platform: pushflow.PlatformIOS, Token: fmt.Sprintf("%064x", tokenBase+i+1)})
		if len(evs) == cap(evs) || i == n-1 {
			if err := reg.Apply(context.Background(), evs); err != nil {
				b.Fatal(err)
			}
			evs = evs[:0]
		}
	}
}

// latencies follows push.deliveries and keeps the latency of every sent
// event by request id.
type latencies struct {
	mu       sync.Mutex
	byID     map[string]int64
	produce  map[string]time.Duration // how long producing each request took
	consumer sarama.Consumer
	pcs      []sarama.PartitionConsumer
}

func newLatencies(b *testing.B, brokers []string) *latencies {
	c, err := sarama.NewConsumer(brokers, kafkaio.NewSaramaConfig("bench-latency"))
	if err != nil {
		b.Fatal(err)
	}
	parts, err := c.Partitions(pushflow.TopicDeliveries)
	if err != nil {
		b.Fatal(err)
	}
	l := &latencies{byID: map[string]int64{}, produce: map[string]time.Duration{}, consumer: c}
	for _, p := range parts {
		pc, err := c.ConsumePartition(pushflow.TopicDeliveries, p, sarama.OffsetNewest)
		if err != nil {
			b.Fatal(err)
		}
		l.pcs = append(l.pcs, pc)
		go func() {
			for m := range pc.Messages() {
				var ev pushflow.DeliveryEvent
				if json.Unmarshal(m.Value, &ev) != nil || ev.Outcome != pushflow.OutcomeSent || ev.Priority != pushflow.PriorityRealtime {
					continue
				}
				l.mu.Lock()
				l.byID[ev.RequestID] = ev.LatencyMs
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// wait returns the latencies of the n requests whose id starts with prefix,
// once all are in.
func (l *latencies) wait(b *testing.B, prefix string, n int, limit time.Duration) []int64 {
	deadline := time.Now().Add(limit)
	for {
		var out []int64
		l.mu.Lock()
		for id, ms := range l.byID {
			if strings.HasPrefix(id, prefix) {
				out = append(out, ms)
			}
		}
		l.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d %s* requests delivered within %s", len(out), n, prefix, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logSlowest logs the n slowest requests of each phase, by id (the id's
// number is the send order, 50 ms apart), so a periodic stall shows.
func (l *latencies) logSlowest(b *testing.B, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	type rec struct {
		id string
		ms int64
	}
	var rs []rec
	for id, ms := range l.byID {
		rs = append(rs, rec{id, ms})
	}
	slices.SortFunc(rs, func(a, b rec) int { return int(b.ms - a.ms) })
	for _, phase := range []string{"idle-", "backlog-"} {
		var out []string
		for _, r := range rs {
			if strings.HasPrefix(r.id, phase) && len(out) < n {
				out = append(out, fmt.Sprintf("%s=%dms(produce %dms)", r.id, r.ms, l.produce[r.id].Milliseconds()))
			}
		}
		b.Logf("slowest %s: %s", phase, strings.Join(out, " "))
	}
}

func (l *latencies) produced(id string, d time.Duration) {
	l.mu.Lock()
	l.produce[id] = d
	l.mu.Unlock()
}

func (l *latencies) close() {
	for _, pc := range l.pcs {
		pc.AsyncClose()
	}
	l.consumer.Close()
}

// percentile is the nearest-rank percentile of xs.
func percentile(xs []int64, p int) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}
