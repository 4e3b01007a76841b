// Command registry keeps the Redis device registry: it reads DeviceEvents
// (register, unregister, settings; with tags and aliases) from Kafka and
// applies them to Redis. Records that do not decode or validate go to the
// dead-letter topic with the reason.
//
// Without --kafka_brokers it starts the embedded dev stack seeded with
// testdata/devices.jsonl and runs bounded. See README.md for every flag.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/internal/prismsplit"
	"github.com/pushflow/pushflow/internal/runsummary"
)

func main() {
	fs := flag.CommandLine
	common := options.Register(fs, "pushflow-registry")
	testdata := fs.String("testdata", "testdata", "dev stack only: directory with devices.jsonl to seed")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: registry [flags]\n\nApplies device events from Kafka to the Redis device registry (see README.md).\nWithout --kafka_brokers it runs on the embedded dev stack seeded from --testdata.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	flag.Parse()
	prismsplit.Ensure() // Prism's dynamic splits lose elements
	beam.Init()
	common.SetupLogging()
	cfg := Config{Common: *common}

	ctx := context.Background()
	if cfg.DevMode() {
		st, err := devstack.Start(ctx, devstack.Options{})
		if err != nil {
			slog.Error("registry: dev stack", "err", err)
			os.Exit(1)
		}
		defer st.Close()
		cfg.KafkaBrokers, cfg.RedisAddr, cfg.Until = st.Brokers[0], st.RedisAddr, "latest"
		if _, err := devstack.ProduceFile(ctx, st.Brokers, cfg.DevicesTopic, pushflow.TopicDevices, filepath.Join(*testdata, "devices.jsonl")); err != nil {
			slog.Error("registry: seed", "err", err)
			os.Exit(1)
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "registry: %v\n", err)
		os.Exit(2)
	}
	slog.Info("registry: starting", "brokers", cfg.KafkaBrokers, "devices_topic", cfg.DevicesTopic, "redis", cfg.RedisAddr, "until", cfg.Until)
	p, s := beam.NewPipelineWithRoot()
	Build(s, cfg)
	start := time.Now()
	res, err := beamx.RunWithMetrics(ctx, p)
	if err != nil {
		slog.Error("registry: pipeline failed", "err", err)
		os.Exit(1)
	}
	runsummary.Print(os.Stdout, "registry", res, time.Since(start), "")
}
