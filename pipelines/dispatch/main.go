// Command dispatch is pushflow's streaming core: it reads PushRequests from
// Kafka, validates them (bad input goes to the dead-letter topic with the
// reason), expands each target into recipients, filters them (opt-out, quiet
// hours, frequency caps, interest), enriches them with device tokens from
// Redis, sends through APNs, and writes one DeliveryEvent per recipient to
// the deliveries topic and the delivery table.
//
// Without --kafka_brokers it starts the embedded dev stack seeded with
// testdata/ and runs bounded. See README.md for every flag.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
	"github.com/sideshow/apns2"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/breaker"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/internal/prismsplit"
	"github.com/pushflow/pushflow/internal/runsummary"
	"github.com/pushflow/pushflow/transforms/send"
)

func main() {
	fs := flag.CommandLine
	common := options.Register(fs, "pushflow-dispatch")
	cfg := Config{}
	fs.StringVar(&cfg.APNs.Endpoint, "apns_endpoint", apns2.HostProduction, "APNs endpoint URL (Apple production by default; "+apns2.HostDevelopment+" for Apple's sandbox)")
	fs.StringVar(&cfg.APNs.CAFile, "apns_ca_file", "", "extra root CA (PEM) to trust for the APNs endpoint, e.g. a local APNs test server")
	fs.StringVar(&cfg.APNs.KeyFile, "apns_key_file", "", "APNs token-auth key (.p8); with --apns_key_id and --apns_team_id")
	fs.StringVar(&cfg.APNs.KeyID, "apns_key_id", "", "APNs token-auth key id")
	fs.StringVar(&cfg.APNs.TeamID, "apns_team_id", "", "Apple developer team id")
	fs.StringVar(&cfg.APNs.CertFile, "apns_cert_file", "", "APNs certificate auth: .p12 or PEM (cert+key) file, instead of token auth")
	fs.StringVar(&cfg.APNs.CertPasswordFile, "apns_cert_password_file", "", "file holding the password of an encrypted --apns_cert_file (read on the worker; never in the job graph or logs)")
	fs.StringVar(&cfg.APNs.CertPasswordEnv, "apns_cert_password_env", "", "name of an environment variable on the workers holding the password of --apns_cert_file")
	fs.IntVar(&cfg.APNs.Concurrency, "apns_concurrency", 64, "in-flight APNs requests per worker; keep below the server's HTTP/2 stream limit")
	fs.StringVar(&cfg.FCM.Endpoint, "fcm_endpoint", "", "FCM base URL (default Google's https://fcm.googleapis.com; an http:// loopback URL for a test server)")
	fs.StringVar(&cfg.FCM.ProjectID, "fcm_project_id", "", "Firebase project to send Android notifications through; default: the credentials file's project_id. Without it and --fcm_credentials_file, Android devices fail with reason no_provider")
	fs.StringVar(&cfg.FCM.CredentialsFile, "fcm_credentials_file", "", "FCM service-account JSON key file (never logged); without it and with --fcm_endpoint set, requests are unauthenticated (test servers)")
	fs.StringVar(&cfg.FCM.CredentialsEnv, "fcm_credentials_env", "", "name of an environment variable on the workers holding the FCM service-account JSON (instead of --fcm_credentials_file)")
	fs.IntVar(&cfg.FCM.Concurrency, "fcm_concurrency", 64, "in-flight FCM requests per worker")
	fs.StringVar(&cfg.DeliveryTable, "delivery_table", "", "delivery table: file:///dir (Parquet partitioned by day) or bq://project.dataset.table; empty: deliveries topic only")
	fs.StringVar(&cfg.RealtimeTopic, "realtime_topic", "", "optional topic of realtime requests, read by its own reader so they never queue behind a bulk backlog on --requests_topic")
	fs.IntVar(&cfg.RealtimeConcurrency, "realtime_concurrency", 32, "the realtime lane's own in-flight APNs requests per worker")
	fs.IntVar(&cfg.Pace.GlobalQPS, "paced_qps", 0, "total send rate of the normal/bulk lane, all campaigns together (notifications/s); 0 = unpaced")
	fs.IntVar(&cfg.Pace.DefaultCampaignQPS, "default_campaign_qps", 0, "send-rate ceiling of a campaign not named in --campaign_qps; 0 = none")
	fs.Func("campaign_qps", "per-campaign send-rate ceilings, e.g. c-7=1000,c-8=250 (concurrent campaigns share --paced_qps evenly, unused share goes to the others)", func(v string) error {
		m, err := parseRates(v)
		cfg.Pace.CampaignQPS = m
		return err
	})
	fs.IntVar(&cfg.Pace.Shards, "pace_shards", 4, "keys the pacing state is spread over; every rate is divided evenly among them")
	fs.DurationVar(&cfg.Pace.Slot, "pace_slot", 100*time.Millisecond, "pacing allocation period")
	fs.Int64Var(&cfg.PaceMaxPending, "pace_max_pending", 50000, "backpressure of a paced lane: recipients of one campaign that may wait in the pacer before the expansion of its broadcast, tag or file audiences pauses (the rest stays in Redis); 0 = no limit (the pacer holds whole audiences)")
	fs.Int64Var(&cfg.RequestsMaxPending, "requests_max_pending", 200000, "with --realtime_topic and a paced lane: the --requests_topic reader pauses while the paced lane holds this many recipients (all campaigns), so a flood of requests waits in Kafka; 0 = never pause. Ignored without --realtime_topic (pausing the one reader would hold realtime requests back)")
	fs.IntVar(&cfg.FlushRecipients, "flush_recipients", 1000, "recipients filter, enrich and send buffer from a bundle before doing their Redis and provider work for all of them at once, across requests; 1 = one batch at a time")
	fs.IntVar(&cfg.BatchSize, "batch_size", 500, "recipients per batch between expand and send (one pipelined Redis read per batch)")
	fs.IntVar(&cfg.Filter.FrequencyCap, "frequency_cap", 0, "most notifications per user, category and day in the user's time zone (UTC without one), each request counted once however often it is replayed; 0 = no cap")
	fs.Float64Var(&cfg.Filter.MinInterest, "min_interest", 0, "drop recipients whose interest score for the category is known and below this; 0 = off")
	fs.DurationVar(&cfg.RetryHorizon, "send_retry_horizon", send.DefaultRetryHorizon, "how long after its request time a notification without ttl_seconds is retried after transient provider failures (429, 5xx, timeouts); with a ttl the ttl is the horizon")
	fs.IntVar(&cfg.RetryMaxAttempts, "send_retry_max_attempts", send.DefaultRetryMaxAttempts, "provider attempts per device over all its retries, before it fails with the provider's reason")
	fs.IntVar(&cfg.BreakerThreshold, "breaker_threshold", breaker.DefaultThreshold, "consecutive transient failures of one provider for one app that open its circuit breaker (its devices then wait in the retry lane)")
	fs.DurationVar(&cfg.BreakerCooldown, "breaker_cooldown", breaker.DefaultCooldown, "how long an open breaker waits before one probe; doubles (up to 1m) while probes fail")
	ledgerOn := fs.Bool("ledger", true, "keep a durable record in Redis of every request read and not yet finished, and replay what a killed run left open (crash safety on any runner); false: a crash loses what was in flight")
	fs.Func("audience_roots", "file targets may only name files under these directories (comma-separated; relative ones resolve against the worker's working directory); empty = file targets are refused. The dev stack defaults it to --testdata", func(v string) error {
		cfg.AudienceRoots = splitList(v)
		return nil
	})
	testdata := fs.String("testdata", "testdata", "dev stack only: directory with devices.jsonl, requests.jsonl and apns-unregistered.txt to seed")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dispatch [flags]\n\nReads push requests from Kafka and delivers them (see README.md).\nWithout --kafka_brokers it runs on the embedded dev stack seeded from --testdata.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	flag.Parse()
	prismsplit.Ensure() // Prism's dynamic splits lose elements
	beam.Init()
	common.SetupLogging()
	cfg.Common = *common
	cfg.NoLedger = !*ledgerOn

	ctx := context.Background()
	devMode := cfg.DevMode()
	if devMode {
		st, err := startDev(ctx, &cfg, *testdata)
		if err != nil {
			slog.Error("dispatch: dev stack", "err", err)
			os.Exit(1)
		}
		defer st.Close()
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "dispatch: %v\n", err)
		os.Exit(2)
	}
	slog.Info("dispatch: starting", "brokers", cfg.KafkaBrokers, "requests_topic", cfg.RequestsTopic, "redis", cfg.RedisAddr, "apns", cfg.APNs, "fcm", cfg.FCM, "delivery_table", cfg.DeliveryTable, "until", cfg.Until)
	p, s := beam.NewPipelineWithRoot()
	Build(s, cfg)
	start := time.Now()
	res, err := beamx.RunWithMetrics(ctx, p)
	if err != nil {
		slog.Error("dispatch: pipeline failed", "err", err)
		os.Exit(1)
	}
	// Under `make run` the dev runner prints the table; alone, say it here.
	table := ""
	if devMode {
		table = cfg.DeliveryTable
	}
	runsummary.Print(os.Stdout, "dispatch", res, time.Since(start), table)
}

