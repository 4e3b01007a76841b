package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
)

// BenchmarkDispatchVsAPNsCeiling measures, in one run against the same APNs
// test server and the same machine:
//
//   - apns_ceiling_notif/s: the raw sender (apnsio.Client.Send, apns2) with
//     no pipeline around it;
//   - pipeline_notif/s: dispatch end to end on Prism (Kafka read → decode →
//     expand → filter → enrich → send → deliveries to Kafka and Parquet),
//     counted from the first to the last send in the delivery table;
//   - ratio: pipeline / ceiling (issue goal ≥ 0.6).
//
// Scale with -args or env: PUSHFLOW_BENCH_USERS (default 40000 users, one
// iOS device each, all targeted through 80 requests of 500 users).
func BenchmarkDispatchVsAPNsCeiling(b *testing.B) {
	users := envInt("PUSHFLOW_BENCH_USERS", 40000)
	const perRequest = 500
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(b), APNsOptions: []apnsiotest.Option{apnsiotest.WithRecordLimit(0)}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	// Registry: one iOS device per user.
	rc := redis.NewClient(&redis.Options{Addr: st.RedisAddr})
	defer rc.Close()
	reg := redisio.New(rc)
	const app = "com.example.bench"
	evs := make([]pushflow.DeviceEvent, 0, 1000)
	tokens := make([]string, users)
	for i := range users {
		tokens[i] = fmt.Sprintf("%064x", i+1)
		evs = append(evs, pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: fmt.Sprintf("u%d", i), DeviceID: fmt.Sprintf("d%d", i), Platform: pushflow.PlatformIOS, Token: tokens[i]})
		if len(evs) == cap(evs) || i == users-1 {
			if err := reg.Apply(ctx, evs); err != nil {
				b.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	apnsCfg := apnsio.Config{Endpoint: st.APNsURL, CAFile: st.APNsCAFile, KeyFile: st.APNsKeyFile, KeyID: st.APNsKeyID, TeamID: st.APNsTeamID}
	note := pushflow.Notification{Title: "Bench", Body: "Throughput"}

	for b.Loop() {
		// 1. The raw ceiling: the same client, the same server, no pipeline.
		client, err := apnsio.NewClient(apnsCfg)
		if err != nil {
			b.Fatal(err)
		}
		msgs := make([]apnsio.Message, 0, perRequest)
		start := time.Now()
		for i := range users {
			msgs = append(msgs, apnsio.Message{Token: tokens[i], Topic: app, Notification: note, Priority: pushflow.PriorityNormal})
			if len(msgs) == perRequest || i == users-1 {
				for _, r := range client.Send(ctx, msgs) {
					if r.Outcome != pushflow.OutcomeSent {
						b.Fatalf("raw send: %+v", r)
					}
				}
				msgs = msgs[:0]
			}
		}
		ceiling := float64(users) / time.Since(start).Seconds()
		client.Close()

		// 2. The pipeline, over requests already on the topic.
		var lines [][]byte
		for r := 0; r*perRequest < users; r++ {
			ids := ""
			for i := r * perRequest; i < min((r+1)*perRequest, users); i++ {
				if ids != "" {
					ids += ","
				}
				ids += fmt.Sprintf("%q", fmt.Sprintf("u%d", i))
			}
			lines = append(lines, fmt.Appendf(nil, `{"v":1,"id":"bench-%d-%d","app":%q,"priority":"normal","target":{"users":[%s]},"notification":{"title":"Bench","body":"Throughput"}}`, b.N, r, app, ids))
		}
		topic := fmt.Sprintf("bench.requests.%d", time.Now().UnixNano())
		if err := devstack.CreateTopic(st.Brokers, topic, 3); err != nil {
			b.Fatal(err)
		}
		if err := devstack.Produce(ctx, st.Brokers, topic, pushflow.TopicRequests, lines); err != nil {
			b.Fatal(err)
		}
		table := b.TempDir()
		cfg := Config{
			Common: options.Common{
				KafkaBrokers: st.Brokers[0], RequestsTopic: topic, DevicesTopic: pushflow.TopicDevices, ClicksTopic: pushflow.TopicClicks,
				DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
				RedisAddr: st.RedisAddr, Until: "latest", Group: "bench", Start: "earliest", LogLevel: "warn",
			},
			APNs: apnsCfg, DeliveryTable: "file://" + table, BatchSize: perRequest, RealtimeConcurrency: 8,
		}
		p, s := beam.NewPipelineWithRoot()
		Build(s, cfg)
		runStart := time.Now()
		if err := ptest.Run(p); err != nil {
			b.Fatal(err)
		}
		wall := time.Since(runStart)
		var first, last time.Time
		sent := 0
		if err := tableio.Scan(table, func(ev pushflow.DeliveryEvent) error {
			if ev.Outcome != pushflow.OutcomeSent {
				return fmt.Errorf("unexpected outcome %+v", ev)
			}
			sent++
			if first.IsZero() || ev.EventTime.Before(first) {
				first = ev.EventTime
			}
			if ev.EventTime.After(last) {
				last = ev.EventTime
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if sent != users {
			b.Fatalf("pipeline sent %d, want %d", sent, users)
		}
		pipeline := float64(sent) / last.Sub(first).Seconds()
		b.ReportMetric(ceiling, "apns_ceiling_notif/s")
		b.ReportMetric(pipeline, "pipeline_notif/s")
		b.ReportMetric(float64(sent)/wall.Seconds(), "pipeline_wall_notif/s")
		b.ReportMetric(pipeline/ceiling, "ratio")
		b.Logf("%d notifications, %d cores: ceiling %.0f/s, pipeline %.0f/s between first and last send (%.0f/s over %s including Prism start-up), ratio %.2f",
			users, runtime.NumCPU(), ceiling, pipeline, float64(sent)/wall.Seconds(), wall.Round(time.Millisecond), pipeline/ceiling)
	}
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err != nil || v < 0 {
		return def
	}
	return v
}
