package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/fcmio"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/internal/testpki"
)

// TestDispatchSecured runs dispatch over testdata/ from a SASL/SCRAM-SHA-512
// + TLS broker with the registry in an AUTH (ACL user) + TLS redis-server,
// and in a three-node Redis Cluster, and expects the delivery events of the
// plain dev stack (devstack.CheckTestdata).
func TestDispatchSecured(t *testing.T) {
	const kafkaPass, redisPass = "kafka-Pa55-secret", "redis-Pa55-secret"
	certFile, keyFile, cert := testpki.SelfSigned(t)
	dir := t.TempDir()
	kafkaPassFile, redisPassFile := filepath.Join(dir, "kafka-pass"), filepath.Join(dir, "redis-pass")
	for p, v := range map[string]string{kafkaPassFile: kafkaPass, redisPassFile: redisPass} {
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, redisTLS := redistest.StartTLS(t, certFile, keyFile,
		"--requirepass", "other-"+redisPass, "--user", "pushflow", "on", ">"+redisPass, "~*", "&*", "+@all")

	for _, tc := range []struct {
		name  string
		redis func() string
	}{
		{"auth+tls", func() string {
			return "rediss://pushflow@" + redisTLS + "?ca_file=" + certFile + "&password_file=" + redisPassFile
		}},
		{"cluster", func() string { return "redis+cluster://" + strings.Join(redistest.StartCluster(t, 3), ",") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			redisAddr := tc.redis()
			kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0),
				kfake.SeedTopics(3, pushflow.TopicRequests, pushflow.TopicDeliveries, pushflow.TopicDeadLetter),
				kfake.EnableSASL(), kfake.Superuser(kafkaio.SASLSCRAMSHA512, "pushflow", kafkaPass),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()
			// The dev stack for its APNs and FCM servers; its Kafka is unused.
			st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redisAddr})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			td := filepath.Join("..", "..", "testdata")
			if _, err := devstack.ApplyDevicesFile(ctx, redisAddr, filepath.Join(td, "devices.jsonl")); err != nil {
				t.Fatal(err)
			}
			if err := st.UnregisterTokensFile(filepath.Join(td, "apns-unregistered.txt")); err != nil {
				t.Fatal(err)
			}
			lines, err := devstack.Lines(filepath.Join(td, "requests.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(filepath.Join(td, "audience.txt"))
			for i, l := range lines {
				lines[i] = bytes.ReplaceAll(l, []byte(`"testdata/audience.txt"`), []byte(fmt.Sprintf("%q", abs)))
			}

			table := t.TempDir()
			cfg := Config{
				Common: options.Common{
					KafkaBrokers: kc.ListenAddrs()[0], RequestsTopic: pushflow.TopicRequests, DevicesTopic: pushflow.TopicDevices,
					ClicksTopic: pushflow.TopicClicks, DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
					RedisAddr: redisAddr, Until: "latest", Group: "dispatch-test", Start: "earliest", LogLevel: "warn",
					KafkaTLS: true, KafkaCAFile: certFile, KafkaSASLMechanism: kafkaio.SASLSCRAMSHA512,
					KafkaSASLUsername: "pushflow", KafkaSASLPasswordFile: kafkaPassFile,
				},
				APNs:                apnsio.Config{Endpoint: st.APNsURL, CAFile: st.APNsCAFile, KeyFile: st.APNsKeyFile, KeyID: st.APNsKeyID, TeamID: st.APNsTeamID},
				FCM:                 fcmio.Config{Endpoint: st.FCMURL, ProjectID: st.FCMProjectID},
				DeliveryTable:       "file://" + table,
				AudienceRoots:       []string{testdataRoot(t)},
				BatchSize:           2,
				RealtimeConcurrency: 8,
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			produceSecure(t, cfg.KafkaSecurity(), kc.ListenAddrs(), pushflow.TopicRequests, lines)

			p, s := beam.NewPipelineWithRoot()
			Build(s, cfg)
			if err := ptest.Run(p); err != nil {
				t.Fatalf("pipeline failed: %v", err)
			}
			events, err := tableio.ReadDir(table)
			if err != nil {
				t.Fatal(err)
			}
			devstack.CheckTestdata(t, st, events)
		})
	}
}

// produceSecure writes values to topic with the contract's keys, over sec.
func produceSecure(t *testing.T, sec kafkaio.Security, brokers []string, topic string, values [][]byte) {
	t.Helper()
	cfg := kafkaio.NewSaramaConfig("test-producer")
	cfg.Producer.MaxMessageBytes = 2 * pushflow.MaxRecordBytes
	if err := sec.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for _, v := range values {
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(v)}
		if k := devstack.Key(pushflow.TopicRequests, v); k != nil {
			m.Key = sarama.ByteEncoder(k)
		}
		msgs = append(msgs, m)
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}