// startDev starts the embedded dev stack, seeds the registry and the
// requests topic from dir, and points cfg at it.
func startDev(ctx context.Context, cfg *Config, dir string) (*devstack.Stack, error) {
	st, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		return nil, err
	}
	cfg.KafkaBrokers = st.Brokers[0]
	cfg.RedisAddr = st.RedisAddr
	cfg.Until = "latest"
	cfg.APNs.Endpoint, cfg.APNs.CAFile = st.APNsURL, st.APNsCAFile
	cfg.APNs.KeyFile, cfg.APNs.KeyID, cfg.APNs.TeamID, cfg.APNs.CertFile = st.APNsKeyFile, st.APNsKeyID, st.APNsTeamID, ""
	cfg.FCM.Endpoint, cfg.FCM.ProjectID, cfg.FCM.CredentialsFile = st.FCMURL, st.FCMProjectID, ""
	if len(cfg.AudienceRoots) == 0 {
		cfg.AudienceRoots = []string{dir} // requests.jsonl targets testdata/audience.txt
	}
	if cfg.DeliveryTable == "" {
		// Outlives the stack so the table can be queried after the run.
		dir := filepath.Join(os.TempDir(), "pushflow-dev", "deliveries")
		if err := os.RemoveAll(dir); err != nil {
			st.Close()
			return nil, err
		}
		cfg.DeliveryTable = "file://" + dir
	}
	if _, err := devstack.ApplyDevicesFile(ctx, st.RedisAddr, filepath.Join(dir, "devices.jsonl")); err != nil {
		st.Close()
		return nil, err
	}
	if err := st.UnregisterTokensFile(filepath.Join(dir, "apns-unregistered.txt")); err != nil {
		st.Close()
		return nil, err
	}
	if _, err := devstack.ProduceFile(ctx, st.Brokers, cfg.RequestsTopic, pushflow.TopicRequests, filepath.Join(dir, "requests.jsonl")); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseRates parses "name=qps,name=qps".
func parseRates(v string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range strings.Split(v, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		name, q, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(q)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("want campaign=qps with qps >= 0, got %q", kv)
		}
		out[name] = n
	}
	return out, nil
}
