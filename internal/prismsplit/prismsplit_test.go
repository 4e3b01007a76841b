package prismsplit

import (
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
)

func TestEnsure(t *testing.T) {
	defer func(old string) { *jobopts.Experiments = old }(*jobopts.Experiments)
	for _, tc := range []struct{ in, want string }{
		{"", Experiment},
		{"use_runner_v2", "use_runner_v2," + Experiment},
		{"a,b,", "a,b," + Experiment},
		{Experiment, Experiment},
		{"a," + Experiment + ",b", "a," + Experiment + ",b"},
	} {
		*jobopts.Experiments = tc.in
		Ensure()
		if got := *jobopts.Experiments; got != tc.want {
			t.Errorf("Ensure() with --experiments=%q gave %q, want %q", tc.in, got, tc.want)
		}
	}
}
