// Package prismsplit turns off the Prism runner's dynamic splitting of
// running bundles for every pipeline of a binary that imports it.
//
// Prism (Beam Go v2.77.0) asks a bundle that makes no visible progress for
// a while to split at half of its remaining input, and reschedules the
// elements after the split point. Measured here, that silently loses
// elements: a paced 24,000-user broadcast sent 22,700–23,100 in about one
// run of five, every stage before the pacer having counted all 24,000 and
// no bundle failing; with the experiment prism_disable_sdf_split it sent
// all of them in every run (10 of 10). The split is an optimisation of a
// local runner; Flink and Dataflow split with their own, separate code.
//
// Importing the package adds the experiment to --experiments' default, so
// tests and pipelines built in process get it; Ensure adds it after the
// command line is parsed, for binaries whose users may pass their own
// --experiments.
package prismsplit

import (
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
)

// Experiment is the Prism experiment that turns dynamic splitting off.
const Experiment = "prism_disable_sdf_split"

func init() { Ensure() }

// Ensure adds Experiment to --experiments unless it is there. Other
// runners ignore experiments they do not know.
func Ensure() {
	for _, e := range jobopts.GetExperiments() {
		if e == Experiment {
			return
		}
	}
	if *jobopts.Experiments == "" {
		*jobopts.Experiments = Experiment
		return
	}
	*jobopts.Experiments = strings.TrimSuffix(*jobopts.Experiments, ",") + "," + Experiment
}
