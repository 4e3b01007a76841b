package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/internal/runsummary"
	"github.com/pushflow/pushflow/transforms/interest"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) { ptest.Main(m) }

const app = "com.example.news"

// TestFeedback runs the feedback pipeline on Prism, bounded, from the
// Kafka-protocol broker into a real redis-server, and checks the interest
// scores, the dead letters and the join counters.
func TestFeedback(t *testing.T) {
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	rc := redis.NewClient(&redis.Options{Addr: st.RedisAddr})
	defer rc.Close()
	reg := redisio.New(rc)
	// u2 has a news score already; u1's sports score is not touched.
	if err := reg.SetInterestScores(ctx, app, map[string]map[string]float64{"u2": {"news": 0.5}, "u1": {"sports": 0.3}}); err != nil {
		t.Fatal(err)
	}

	// Every record gets the same timestamp, in the middle of a join window,
	// so the test does not depend on when it runs; one click comes a whole
	// window later.
	const joinWindow = 10 * time.Minute
	at := time.Now().UTC().Truncate(joinWindow).Add(-joinWindow / 2)
	delivery := func(req, user, dev, cat, outcome string) pushflow.DeliveryEvent {
		return pushflow.DeliveryEvent{V: 1, RequestID: req, App: app, Category: cat, Priority: "normal", UserID: user, DeviceID: dev,
			Platform: "ios", Stage: pushflow.StageSend, Outcome: outcome, Attempts: 1, RequestTime: at, EventTime: at}
	}
	click := func(req, user, dev, action string) pushflow.ClickEvent {
		return pushflow.ClickEvent{V: 1, RequestID: req, App: app, UserID: user, DeviceID: dev, Action: action, At: at}
	}
	produce(t, st.Brokers, pushflow.TopicDeliveries, at,
		delivery("r1", "u1", "d1", "news", pushflow.OutcomeSent),
		delivery("r2", "u1", "d1", "news", pushflow.OutcomeSent),
		delivery("r3", "u1", "d1", "news", pushflow.OutcomeFailed), // not sent: not counted
		delivery("r1", "u2", "d2", "news", pushflow.OutcomeSent),
		delivery("r4", "u3", "d3", "sports", pushflow.OutcomeSent),
	)
	produce(t, st.Brokers, pushflow.TopicClicks, at,
		click("r1", "u1", "d1", pushflow.ActionOpened),
		click("r2", "u1", "d1", pushflow.ActionReceived),
		click("r2", "u1", "d1", pushflow.ActionClicked), // r2 engaged once, not twice
		click("r1", "u2", "d2", pushflow.ActionDismissed),
		click("r9", "u1", "d1", pushflow.ActionOpened), // unmatched: no delivery
		click("r3", "u1", "d1", pushflow.ActionOpened), // unmatched: the delivery failed
		json.RawMessage(`{"v":1,"request_id":"r5","app":`),
	)
	// Unmatched: its delivery is in the previous window.
	produce(t, st.Brokers, pushflow.TopicClicks, at.Add(joinWindow), click("r4", "u3", "d3", pushflow.ActionOpened))

	cfg := Config{
		Common: options.Common{
			KafkaBrokers: st.Brokers[0], RequestsTopic: pushflow.TopicRequests, DevicesTopic: pushflow.TopicDevices,
			ClicksTopic: pushflow.TopicClicks, DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
			RedisAddr: st.RedisAddr, Until: "latest", Group: "feedback-test", Start: "earliest", LogLevel: "warn",
		},
		JoinWindow:    joinWindow,
		InterestDecay: 0.8,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, s := beam.NewPipelineWithRoot()
	Build(s, cfg)
	res, err := ptest.RunWithMetrics(p)
	if err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}

	want := map[string]float64{
		"u1/news":   interest.Score(0, false, 2, 2, 0.8),  // first window: 2 of 2 engaged = 1
		"u2/news":   interest.Score(0.5, true, 0, 1, 0.8), // 0.8·0.5 + 0.2·0 = 0.4
		"u3/sports": interest.Score(0, false, 0, 1, 0.8),  // 0
		"u1/sports": 0.3,                                  // untouched
	}
	if want["u1/news"] != 1 || math.Abs(want["u2/news"]-0.4) > 1e-12 {
		t.Fatalf("interest.Score disagrees with the formula: %v", want)
	}
	got := map[string]float64{}
	for _, cat := range []string{"news", "sports"} {
		scores, err := reg.InterestScores(ctx, app, cat, []string{"u1", "u2", "u3"})
		if err != nil {
			t.Fatal(err)
		}
		for u, v := range scores {
			got[u+"/"+cat] = v
		}
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })); diff != "" {
		t.Errorf("interest scores (-want +got):\n%s", diff)
	}

	dead, err := devstack.ReadTopic(st.Brokers, pushflow.TopicDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 {
		t.Fatalf("dead letters = %q, want 1", dead)
	}
	var dl pushflow.DeadLetter
	if err := json.Unmarshal(dead[0], &dl); err != nil {
		t.Fatal(err)
	}
	if dl.Topic != pushflow.TopicClicks || dl.Stage != pushflow.StageDecode || !strings.HasPrefix(dl.Raw, `{"v":1,"request_id":"r5"`) {
		t.Errorf("dead letter = %+v, want stage decode, topic %s and the raw record", dl, pushflow.TopicClicks)
	}

	counters := runsummary.Counters(res)
	for name, want := range map[string]int64{
		"feedback_joined_clicks":    4,
		"feedback_unmatched_clicks": 3,
		"feedback_sent_deliveries":  4,
		"feedback_scores_written":   3,
		"decode_click_events_ok":    7,
		"decode_delivery_events_ok": 5,
		"dead_letters":              1,
	} {
		if got := counters[name]; got != want {
			t.Errorf("counter %s = %d, want %d", name, got, want)
		}
	}
}

// produce writes values, JSON-encoded, to topic with record timestamp at.
func produce(t *testing.T, brokers []string, topic string, at time.Time, values ...any) {
	t.Helper()
	p, err := sarama.NewSyncProducer(brokers, kafkaio.NewSaramaConfig("feedback-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for _, v := range values {
		b, ok := v.(json.RawMessage) // sent verbatim: json.Marshal would reject a malformed record
		if !ok {
			var err error
			if b, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(b), Timestamp: at})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}
