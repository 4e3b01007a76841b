package main

import (
	"fmt"
	"os"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/fcmio"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/transforms/enrich"
	"github.com/pushflow/pushflow/transforms/expand"
	"github.com/pushflow/pushflow/transforms/filter"
	"github.com/pushflow/pushflow/transforms/lanes"
	"github.com/pushflow/pushflow/transforms/ledger"
	"github.com/pushflow/pushflow/transforms/pace"
	"github.com/pushflow/pushflow/transforms/send"
)

// Config is dispatch's validated configuration.
type Config struct {
	options.Common
	APNs          apnsio.Config
	FCM           fcmio.Config // used when FCM.ProjectID, CredentialsFile or CredentialsEnv is set
	DeliveryTable string       // "" = no table, only the deliveries topic
	BatchSize     int
	// RealtimeTopic, when set, is read by its own Kafka reader; realtime
	// requests on the main topic still take the realtime lane.
	RealtimeTopic string
	// RealtimeConcurrency is the realtime lane's own APNs in-flight budget.
	RealtimeConcurrency int
	// Pace paces the normal/bulk lane between enrich and send. With no rate
	// set (GlobalQPS, CampaignQPS and DefaultCampaignQPS all 0) the lane is
	// not paced and has no shuffle before sending.
	Pace pace.Config
	// PaceMaxPending is the backpressure limit of the paced lane: the
	// recipients of one campaign that may wait in the pacer before its
	// large expansions pause. 0 = none.
	PaceMaxPending int64
	// RequestsMaxPending, with RealtimeTopic set, pauses the requests
	// topic's reader while the paced lane holds this many recipients. 0 =
	// never pause.
	RequestsMaxPending int64
	// FlushRecipients is how many recipients filter, enrich and send buffer
	// from a bundle before they do their Redis and provider work for all
	// of them at once (across requests). 0 = their default (1,000); 1 =
	// one batch at a time.
	FlushRecipients int
	Filter          filter.Config
	// NoLedger turns off the ledger: the durable record (in Redis) of every
	// request read and not finished, from which a restarted run replays
	// what a killed one left open (see transforms/ledger). Without it a
	// crash loses whatever was in flight.
	NoLedger bool
	// Run identifies this run for the ledger; Build picks a fresh one when
	// it is empty.
	Run string
	// Retry is how send rides out provider outages (send.Config's retry
	// and breaker fields; zero fields take send's defaults).
	RetryHorizon     time.Duration
	RetryMaxAttempts int
	BreakerThreshold int
	BreakerCooldown  time.Duration
	// AudienceRoots are the directories file targets may name files
	// under; empty = file targets are refused (expand.Config.AudienceRoots).
	AudienceRoots []string
}

