package main

import (
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/transforms/decode"
	"github.com/pushflow/pushflow/transforms/devices"
	"github.com/pushflow/pushflow/transforms/encode"
)

// Config is the registry pipeline's validated configuration.
type Config struct {
	options.Common
}

// Validate checks cfg.
func (c *Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.DevMode() {
		return fmt.Errorf("--kafka_brokers: required outside the dev stack")
	}
	return nil
}

// Build adds the registry graph to s and returns the dead letters
// (PCollection<pushflow.DeadLetter>):
//
//	Kafka devices → decode → devices.Apply (Redis registry)
//	                  └ bad input → push.deadletter
func Build(s beam.Scope, cfg Config) beam.PCollection {
	s = s.Scope("registry")
	records := kafkaio.Read(s, kafkaio.ReadConfig{
		Brokers:  cfg.Brokers(),
		Topics:   []string{cfg.DevicesTopic},
		Group:    cfg.Group,
		Start:    cfg.Start,
		Until:    cfg.Until,
		ClientID: "pushflow-registry",
		Security: cfg.KafkaSecurity(),
	})
	events, dead := decode.DeviceEvents(s, records)
	devices.Apply(s, events, cfg.RedisAddr)
	kafkaio.Write(s, kafkaio.WriteConfig{Brokers: cfg.Brokers(), Topic: cfg.DeadLetterTopic, ClientID: "pushflow-registry", Security: cfg.KafkaSecurity()}, encode.DeadLetters(s, dead))
	return dead
}
