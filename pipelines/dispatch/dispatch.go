package main

import (
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/transforms/decode"
	"github.com/pushflow/pushflow/transforms/encode"
	"github.com/pushflow/pushflow/transforms/enrich"
	"github.com/pushflow/pushflow/transforms/expand"
	"github.com/pushflow/pushflow/transforms/filter"
	"github.com/pushflow/pushflow/transforms/send"
)

// Config is dispatch's validated configuration.
type Config struct {
	options.Common
	APNs          apnsio.Config
	FCMEndpoint   string
	DeliveryTable string // "" = no table, only the deliveries topic
	BatchSize     int
	Filter        filter.Config
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
	if c.DeliveryTable != "" {
		if _, err := tableio.ParseTable(c.DeliveryTable); err != nil {
			return fmt.Errorf("--delivery_table: %w", err)
		}
	}
	if c.BatchSize <= 0 {
		return fmt.Errorf("--batch_size: must be > 0, got %d", c.BatchSize)
	}
	if c.Filter.FrequencyCap < 0 || c.Filter.MinInterest < 0 {
		return fmt.Errorf("--frequency_cap and --min_interest must be >= 0")
	}
	return nil
}

// Outputs are the graph's terminal collections, for tests.
type Outputs struct {
	Deliveries  beam.PCollection // PCollection<pushflow.DeliveryEvent>
	DeadLetters beam.PCollection // PCollection<pushflow.DeadLetter>
}

// Build adds the dispatch graph to s:
//
//	Kafka requests → decode → expand → filter → enrich → send ─┐
//	     │ bad input      │ unknown/none │ rule    │ no device    │
//	     ▼                ▼              ▼         ▼              ▼
//	push.deadletter    DeliveryEvents (one per recipient) → push.deliveries + delivery table
//
// expand → filter → enrich → send are plain ParDos on batches of
// recipients, so the runner fuses them: no shuffle between them.
func Build(s beam.Scope, cfg Config) Outputs {
	s = s.Scope("dispatch")
	records := kafkaio.Read(s, kafkaio.ReadConfig{
		Brokers:  cfg.Brokers(),
		Topics:   []string{cfg.RequestsTopic},
		Group:    cfg.Group,
		Start:    cfg.Start,
		Until:    cfg.Until,
		ClientID: "pushflow-dispatch",
	})
	reqs, deadDecode, invalid := decode.Requests(s, records)
	batches, expandEvents, deadExpand := expand.Targets(s, reqs, expand.Config{RedisAddr: cfg.RedisAddr, BatchSize: cfg.BatchSize})
	fcfg := cfg.Filter
	fcfg.RedisAddr = cfg.RedisAddr
	kept, filterEvents := filter.Apply(s, batches, fcfg)
	devices, enrichEvents := enrich.Tokens(s, kept, cfg.RedisAddr)
	sendEvents := send.Notifications(s, devices, send.Config{RedisAddr: cfg.RedisAddr, APNs: cfg.APNs})

	deliveries := beam.Flatten(s, invalid, expandEvents, filterEvents, enrichEvents, sendEvents)
	dead := beam.Flatten(s, deadDecode, deadExpand)

	kafkaio.Write(s, kafkaio.WriteConfig{Brokers: cfg.Brokers(), Topic: cfg.DeliveriesTopic, ClientID: "pushflow-dispatch"}, encode.Deliveries(s, deliveries))
	kafkaio.Write(s, kafkaio.WriteConfig{Brokers: cfg.Brokers(), Topic: cfg.DeadLetterTopic, ClientID: "pushflow-dispatch"}, encode.DeadLetters(s, dead))
	if cfg.DeliveryTable != "" {
		tableio.Write(s, cfg.DeliveryTable, deliveries)
	}
	return Outputs{Deliveries: deliveries, DeadLetters: dead}
}