// Validate checks cfg before any graph is built.
func (c *Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.DevMode() {
		return fmt.Errorf("--kafka_brokers: required outside the dev stack")
	}
	if err := c.APNs.Validate(); err != nil {
		return err
	}
	if c.FCMEnabled() {
		if err := c.FCM.Validate(); err != nil {
			return err
		}
	}
	if c.DeliveryTable != "" {
		if _, err := tableio.ParseTable(c.DeliveryTable); err != nil {
			return fmt.Errorf("--delivery_table: %w", err)
		}
	}
	if c.RealtimeConcurrency <= 0 {
		return fmt.Errorf("--realtime_concurrency: must be > 0, got %d", c.RealtimeConcurrency)
	}
	if c.RealtimeTopic != "" && c.RealtimeTopic == c.RequestsTopic {
		return fmt.Errorf("--realtime_topic: must differ from --requests_topic %q", c.RequestsTopic)
	}
	if c.FlushRecipients < 0 {
		return fmt.Errorf("--flush_recipients: must be >= 0, got %d", c.FlushRecipients)
	}
	if c.RequestsMaxPending < 0 {
		return fmt.Errorf("--requests_max_pending: must be >= 0, got %d", c.RequestsMaxPending)
	}
	if c.PaceMaxPending < 0 {
		return fmt.Errorf("--pace_max_pending: must be >= 0, got %d", c.PaceMaxPending)
	}
	if c.Pace.GlobalQPS < 0 || c.Pace.DefaultCampaignQPS < 0 || c.Pace.Shards < 0 {
		return fmt.Errorf("--paced_qps, --default_campaign_qps and --pace_shards must be >= 0")
	}
	for c, q := range c.Pace.CampaignQPS {
		if q < 0 {
			return fmt.Errorf("--campaign_qps: %s: must be >= 0, got %d", c, q)
		}
	}
	if c.RetryHorizon < 0 || c.RetryMaxAttempts < 0 || c.BreakerThreshold < 0 || c.BreakerCooldown < 0 {
		return fmt.Errorf("--send_retry_horizon, --send_retry_max_attempts, --breaker_threshold and --breaker_cooldown must be >= 0")
	}
	if c.BatchSize <= 0 {
		return fmt.Errorf("--batch_size: must be > 0, got %d", c.BatchSize)
	}
	if c.Filter.FrequencyCap < 0 || c.Filter.MinInterest < 0 {
		return fmt.Errorf("--frequency_cap and --min_interest must be >= 0")
	}
	return nil
}

// FCMEnabled reports whether Android devices are sent through FCM.
func (c *Config) FCMEnabled() bool {
	return c.FCM.ProjectID != "" || c.FCM.CredentialsFile != "" || c.FCM.CredentialsEnv != ""
}

// sendConfig is the sender configuration of one lane, with its own
// in-flight budget per provider (0 keeps the connector's default).
func (c *Config) sendConfig(concurrency int) send.Config {
	sc := send.Config{RedisAddr: c.RedisAddr, APNs: c.APNs, FCM: c.FCM, FCMEnabled: c.FCMEnabled(), FlushRecipients: c.FlushRecipients,
		RetryHorizon: c.RetryHorizon, RetryMaxAttempts: c.RetryMaxAttempts, BreakerThreshold: c.BreakerThreshold, BreakerCooldown: c.BreakerCooldown}
	if concurrency > 0 {
		sc.APNs.Concurrency, sc.FCM.Concurrency = concurrency, concurrency
	}
	return sc
}

// Outputs are the graph's terminal collections, for tests.
type Outputs struct {
	Deliveries  beam.PCollection // PCollection<pushflow.DeliveryEvent>
	DeadLetters beam.PCollection // PCollection<pushflow.DeadLetter>
}

