package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/transforms/decode"
	"github.com/pushflow/pushflow/transforms/encode"
	"github.com/pushflow/pushflow/transforms/interest"
)

// DefaultJoinWindow is the default size of the join windows.
const DefaultJoinWindow = 10 * time.Minute

// Config is the feedback pipeline's validated configuration.
type Config struct {
	options.Common
	// JoinWindow is the size of the fixed event-time windows in which
	// clicks are joined with their deliveries.
	JoinWindow time.Duration
	// InterestDecay is the weight of the previous score (interest.Score).
	InterestDecay float64
}

// Validate checks cfg.
func (c *Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.DevMode() {
		return errors.New("--kafka_brokers: required (the embedded dev stack is not supported by feedback yet)")
	}
	if c.JoinWindow <= 0 {
		return fmt.Errorf("--join_window: must be positive, got %v", c.JoinWindow)
	}
	if !(c.InterestDecay >= 0 && c.InterestDecay < 1) {
		return fmt.Errorf("--interest_decay: want a value in [0, 1), got %v", c.InterestDecay)
	}
	return nil
}

// Build adds the feedback graph to s and returns the dead letters
// (PCollection<pushflow.DeadLetter>):
//
//	Kafka clicks     → decode ─┐
//	Kafka deliveries → decode ─┴→ interest.Join (windowed, sent only) → interest.Sum → interest.Update (Redis)
//	                     └ bad input (both topics) → push.deadletter
func Build(s beam.Scope, cfg Config) beam.PCollection {
	s = s.Scope("feedback")
	read := func(topic string) beam.PCollection {
		return kafkaio.Read(s.Scope(topic), kafkaio.ReadConfig{
			Brokers:  cfg.Brokers(),
			Topics:   []string{topic},
			Group:    cfg.Group,
			Start:    cfg.Start,
			Until:    cfg.Until,
			ClientID: "pushflow-feedback",
			Security: cfg.KafkaSecurity(),
		})
	}
	clicks, deadClicks := decode.ClickEvents(s, read(cfg.ClicksTopic))
	deliveries, deadDeliveries := decode.DeliveryEvents(s, read(cfg.DeliveriesTopic))
	tallies := interest.Sum(s, interest.Join(s, clicks, deliveries, cfg.JoinWindow))
	interest.Update(s, tallies, cfg.RedisAddr, cfg.InterestDecay)
	dead := beam.Flatten(s, deadClicks, deadDeliveries)
	kafkaio.Write(s, kafkaio.WriteConfig{Brokers: cfg.Brokers(), Topic: cfg.DeadLetterTopic, ClientID: "pushflow-feedback", Security: cfg.KafkaSecurity()}, encode.DeadLetters(s, dead))
	return dead
}
