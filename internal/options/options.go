// Package options holds the pipeline flags every pushflow pipeline shares
// (DESIGN.md "Pipeline flags shared by every pipeline"). Each pipeline's main
// registers them on its flag set next to its own flags; the names are a
// public contract and never change.
package options

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	beamlog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
)

// Common are the shared flags.
type Common struct {
	KafkaBrokers    string
	RequestsTopic   string
	DevicesTopic    string
	ClicksTopic     string
	DeliveriesTopic string
	DeadLetterTopic string
	// RedisAddr is what pipelines hand to redisio.Open: --redis_addr with
	// the --redis_* connection flags folded in (a redisio.Addr URL; a plain
	// host:port without them). It names no secret.
	RedisAddr string
	Until     string
	Group     string
	Start     string
	LogLevel  string

	// Kafka connection security (see KafkaSecurity).
	KafkaTLS              bool
	KafkaCAFile           string
	KafkaCertFile         string
	KafkaKeyFile          string
	KafkaSASLMechanism    string
	KafkaSASLUsername     string
	KafkaSASLPasswordFile string
	KafkaSASLPasswordEnv  string

	// Redis connection flags, already folded into RedisAddr.
	RedisUsername     string
	RedisPasswordFile string
	RedisPasswordEnv  string
	RedisTLS          bool
	RedisCAFile       string
	RedisCluster      string

	redisAddrFlag string // --redis_addr as given
	redisErr      error  // --redis_addr does not parse
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
	c.redisAddrFlag, c.RedisAddr = "127.0.0.1:6379", "127.0.0.1:6379"
	fs.Func("redis_addr", "Redis address of the device registry and filter state (default 127.0.0.1:6379): host:port, or a URL redis://[user@]host:port[/db][?password_file=PATH|password_env=NAME][&ca_file=PATH], rediss://… (TLS), redis+cluster://h1:p1,h2:p2 or rediss+cluster://… (never a password in it); the --redis_* flags below override its parts", c.setRedis(&c.redisAddrFlag))
	fs.Func("redis_username", `Redis ACL user name (default: the "default" user)`, c.setRedis(&c.RedisUsername))
	fs.Func("redis_password_file", "file holding the Redis password (AUTH), read on the workers; one trailing newline is ignored", c.setRedis(&c.RedisPasswordFile))
	fs.Func("redis_password_env", "name of an environment variable holding the Redis password on the workers (instead of --redis_password_file)", c.setRedis(&c.RedisPasswordEnv))
	fs.BoolFunc("redis_tls", "connect to Redis with TLS (default false; implied by --redis_ca_file)", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		c.RedisTLS = b
		c.composeRedis()
		return nil
	})
	fs.Func("redis_ca_file", "PEM file of extra root certificates for Redis TLS (a private CA); implies --redis_tls", c.setRedis(&c.RedisCAFile))
	fs.Func("redis_cluster", "comma-separated seed nodes (host:port) of a Redis Cluster; replaces --redis_addr's host", c.setRedis(&c.RedisCluster))

	fs.BoolVar(&c.KafkaTLS, "kafka_tls", false, "connect to Kafka with TLS, verifying the brokers against the system roots plus --kafka_ca_file (implied by --kafka_ca_file, --kafka_cert_file)")
	fs.StringVar(&c.KafkaCAFile, "kafka_ca_file", "", "PEM file of extra root certificates for Kafka TLS (a private CA)")
	fs.StringVar(&c.KafkaCertFile, "kafka_cert_file", "", "PEM client certificate for Kafka mutual TLS (with --kafka_key_file)")
	fs.StringVar(&c.KafkaKeyFile, "kafka_key_file", "", "PEM private key of --kafka_cert_file")
	fs.StringVar(&c.KafkaSASLMechanism, "kafka_sasl_mechanism", "", `Kafka SASL mechanism: "" (none, the default), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`)
	fs.StringVar(&c.KafkaSASLUsername, "kafka_sasl_username", "", "Kafka SASL user name")
	fs.StringVar(&c.KafkaSASLPasswordFile, "kafka_sasl_password_file", "", "file holding the Kafka SASL password, read on the workers; one trailing newline is ignored")
	fs.StringVar(&c.KafkaSASLPasswordEnv, "kafka_sasl_password_env", "", "name of an environment variable holding the Kafka SASL password on the workers (instead of --kafka_sasl_password_file)")
	fs.StringVar(&c.Until, "until", "", `"" (default): unbounded streaming; "latest": read each partition up to its end offset at start, drain, exit 0`)
	fs.StringVar(&c.Group, "kafka_group", group, "Kafka consumer group whose committed offsets the pipeline resumes from and commits to")
	fs.StringVar(&c.Start, "kafka_start", "committed", `where to start reading when the group has no committed offset, or to override it: "committed" (falls back to earliest), "earliest", "latest", or an RFC 3339 time`)
	fs.StringVar(&c.LogLevel, "log_level", "info", "log level of the pipeline and the in-process runner: debug, info, warn or error (structured logs via log/slog)")
	return c
}

// setRedis sets a string flag of the Redis connection and recomposes
// RedisAddr.
func (c *Common) setRedis(p *string) func(string) error {
	return func(v string) error {
		*p = v
		c.composeRedis()
		return nil
	}
}

