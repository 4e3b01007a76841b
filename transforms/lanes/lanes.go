// Package lanes splits requests by priority. The realtime lane carries
// requests that must never wait behind normal or bulk traffic (breaking news,
// a live event starting); dispatch gives it its own fused chain, its own
// sender and in-flight budget, and no pacing. Everything else shares the
// paced lane.
package lanes

import (
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.Function3x0(byPriority)
}

// Split partitions PCollection<recipient.Request> into the realtime lane
// and the paced lane (normal and bulk), both PCollection<recipient.Request>.
func Split(s beam.Scope, reqs beam.PCollection) (realtime, paced beam.PCollection) {
	s = s.Scope("lanes.Split")
	return beam.ParDo2(s, byPriority, reqs)
}

// Realtime reports whether a request takes the realtime lane.
func Realtime(r pushflow.PushRequest) bool { return r.Priority == pushflow.PriorityRealtime }

func byPriority(r recipient.Request, realtime, paced func(recipient.Request)) {
	if Realtime(r.Req) {
		realtime(r)
		return
	}
	paced(r)
}
