package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/internal/runsummary"
	"github.com/pushflow/pushflow/transforms/pace"
)

// TestDispatchBackpressure runs a paced broadcast on Prism and samples what
// the pacer holds for its campaign (the pacer's own reports, summed over
// shards) while it drains. With --pace_max_pending the expansion keeps that
// near the limit, whatever the audience size; without it, the expansion
// runs ahead and the pacer holds most of the audience. Every user gets
// exactly one notification either way.
func TestDispatchBackpressure(t *testing.T) {
	if testing.Short() {
		t.Skip("paced pipeline on Prism (≈ 10 s)")
	}
	const users, qps, maxPending, scanCount = 24_000, 8000, 1500, 1000
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(t), APNsOptions: []apnsiotest.Option{apnsiotest.WithRecordLimit(0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const app = "com.example.bp"
	registerUsers(t, st.RedisAddr, app, "u", users, 0)
	reg := redisio.Open(st.RedisAddr)
	defer reg.Close()

	run := func(t *testing.T, group string, maxPending int64) (peak int64, counters map[string]int64) {
		table := t.TempDir()
		cfg := Config{
			Common: options.Common{
				KafkaBrokers: st.Brokers[0], RequestsTopic: "bp." + group, DevicesTopic: pushflow.TopicDevices, ClicksTopic: pushflow.TopicClicks,
				DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
				RedisAddr: st.RedisAddr, Until: "latest", Group: group, Start: "earliest", LogLevel: "warn",
			},
			APNs:                apnsio.Config{Endpoint: st.APNsURL, CAFile: st.APNsCAFile, KeyFile: st.APNsKeyFile, KeyID: st.APNsKeyID, TeamID: st.APNsTeamID},
			DeliveryTable:       "file://" + table,
			BatchSize:           100,
			RealtimeConcurrency: 8,
			Pace:                pace.Config{GlobalQPS: qps, Shards: 2},
			PaceMaxPending:      maxPending,
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := devstack.CreateTopic(st.Brokers, cfg.RequestsTopic, 1); err != nil {
			t.Fatal(err)
		}
		req := fmt.Appendf(nil, `{"v":1,"id":"bc-%s","app":%q,"campaign":"spring","priority":"bulk","category":"marketing","target":{"broadcast":true},"notification":{"title":"Spring","body":"sale"}}`, group, app)
		if err := devstack.Produce(ctx, st.Brokers, cfg.RequestsTopic, pushflow.TopicRequests, [][]byte{req}); err != nil {
			t.Fatal(err)
		}
		sent := st.APNs.Count()

		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				n, err := reg.Backlog(ctx, PacedLane(group), "spring", cfg.Pace.Shards)
				if err != nil {
					t.Error(err)
					return
				}
				peak = max(peak, n)
			}
		}()
		p, s := beam.NewPipelineWithRoot()
		Build(s, cfg)
		res, err := beamx.RunWithMetrics(ctx, p)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("pipeline failed: %v", err)
		}
		counters = runsummary.Counters(res)
		if got := st.APNs.Count() - sent; got != users {
			t.Errorf("APNs received %d notifications, want %d (counters %v)", got, users, counters)
		}
		events, err := tableio.ReadDir(table)
		if err != nil {
			t.Fatal(err)
		}
		perUser := map[string]int{}
		for _, e := range events {
			if e.Outcome != pushflow.OutcomeSent {
				t.Errorf("event %+v, want only sent events", e)
				continue
			}
			perUser[e.UserID]++
		}
		for u, n := range perUser {
			if n != 1 {
				t.Errorf("user %s has %d sent events, want 1", u, n)
			}
		}
		if len(perUser) != users {
			t.Errorf("%d users have a sent event, want %d", len(perUser), users)
		}
		return peak, counters
	}

	t.Run("with backpressure the pacer holds about the limit", func(t *testing.T) {
		peak, c := run(t, "bp-on", maxPending)
		t.Logf("peak backlog %d (limit %d); slices %d, paused %d", peak, maxPending, c["expand_slices"], c["expand_paused"])
		// A slice may overshoot its room by a scan page, and the pacer's
		// reports lag what the expansion emitted by the pipeline's transit
		// time (a few hundred ms here; more when the machine is loaded):
		// the bound is the limit plus what flows in that time, however
		// large the audience. The control below holds the audience.
		if limit := int64(3*maxPending + scanCount); peak > limit {
			t.Errorf("peak backlog %d, want at most %d (--pace_max_pending %d plus what is in transit)", peak, limit, maxPending)
		}
		if peak == 0 {
			t.Errorf("never saw a backlog report: the test measures nothing")
		}
		if c["expand_slices"] < users/(maxPending+scanCount) {
			t.Errorf("expand_slices %d: want the expansion sliced by the limit", c["expand_slices"])
		}
	})
	t.Run("without backpressure the pacer holds the audience", func(t *testing.T) {
		peak, _ := run(t, "bp-off", 0)
		t.Logf("peak backlog %d without a limit", peak)
		if peak < users/2 {
			t.Errorf("peak backlog %d without backpressure, want most of the %d-user audience (the control of the test above)", peak, users)
		}
	})
}