// composeRedis folds the --redis_* flags into RedisAddr.
func (c *Common) composeRedis() {
	a, err := redisio.ParseAddr(c.redisAddrFlag)
	c.redisErr = err
	if err != nil {
		c.RedisAddr = c.redisAddrFlag
		return
	}
	if c.RedisCluster != "" {
		a.Cluster, a.Addrs, a.DB = true, split(c.RedisCluster), 0
	}
	if c.RedisUsername != "" {
		a.Username = c.RedisUsername
	}
	if c.RedisPasswordFile != "" {
		a.PasswordFile, a.PasswordEnv = c.RedisPasswordFile, ""
	}
	if c.RedisPasswordEnv != "" {
		a.PasswordEnv = c.RedisPasswordEnv
		if c.RedisPasswordFile == "" {
			a.PasswordFile = ""
		}
	}
	if c.RedisTLS || c.RedisCAFile != "" {
		a.TLS = true
	}
	if c.RedisCAFile != "" {
		a.CAFile = c.RedisCAFile
	}
	c.RedisAddr = a.String()
}

func workersHere() bool {
	switch strings.ToLower(*runners.Runner) {
	case "", "prism", "direct":
		return true
	}
	return strings.EqualFold(*jobopts.EnvironmentType, "LOOPBACK")
}

// KafkaSecurity is the --kafka_tls, --kafka_*_file and --kafka_sasl_* flags
// for kafkaio.ReadConfig and WriteConfig.
func (c *Common) KafkaSecurity() kafkaio.Security {
	return kafkaio.Security{
		TLS: c.KafkaTLS, CAFile: c.KafkaCAFile, CertFile: c.KafkaCertFile, KeyFile: c.KafkaKeyFile,
		SASLMechanism: c.KafkaSASLMechanism, SASLUsername: c.KafkaSASLUsername,
		SASLPasswordFile: c.KafkaSASLPasswordFile, SASLPasswordEnv: c.KafkaSASLPasswordEnv,
	}
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
func (c *Common) Brokers() []string { return split(c.KafkaBrokers) }

func split(list string) []string {
	var out []string
	for _, b := range strings.Split(list, ",") {
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
	if err := c.validateKafka(); err != nil {
		return err
	}
	return c.validateRedis()
}

func (c *Common) validateKafka() error {
	switch c.KafkaSASLMechanism {
	case "":
		for name, v := range map[string]string{"--kafka_sasl_username": c.KafkaSASLUsername,
			"--kafka_sasl_password_file": c.KafkaSASLPasswordFile, "--kafka_sasl_password_env": c.KafkaSASLPasswordEnv} {
			if v != "" {
				return fmt.Errorf("%s: needs --kafka_sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", name)
			}
		}
	case kafkaio.SASLPlain, kafkaio.SASLSCRAMSHA256, kafkaio.SASLSCRAMSHA512:
		if c.KafkaSASLUsername == "" {
			return fmt.Errorf("--kafka_sasl_mechanism=%s: needs --kafka_sasl_username", c.KafkaSASLMechanism)
		}
		if (c.KafkaSASLPasswordFile == "") == (c.KafkaSASLPasswordEnv == "") {
			return fmt.Errorf("--kafka_sasl_mechanism=%s: needs exactly one of --kafka_sasl_password_file and --kafka_sasl_password_env", c.KafkaSASLMechanism)
		}
	default:
		return fmt.Errorf("--kafka_sasl_mechanism: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", c.KafkaSASLMechanism)
	}
	if (c.KafkaCertFile == "") != (c.KafkaKeyFile == "") {
		return errors.New("--kafka_cert_file and --kafka_key_file: mutual TLS needs both")
	}
	return c.readable(map[string]string{"--kafka_ca_file": c.KafkaCAFile, "--kafka_cert_file": c.KafkaCertFile,
		"--kafka_key_file": c.KafkaKeyFile, "--kafka_sasl_password_file": c.KafkaSASLPasswordFile})
}

func (c *Common) validateRedis() error {
	if c.redisErr != nil {
		return fmt.Errorf("--redis_addr: %w", c.redisErr)
	}
	if c.RedisPasswordFile != "" && c.RedisPasswordEnv != "" {
		return errors.New("--redis_password_file and --redis_password_env: give one")
	}
	for _, n := range split(c.RedisCluster) {
		if _, err := redisio.ParseAddr(n); err != nil || strings.Contains(n, "://") {
			return fmt.Errorf("--redis_cluster: %q is not host:port", n)
		}
	}
	a, err := redisio.ParseAddr(c.RedisAddr)
	if err != nil {
		return fmt.Errorf("--redis_addr with the --redis_* flags: %w", err)
	}
	return c.readable(map[string]string{"--redis_password_file (or password_file=)": a.PasswordFile, "--redis_ca_file (or ca_file=)": a.CAFile})
}

// readable checks that the files named by the flags can be read, when the
// workers run in this process (Prism, the direct runner, a LOOPBACK
// environment): elsewhere the files are the workers' (a Kubernetes Secret
// mounted into the SDK harness, not into the submitter), and the workers
// report a missing one.
func (c *Common) readable(files map[string]string) error {
	if !workersHere() {
		return nil
	}
	for name, path := range files {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		f.Close()
	}
	return nil
}
