package interest

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func init() { register.Function2x1(dropKey) }

func dropKey(_ string, t Tally) Tally { return t }

// TestJoinSum joins and sums on Prism (every element in the global
// window's minimum timestamp, so in one join window).
func TestJoinSum(t *testing.T) {
	const app = "a"
	p, s := beam.NewPipelineWithRoot()
	clicks := beam.Create(s,
		pushflow.ClickEvent{RequestID: "r1", App: app, UserID: "u1", DeviceID: "d1", Action: pushflow.ActionOpened},
		pushflow.ClickEvent{RequestID: "r2", App: app, UserID: "u1", DeviceID: "d1", Action: pushflow.ActionReceived},
		pushflow.ClickEvent{RequestID: "r2", App: app, UserID: "u1", DeviceID: "d2", Action: pushflow.ActionClicked}, // other device: unmatched
		pushflow.ClickEvent{RequestID: "r3", App: app, UserID: "u2", DeviceID: "d3", Action: pushflow.ActionClicked}, // failed delivery: unmatched
	)
	deliveries := beam.Create(s,
		pushflow.DeliveryEvent{RequestID: "r1", App: app, Category: "news", UserID: "u1", DeviceID: "d1", Outcome: pushflow.OutcomeSent},
		pushflow.DeliveryEvent{RequestID: "r1", App: app, Category: "news", UserID: "u1", DeviceID: "d1", Outcome: pushflow.OutcomeSent}, // redelivered
		pushflow.DeliveryEvent{RequestID: "r2", App: app, Category: "news", UserID: "u1", DeviceID: "d1", Outcome: pushflow.OutcomeSent},
		pushflow.DeliveryEvent{RequestID: "r3", App: app, Category: "news", UserID: "u2", DeviceID: "d3", Outcome: pushflow.OutcomeFailed},
		pushflow.DeliveryEvent{RequestID: "r4", App: app, Category: "sports", UserID: "u2", DeviceID: "d3", Outcome: pushflow.OutcomeSent},
	)
	got := beam.ParDo(s, dropKey, Sum(s, Join(s, clicks, deliveries, time.Minute)))
	got = beam.WindowInto(s, window.NewGlobalWindows(), got) // passert compares in the global window
	passert.Equals(s, got,
		Tally{App: app, UserID: "u1", Category: "news", Sent: 2, Engaged: 1},
		Tally{App: app, UserID: "u2", Category: "sports", Sent: 1, Engaged: 0},
	)
	ptest.RunAndValidate(t, p)
}

// TestUpdateFn applies tallies to a real redis-server through the DoFn,
// including one key twice in a bundle (two windows): it decays twice.
func TestUpdateFn(t *testing.T) {
	ctx := context.Background()
	addr := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	reg := redisio.New(rc)
	if err := reg.SetInterestScores(ctx, "a", map[string]map[string]float64{"u1": {"news": 0.5}}); err != nil {
		t.Fatal(err)
	}
	fn := &updateFn{RedisAddr: addr, Decay: 0.5, FlushSize: 2}
	fn.Setup()
	defer fn.Teardown()
	none := func(int) {}
	for _, tl := range []Tally{
		{App: "a", UserID: "u1", Category: "news", Sent: 1, Engaged: 1},   // 0.5·0.5 + 0.5·1 = 0.75
		{App: "a", UserID: "u2", Category: "news", Sent: 4, Engaged: 1},   // first: 0.25
		{App: "a", UserID: "u1", Category: "news", Sent: 2, Engaged: 0},   // 0.5·0.75 = 0.375
		{App: "a", UserID: "u3", Category: "sports", Sent: 0, Engaged: 0}, // no evidence: not written
	} {
		if err := fn.ProcessElement(ctx, tl.Key(), tl, none); err != nil {
			t.Fatal(err)
		}
	}
	if err := fn.FinishBundle(ctx, none); err != nil {
		t.Fatal(err)
	}
	news, err := reg.InterestScores(ctx, "a", "news", []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	sports, err := reg.InterestScores(ctx, "a", "sports", []string{"u3"})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(news["u1"]-0.375) > 1e-12 || math.Abs(news["u2"]-0.25) > 1e-12 || len(sports) != 0 {
		t.Errorf("scores news = %v, sports = %v; want u1 0.375, u2 0.25, no sports score", news, sports)
	}
}