// TestDispatchRequestFloodWaitsInKafka floods the requests topic with
// one-user bulk requests while realtime requests have their own topic: the
// requests reader pauses while the paced lane holds --requests_max_pending
// recipients, so the flood waits in Kafka (the control run without the
// limit takes it all into pacing state). Every request is sent once.
func TestDispatchRequestFloodWaitsInKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("paced pipeline on Prism (≈ 10 s)")
	}
	const users, qps, limit = 10_000, 4000, 1000
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(t), APNsOptions: []apnsiotest.Option{apnsiotest.WithRecordLimit(0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const app = "com.example.flood"
	registerUsers(t, st.RedisAddr, app, "u", users, 0)
	reg := redisio.Open(st.RedisAddr)
	defer reg.Close()

	run := func(t *testing.T, group string, requestsMaxPending int64) (peak int64) {
		cfg := Config{
			Common: options.Common{
				KafkaBrokers: st.Brokers[0], RequestsTopic: "flood." + group, DevicesTopic: pushflow.TopicDevices, ClicksTopic: pushflow.TopicClicks,
				DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
				RedisAddr: st.RedisAddr, Until: "latest", Group: group, Start: "earliest", LogLevel: "warn",
			},
			APNs:                apnsio.Config{Endpoint: st.APNsURL, CAFile: st.APNsCAFile, KeyFile: st.APNsKeyFile, KeyID: st.APNsKeyID, TeamID: st.APNsTeamID},
			BatchSize:           100,
			RealtimeTopic:       "flood.rt." + group,
			RealtimeConcurrency: 8,
			Pace:                pace.Config{GlobalQPS: qps, Shards: 2},
			PaceMaxPending:      50_000,
			RequestsMaxPending:  requestsMaxPending,
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, topic := range []string{cfg.RequestsTopic, cfg.RealtimeTopic} {
			if err := devstack.CreateTopic(st.Brokers, topic, 1); err != nil {
				t.Fatal(err)
			}
		}
		reqs := make([][]byte, users)
		for i := range reqs {
			reqs[i] = fmt.Appendf(nil, `{"v":1,"id":"%s-%d","app":%q,"campaign":"flood","priority":"bulk","category":"social","target":{"users":["u%d"]},"notification":{"title":"New follower"}}`, group, i, app, i)
		}
		for i := 0; i < len(reqs); i += 2000 {
			if err := devstack.Produce(ctx, st.Brokers, cfg.RequestsTopic, pushflow.TopicRequests, reqs[i:min(i+2000, len(reqs))]); err != nil {
				t.Fatal(err)
			}
		}
		sent := st.APNs.Count()
		stopPeak := samplePeakBacklog(t, st.RedisAddr, PacedLane(group), "flood", cfg.Pace.Shards)
		p, s := beam.NewPipelineWithRoot()
		Build(s, cfg)
		err := ptestRun(ctx, p)
		peak = stopPeak()
		if err != nil {
			t.Fatalf("pipeline failed: %v", err)
		}
		if got := st.APNs.Count() - sent; got != users {
			t.Errorf("APNs received %d notifications, want %d", got, users)
		}
		return peak
	}
	t.Run("the reader pauses at the limit", func(t *testing.T) {
		peak := run(t, "flood-on", limit)
		t.Logf("peak backlog %d (limit %d)", peak, limit)
		// A call reads the room the pacer's last report left, and the next
		// asks again after the reader's PauseDelay (500 ms), by when the
		// pacer has usually received those requests (more slowly on a
		// loaded machine).
		if bound := int64(3 * limit); peak > bound {
			t.Errorf("peak backlog %d with --requests_max_pending=%d, want at most %d", peak, limit, bound)
		}
		// A peak of 0 is possible: on a fast machine the paused reader
		// takes the flood no faster than the pacer sends it, so nothing
		// accumulates. The control below proves the sampler sees reports.
	})
	t.Run("without the limit the pacer takes the flood", func(t *testing.T) {
		peak := run(t, "flood-off", 0)
		t.Logf("peak backlog %d without a limit", peak)
		if peak < users/2 {
			t.Errorf("peak backlog %d without a limit, want most of the %d requests (the control of the test above)", peak, users)
		}
	})
}

// ptestRun runs p on Prism, like beamx.Run, for tests that sample while it
// runs.
func ptestRun(ctx context.Context, p *beam.Pipeline) error {
	_, err := beamx.RunWithMetrics(ctx, p)
	return err
}