// Build adds the dispatch graph to s:
//
//	Kafka requests ─► decode ─► lanes.Split ─► realtime: expand → filter → enrich → send (own sender)
//	(+ realtime topic)   │                └──► paced:    reshuffle → expand → filter → enrich → pace → send
//	                     │ bad input
//	                     ▼
//	push.deadletter   DeliveryEvents (one per recipient, every lane) → push.deliveries + delivery table
//
// Within a lane expand → filter → enrich → send are plain ParDos on batches
// of recipients, so the runner fuses them: no shuffle on the hot path. The
// paced lane starts with a reshuffle so a large expansion (a broadcast) runs
// apart from the Kafka reader and never delays the realtime lane behind it.
// Expansion is splittable: a large audience is read in slices, and in the
// paced lane a slice waits while the campaign already has
// --pace_max_pending recipients in the pacer (backpressure: the audience
// stays in Redis, not in pacing state).
func Build(s beam.Scope, cfg Config) Outputs {
	s = s.Scope("dispatch")
	read := func(topic string, pause *readPause) beam.PCollection {
		rc := kafkaio.ReadConfig{
			Brokers:  cfg.Brokers(),
			Topics:   []string{topic},
			Group:    cfg.Group,
			Start:    cfg.Start,
			Until:    cfg.Until,
			ClientID: "pushflow-dispatch",
			Security: cfg.KafkaSecurity(),
		}
		if pause != nil {
			rc.Pause, rc.PauseArg = pacedBacklogPauser, pause.String()
		}
		return kafkaio.Read(s, rc)
	}
	// With realtime requests on their own topic, the requests topic holds
	// only traffic that may wait: its reader pauses while the paced lane
	// is full, so a flood of requests waits in Kafka. (On one shared topic
	// that would hold realtime requests back too.)
	var pause *readPause
	if cfg.RealtimeTopic != "" && cfg.RequestsMaxPending > 0 && Paced(cfg.Pace) {
		pause = &readPause{Redis: cfg.RedisAddr, Lane: PacedLane(cfg.Group), Shards: max(cfg.Pace.Shards, 1), Max: cfg.RequestsMaxPending}
	}
	lc := cfg.ledgerConfig()
	// Every record is admitted to the ledger before the reader can commit
	// its offset; Replay brings back what a previous run left open.
	reqs, admitOuts := ledger.Admit(s, read(cfg.RequestsTopic, pause), lc)
	replayReqs, replayOuts := ledger.Replay(s, lc)
	reqs = beam.Flatten(s, reqs, replayReqs)
	outs := []beam.PCollection{admitOuts, replayOuts}
	realtime, paced := lanes.Split(s, reqs)
	if cfg.RealtimeTopic != "" {
		// Its own reader: a realtime request never waits behind a bulk
		// backlog on the main topic's partitions.
		rtReqs, rtOuts := ledger.Admit(s.Scope("realtime_topic"), read(cfg.RealtimeTopic, nil), lc)
		rtRealtime, rtPaced := lanes.Split(s.Scope("realtime_topic"), rtReqs)
		realtime = beam.Flatten(s, realtime, rtRealtime)
		paced = beam.Flatten(s, paced, rtPaced)
		outs = append(outs, rtOuts)
	}
	admitted := beam.Flatten(s, outs...)
	admittedEvents, admittedDead := ledger.Split(s, admitted)
	deliveries := []beam.PCollection{admittedEvents}
	deads := []beam.PCollection{admittedDead}

	rtEvents, rtDead := lane(s.Scope("realtime"), cfg, realtime, cfg.sendConfig(cfg.RealtimeConcurrency), nil, nil)
	var pacer func(beam.Scope, beam.PCollection) beam.PCollection
	var bp *expand.Backpressure
	if Paced(cfg.Pace) {
		pc := cfg.Pace
		pc.RedisAddr, pc.Lane = cfg.RedisAddr, PacedLane(cfg.Group)
		pacer = func(s beam.Scope, b beam.PCollection) beam.PCollection { return pace.Paced(s, b, pc) }
		if cfg.PaceMaxPending > 0 {
			bp = &expand.Backpressure{Lane: pc.Lane, Shards: pc.Shards, MaxPending: cfg.PaceMaxPending, Poll: backpressurePoll(pc, cfg.PaceMaxPending)}
		}
	}
	pacedEvents, pacedDead := lane(s.Scope("paced"), cfg, beam.Reshuffle(s, paced), cfg.sendConfig(0), pacer, bp)
	deliveries = append(deliveries, rtEvents, pacedEvents)
	deads = append(deads, rtDead, pacedDead)

	all := beam.Flatten(s, deliveries...)
	dead := beam.Flatten(s, deads...)
	// One writer for the table and both topics, which settles the ledger
	// only once what it settles is written.
	laneEvents := beam.Flatten(s, rtEvents, pacedEvents)
	laneDead := beam.Flatten(s, rtDead, pacedDead)
	ledger.Deliver(s, beam.Flatten(s, admitted, ledger.Events(s, laneEvents), ledger.DeadLetters(s, laneDead)), ledger.DeliverConfig{
		Ledger:          lc,
		Brokers:         cfg.Brokers(),
		ClientID:        "pushflow-dispatch",
		Security:        cfg.KafkaSecurity(),
		DeliveriesTopic: cfg.DeliveriesTopic,
		DeadLetterTopic: cfg.DeadLetterTopic,
		Table:           cfg.DeliveryTable,
	})
	return Outputs{Deliveries: all, DeadLetters: dead}
}

