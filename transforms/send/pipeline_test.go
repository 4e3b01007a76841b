package send

import (
	"fmt"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/pushflow/pushflow"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func init() {
	register.Function1x1(describeEvent)
}

// describeEvent renders an event as "request: device outcome reason".
func describeEvent(e pushflow.DeliveryEvent) string {
	return fmt.Sprintf("%s: %s %s %s", e.RequestID, e.DeviceID, e.Outcome, e.Reason)
}

// TestNotifications runs send on Prism, the DoFn's buffering included: its
// StartBundle/FinishBundle signatures are accepted by the SDK, and what
// FinishBundle emits reaches the output.
func TestNotifications(t *testing.T) {
	f := newFixture(t)
	p, s := beam.NewPipelineWithRoot()
	dup := batch("r-1", 2, ios("u1", "d1", 1))
	in := beam.Create(s,
		batch("r-1", 1, ios("u1", "d1", 1), ios("u2", "d2", 2)),
		batch("r-2", 3, ios("u1", "d1", 1), ios("u3", "d3", 3)),
	)
	events := Notifications(s, in, f.fn.Cfg)
	passert.Equals(s, beam.ParDo(s, describeEvent, events),
		"r-1: d1 sent ", "r-1: d2 sent ", "r-2: d1 sent ", "r-2: d3 sent ")
	ptest.RunAndValidate(t, p)
	if n := f.srv.Count(); n != 4 {
		t.Errorf("APNs accepted %d, want 4", n)
	}

	// Another record of r-1 after the first run: its device is a duplicate.
	p, s = beam.NewPipelineWithRoot()
	events = Notifications(s, beam.Create(s, dup), f.fn.Cfg)
	passert.Equals(s, beam.ParDo(s, describeEvent, events), "r-1: d1 dropped duplicate")
	ptest.RunAndValidate(t, p)
}
