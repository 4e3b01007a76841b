// Package options holds the pipeline flags every pushflow pipeline shares
// (DESIGN.md "Pipeline flags shared by every pipeline"). Each pipeline's main
// registers them on its flag set next to its own flags; the names are a
// public contract and never change.
package options

import (
	"flag"
	"fmt"
	"strings"

	beamlog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"

	"github.com/pushflow/pushflow"
)

// Common are the shared flags.
type Common struct {
	KafkaBrokers    string
	RequestsTopic   string
	DevicesTopic    string
	ClicksTopic     string
	DeliveriesTopic string
	DeadLetterTopic string
	RedisAddr       string
	Until           string
	Group           string
	Start           string
	LogLevel        string
}

// Register defines the shared flags on fs. group is the pipeline's default
// Kafka consumer group.
func Register(fs *flag.FlagSet, group string) *Common {
	c := &Common{}
	fs.StringVar(&c.KafkaBrokers, "kafka_brokers", "", "comma-separated Kafka bootstrap brokers (host:port). Empty: start the embedded dev stack (Kafka-protocol broker, Redis-protocol store, APNs test server) seeded with testdata/, and run bounded")
	fs.StringVar(&c.RequestsTopic, "requests_topic", pushflow.TopicRequests, "topic of PushRequest records")
	fs.StringVar(&c.DevicesTopic, "devices_topic", pushflow.TopicDevices, "topic of DeviceEvent records")
	fs.StringVar(&c.ClicksTopic, "clicks_topic", pushflow.TopicClicks, "topic of ClickEvent records")
	fs.StringVar(&c.DeliveriesTopic, "deliveries_topic", pushflow.TopicDeliveries, "topic DeliveryEvent records are written to")
	fs.StringVar(&c.DeadLetterTopic, "deadletter_topic", pushflow.TopicDeadLetter, "topic DeadLetter records are written to")
	fs.StringVar(&c.RedisAddr, "redis_addr", "127.0.0.1:6379", "Redis address (host:port) of the device registry and filter state")
	fs.StringVar(&c.Until, "until", "", `"" (default): unbounded streaming; "latest": read each partition up to its end offset at start, drain, exit 0`)
	fs.StringVar(&c.Group, "kafka_group", group, "Kafka consumer group whose committed offsets the pipeline resumes from and commits to")
	fs.StringVar(&c.Start, "kafka_start", "committed", `where to start reading when the group has no committed offset, or to override it: "committed" (falls back to earliest), "earliest", "latest", or an RFC 3339 time`)
	fs.StringVar(&c.LogLevel, "log_level", "info", "log level of the pipeline and the in-process runner: debug, info, warn or error (structured logs via log/slog)")
	return c
}

// SetupLogging installs the slog handler at --log_level. Call it after
// flag.Parse and beam.Init.
// An invalid level is left to Validate to report.
func (c *Common) SetupLogging() {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
		beamlog.SetupLogging(c.LogLevel, "text")
	}
}

// Brokers splits --kafka_brokers.
func (c *Common) Brokers() []string {
	var out []string
	for _, b := range strings.Split(c.KafkaBrokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// DevMode reports whether the pipeline should start the embedded dev stack.
func (c *Common) DevMode() bool { return len(c.Brokers()) == 0 }

// Validate checks the shared flags.
func (c *Common) Validate() error {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log_level: want debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.Until {
	case "", "latest":
	default:
		return fmt.Errorf("--until: want \"\" or \"latest\", got %q", c.Until)
	}
	for name, v := range map[string]string{
		"--requests_topic": c.RequestsTopic, "--devices_topic": c.DevicesTopic, "--clicks_topic": c.ClicksTopic,
		"--deliveries_topic": c.DeliveriesTopic, "--deadletter_topic": c.DeadLetterTopic, "--redis_addr": c.RedisAddr,
	} {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("%s: must not be empty", name)
		}
	}
	return nil
}
