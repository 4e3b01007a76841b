// Package stageout works around a Prism behaviour (Beam Go v2.77.0): during
// every bundle of a stage that has no consumed output, Prism's progress loop
// spins on a closed channel and burns a CPU core (measured: an idle Kafka
// read into a terminal ParDo0 used 60 % of a core, and a bounded one ran at
// half speed). A sink DoFn therefore declares one output it never emits to,
// and Consume gives that output a consumer in another stage.
package stageout

import (
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

func init() {
	register.Function1x0(discard)
}

// Consume consumes none, a PCollection<int> that stays empty, through a
// reshuffle, so the stage producing it has a consumed output.
func Consume(s beam.Scope, none beam.PCollection) {
	s = s.Scope("stageout.Consume")
	beam.ParDo0(s, discard, beam.Reshuffle(s, none))
}

func discard(int) {}
