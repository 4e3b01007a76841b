package enrich

import (
	"fmt"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) {
	log.LogLevel = "warn"
	ptest.Main(m)
}

func init() {
	register.Function2x0(stamp)
	register.Function3x0(describeBatch)
	register.Function3x0(describeEvent)
	register.Emitter1[string]()
}

// stamp gives each batch the timestamp (Seq+1) s.
func stamp(b recipient.Batch, emit func(beam.EventTime, recipient.Batch)) {
	emit(beam.EventTime(1000*(b.Seq+1)), b)
}

func describeBatch(ts beam.EventTime, b recipient.Batch, emit func(string)) {
	for _, r := range b.Recipients {
		emit(fmt.Sprintf("%s/%d@%d:%s/%s:%s", b.Request.Req.ID, b.Seq, ts, r.UserID, r.DeviceID, r.Token))
	}
}

func describeEvent(ts beam.EventTime, e pushflow.DeliveryEvent, emit func(string)) {
	emit(fmt.Sprintf("%s@%d:%s/%s:%s", e.RequestID, ts, e.UserID, e.DeviceID, e.Reason))
}

// TestTokensPipeline runs TokensWith on Prism: batches buffered across
// requests come out of FinishBundle with their own timestamps, in the
// global window, for both constructors' defaults.
func TestTokensPipeline(t *testing.T) {
	f := newFixture(t,
		registerEvent("u1", "d1", pushflow.PlatformIOS, 1),
		registerEvent("u2", "d2", pushflow.PlatformIOS, 2),
	)
	for _, flush := range []int{0, -1} {
		t.Run(fmt.Sprintf("FlushRecipients=%d", flush), func(t *testing.T) {
			p, s := beam.NewPipelineWithRoot()
			in := beam.ParDo(s, stamp, beam.CreateList(s, []recipient.Batch{
				request("r1", app, 0, recipient.Recipient{UserID: "u1"}, recipient.Recipient{UserID: "none"}),
				request("r2", app, 1, recipient.Recipient{UserID: "u2"}, recipient.Recipient{UserID: "u1"}),
				request("r3", app, 2, recipient.Recipient{UserID: "u2", DeviceID: "d2"}, recipient.Recipient{UserID: "u9", DeviceID: "d9"}),
			}))
			enriched, events := TokensWith(s, in, Config{RedisAddr: f.fn.RedisAddr, FlushRecipients: flush})
			passert.Equals(s, beam.ParDo(s, describeBatch, enriched),
				"r1/0@1000:u1/d1:"+token(1),
				"r2/1@2000:u2/d2:"+token(2),
				"r2/1@2000:u1/d1:"+token(1),
				"r3/2@3000:u2/d2:"+token(2),
			)
			passert.Equals(s, beam.ParDo(s, describeEvent, events),
				"r1@1000:none/:no_device",
				"r3@3000:u9/d9:no_device",
			)
			ptest.RunAndValidate(t, p)
		})
	}
}

func TestTokensPanics(t *testing.T) {
	for _, tt := range []struct {
		name  string
		build func(beam.Scope, beam.PCollection)
	}{
		{"Tokens", func(s beam.Scope, in beam.PCollection) { Tokens(s, in, "") }},
		{"TokensWith", func(s beam.Scope, in beam.PCollection) { TokensWith(s, in, Config{FlushRecipients: 10}) }},
	} {
		want := "enrich." + tt.name + ": RedisAddr is required"
		if got := panicOf(func() {
			_, s := beam.NewPipelineWithRoot()
			tt.build(s, beam.CreateList(s, []recipient.Batch{batch(0)}))
		}); got != want {
			t.Errorf("%s without RedisAddr panicked with %q, want %q", tt.name, got, want)
		}
	}
}

// panicOf returns what f panics with, formatted, or "" if it returns.
func panicOf(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}
