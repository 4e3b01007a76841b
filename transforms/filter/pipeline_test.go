package filter

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/transforms/recipient"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func init() {
	register.Function1x1(describeBatch)
	register.Function1x1(describeEvent)
	register.Function1x1(nonEmpty)
}

func nonEmpty(s string) bool { return s != "" }

// describeBatch renders a kept batch as "request: user, user".
func describeBatch(b recipient.Batch) string {
	users := make([]string, len(b.Recipients))
	for i, r := range b.Recipients {
		users[i] = r.UserID
	}
	return b.Request.Req.ID + ": " + strings.Join(users, ", ")
}

// describeEvent renders an event as "request: user reason".
func describeEvent(e pushflow.DeliveryEvent) string {
	return fmt.Sprintf("%s: %s %s", e.RequestID, e.UserID, e.Reason)
}

// TestApply runs the filter on Prism, the DoFn's buffering included: its
// StartBundle/FinishBundle signatures are accepted by the SDK, and what
// FinishBundle emits reaches the outputs. passert.True runs Beam's own
// filter DoFn, whose wrapper ours must not replace.
func TestApply(t *testing.T) {
	addr := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if err := redisio.New(c).Apply(context.Background(), []pushflow.DeviceEvent{
		settingsEvent("no-news", pushflow.Settings{OptOut: []string{"news"}}),
	}); err != nil {
		t.Fatal(err)
	}
	p, s := beam.NewPipelineWithRoot()
	in := beam.Create(s,
		batch("r-1", "news", pushflow.PriorityNormal, 0, user("u1"), user("no-news")),
		batch("r-2", "sports", pushflow.PriorityNormal, 0, user("no-news")),
		batch("r-3", "news", pushflow.PriorityNormal, 0, user("no-news")),
		batch("r-4", "news", pushflow.PriorityNormal, 0, user("u2")),
	)
	kept, events := Apply(s, in, Config{RedisAddr: addr})
	passert.Equals(s, beam.ParDo(s, describeBatch, kept), "r-1: u1", "r-2: no-news", "r-4: u2")
	passert.Equals(s, beam.ParDo(s, describeEvent, events), "r-1: no-news opt_out", "r-3: no-news opt_out")
	passert.True(s, beam.ParDo(s, describeBatch, kept), nonEmpty)
	ptest.RunAndValidate(t, p)
}