// LedgerName names the ledger of the dispatch pipeline consuming as group.
func LedgerName(group string) string { return "dispatch/" + group }

// ledgerConfig is the ledger of cfg (off with cfg.NoLedger); its run id
// is cfg.Run or, when empty, a fresh one.
func (c *Config) ledgerConfig() ledger.Config {
	if c.NoLedger {
		return ledger.Config{}
	}
	if c.Run == "" {
		c.Run = fmt.Sprintf("%d-%d", time.Now().UnixNano(), os.Getpid())
	}
	return ledger.Config{RedisAddr: c.RedisAddr, Name: LedgerName(c.Group), Run: c.Run}
}

// PacedLane names the paced lane of the dispatch pipeline consuming as
// group in the pacer's backlog reports (redisio's pf:pace:<lane>:<shard>),
// so two deployments sharing a Redis do not hold each other back.
func PacedLane(group string) string { return pace.DefaultLane + "/" + group }

// backpressurePoll is how long a large expansion that filled its campaign's
// room waits before it looks at the backlog again: a quarter of the time
// the fastest campaign drains maxPending (so the pacer never runs dry
// while the expansion waits), at least 100 ms (a pacer slot: reports are
// not fresher) and at most expand.DefaultPoll.
func backpressurePoll(pc pace.Config, maxPending int64) time.Duration {
	fastest := pc.GlobalQPS
	if fastest == 0 {
		fastest = pc.DefaultCampaignQPS
		for _, q := range pc.CampaignQPS {
			fastest = max(fastest, q)
		}
	}
	if fastest <= 0 {
		return expand.DefaultPoll
	}
	d := time.Duration(float64(maxPending) / float64(4*fastest) * float64(time.Second))
	return min(max(d, 100*time.Millisecond), expand.DefaultPoll)
}

// Paced reports whether pc sets any rate, i.e. whether the lane is paced.
func Paced(pc pace.Config) bool {
	return pc.GlobalQPS > 0 || pc.DefaultCampaignQPS > 0 || len(pc.CampaignQPS) > 0
}

// lane is expand → filter → enrich → [pacer] → send over one lane's
// requests; bp, when set, holds large expansions back while the pacer is
// full. It returns the lane's DeliveryEvents and DeadLetters.
func lane(s beam.Scope, cfg Config, reqs beam.PCollection, sendCfg send.Config, pacer func(beam.Scope, beam.PCollection) beam.PCollection, bp *expand.Backpressure) (events, dead beam.PCollection) {
	lc := cfg.ledgerConfig()
	batches, expandEvents, dead := expand.Targets(s, reqs, expand.Config{RedisAddr: cfg.RedisAddr, BatchSize: cfg.BatchSize, Backpressure: bp, AudienceRoots: cfg.AudienceRoots, Ledger: lc.Name})
	fcfg := cfg.Filter
	fcfg.RedisAddr, fcfg.FlushRecipients = cfg.RedisAddr, cfg.FlushRecipients
	kept, filterEvents := filter.Apply(s, batches, fcfg)
	devices, enrichEvents := enrich.TokensWith(s, kept, enrich.Config{RedisAddr: cfg.RedisAddr, FlushRecipients: cfg.FlushRecipients, Ledger: lc.Name})
	if pacer != nil {
		devices = pacer(s, devices)
	}
	sendEvents := send.Notifications(s, devices, sendCfg)
	return beam.Flatten(s, expandEvents, filterEvents, enrichEvents, sendEvents), dead
}
