package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/fcmio"
	"github.com/pushflow/pushflow/internal/graphcheck"
	"github.com/pushflow/pushflow/internal/options"
)

// TestGraphHoldsNoSecret builds dispatch with every secret configured —
// Kafka SASL, Redis AUTH, an encrypted APNs certificate, FCM credentials —
// and checks that the serialized pipeline (DoFn configurations included)
// holds the secrets' file paths and never their contents: the workers read
// them in Setup.
func TestGraphHoldsNoSecret(t *testing.T) {
	dir := t.TempDir()
	secrets := map[string]string{
		"kafka-pass": "kafka-s3cret-value",
		"redis-pass": "redis-s3cret-value",
		"cert-pass":  "cert-s3cret-value",
		"fcm.json":   `{"type":"service_account","project_id":"p","private_key":"fcm-s3cret-value"}`,
		"cert.pem":   "-----BEGIN CERTIFICATE-----\ncert-material-s3cret\n-----END CERTIFICATE-----\n",
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	for name, v := range secrets {
		if err := os.WriteFile(path(name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Common: options.Common{
			KafkaBrokers: "127.0.0.1:9092", RequestsTopic: pushflow.TopicRequests, DevicesTopic: pushflow.TopicDevices, ClicksTopic: pushflow.TopicClicks,
			DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
			RedisAddr: "redis://pushflow@127.0.0.1:6379?password_file=" + path("redis-pass"), Group: "secrets", Start: "earliest", LogLevel: "warn",
			KafkaTLS: true, KafkaSASLMechanism: "SCRAM-SHA-512", KafkaSASLUsername: "pushflow", KafkaSASLPasswordFile: path("kafka-pass"),
		},
		APNs:                apnsio.Config{CertFile: path("cert.pem"), CertPasswordFile: path("cert-pass")},
		FCM:                 fcmio.Config{CredentialsFile: path("fcm.json"), ProjectID: "p"},
		BatchSize:           100,
		RealtimeConcurrency: 8,
	}
	p, s := beam.NewPipelineWithRoot()
	Build(s, cfg)
	b := graphcheck.Serialized(t, p)
	for _, known := range []string{path("cert-pass"), path("kafka-pass"), path("fcm.json")} {
		if !bytes.Contains(b, []byte(known)) {
			t.Fatalf("serialized pipeline does not contain %q: the check cannot see DoFn configuration", known)
		}
	}
	for name, v := range secrets {
		for _, secret := range []string{v, "s3cret"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("serialized pipeline contains the contents of %s (%q)", name, secret)
			}
		}
	}
}
