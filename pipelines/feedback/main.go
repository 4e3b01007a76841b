// Command feedback keeps the per-user, per-category interest scores in Redis
// that the dispatch filter reads: it joins ClickEvents (push.clicks) with the
// sent DeliveryEvents (push.deliveries) in fixed event-time windows and
// updates each score as an exponentially decayed open/click rate. Records
// that do not decode or validate go to the dead-letter topic with the reason.
//
// A click is joined only with a sent delivery of the same (request_id,
// device_id) in the same --join_window window; other clicks are counted in
// the feedback_unmatched_clicks counter and dropped (package
// transforms/interest). The embedded dev stack (no --kafka_brokers) is not
// supported yet. Run with --help for every flag.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/internal/prismsplit"
	"github.com/pushflow/pushflow/internal/runsummary"
	"github.com/pushflow/pushflow/transforms/interest"
)

func main() {
	fs := flag.CommandLine
	common := options.Register(fs, "pushflow-feedback")
	joinWindow := fs.Duration("join_window", DefaultJoinWindow, "size of the fixed event-time windows in which clicks are joined with their deliveries; a click whose delivery is in another window is counted unmatched and dropped")
	decay := fs.Float64("interest_decay", interest.DefaultDecay, "weight of the previous score, in [0, 1): new = decay·old + (1−decay)·engaged/sent per window; a user's first window sets the score to engaged/sent")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: feedback --kafka_brokers=host:port [flags]\n\nJoins clicks with sent deliveries and updates per-user, per-category interest scores in Redis.\nThe embedded dev stack (no --kafka_brokers) is not supported.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	flag.Parse()
	prismsplit.Ensure() // Prism's dynamic splits lose elements
	beam.Init()
	common.SetupLogging()
	cfg := Config{Common: *common, JoinWindow: *joinWindow, InterestDecay: *decay}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "feedback: %v\n", err)
		os.Exit(2)
	}
	slog.Info("feedback: starting", "brokers", cfg.KafkaBrokers, "clicks_topic", cfg.ClicksTopic, "deliveries_topic", cfg.DeliveriesTopic,
		"redis", cfg.RedisAddr, "join_window", cfg.JoinWindow, "interest_decay", cfg.InterestDecay, "until", cfg.Until)
	p, s := beam.NewPipelineWithRoot()
	Build(s, cfg)
	start := time.Now()
	res, err := beamx.RunWithMetrics(context.Background(), p)
	if err != nil {
		slog.Error("feedback: pipeline failed", "err", err)
		os.Exit(1)
	}
	runsummary.Print(os.Stdout, "feedback", res, time.Since(start), "")
}
