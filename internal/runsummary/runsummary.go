// Package runsummary prints what a bounded pipeline run did: its pushflow
// counters, and the delivery table's outcomes when there is one.
package runsummary

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"

	"github.com/pushflow/pushflow/connectors/tableio"
)

// Counters sums the pushflow namespace's counters of a run by name. An
// asynchronous submission (--async) has none: Beam v2.77.0's universal and
// Dataflow results panic on Metrics() then.
func Counters(res beam.PipelineResult) map[string]int64 {
	out := map[string]int64{}
	if res == nil || *jobopts.Async {
		return out
	}
	for _, c := range res.Metrics().AllMetrics().Counters() {
		if c.Key.Namespace == "pushflow" {
			out[c.Key.Name] += c.Result()
		}
	}
	return out
}

// Print writes the summary of a finished run: its counters, then the
// delivery table's outcomes when table is a file:// table.
func Print(w io.Writer, pipeline string, res beam.PipelineResult, took time.Duration, table string) {
	if *jobopts.Async {
		id := *jobopts.JobName // the universal runner returns no id for --async
		if res != nil && res.JobID() != "" {
			id = res.JobID()
		}
		fmt.Fprintf(w, "\n== %s submitted in %s (--async): job %q; not waiting for it ==\n", pipeline, took.Round(time.Millisecond), id)
		return
	}
	fmt.Fprintf(w, "\n== %s finished in %s ==\n", pipeline, took.Round(time.Millisecond))
	counters := Counters(res)
	names := make([]string, 0, len(counters))
	for n := range counters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-32s %d\n", n, counters[n])
	}
	if dir, ok := strings.CutPrefix(table, "file://"); ok {
		sum, err := tableio.Summarize(dir)
		if err != nil {
			fmt.Fprintf(w, "delivery table %s: %v\n", table, err)
			return
		}
		fmt.Fprintf(w, "delivery table %s\n%s", table, sum)
	}
}
