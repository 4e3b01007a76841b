package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/graphcheck"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/internal/testpki"
)

const (
	kafkaPassword = "kafka-Pa55-secret"
	redisPassword = "redis-Pa55-secret"
)

// TestRegistrySecured runs the registry pipeline, configured by its flags,
// from a SASL/SCRAM-SHA-512 + TLS broker into an AUTH (ACL user) + TLS
// redis-server, and into a three-node Redis Cluster, and checks that it
// gives the registry of the plain dev stack and that no password is in the
// pipeline graph.
func TestRegistrySecured(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := testpki.SelfSigned(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kafkaPassFile, redisPassFile := write("kafka-pass", kafkaPassword+"\n"), write("redis-pass", redisPassword+"\n")

	_, redisTLS := redistest.StartTLS(t, certFile, keyFile,
		"--requirepass", "other-"+redisPassword, "--user", "pushflow", "on", ">"+redisPassword, "~*", "&*", "+@all")
	cluster := redistest.StartCluster(t, 3)

	for _, tc := range []struct {
		name      string
		redisArgs []string
	}{
		{"auth+tls", []string{"--redis_addr=" + redisTLS, "--redis_username=pushflow", "--redis_password_file=" + redisPassFile,
			"--redis_tls", "--redis_ca_file=" + certFile}},
		{"cluster", []string{"--redis_cluster=" + strings.Join(cluster, ",")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(2, pushflow.TopicDevices, pushflow.TopicDeadLetter),
				kfake.EnableSASL(), kfake.Superuser(kafkaio.SASLSCRAMSHA512, "pushflow", kafkaPassword),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()

			fs := flag.NewFlagSet("registry", flag.ContinueOnError)
			common := options.Register(fs, "pushflow-registry")
			args := append([]string{"--kafka_brokers=" + kc.ListenAddrs()[0], "--kafka_tls", "--kafka_ca_file=" + certFile,
				"--kafka_sasl_mechanism=SCRAM-SHA-512", "--kafka_sasl_username=pushflow", "--kafka_sasl_password_file=" + kafkaPassFile,
				"--until=latest", "--kafka_start=earliest", "--log_level=warn"}, tc.redisArgs...)
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			cfg := Config{Common: *common}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			produceSecure(t, cfg.KafkaSecurity(), kc.ListenAddrs(), filepath.Join("..", "..", "testdata", "devices.jsonl"))

			// Capture the run's logs at debug level, with the whole config
			// logged as main logs its parts.
			var logs syncBuffer
			prev := slog.Default()
			slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			slog.Info("registry: starting", "cfg", fmt.Sprintf("%+v", cfg))
			p, s := beam.NewPipelineWithRoot()
			dead := Build(s, cfg)
			passert.Count(s, dead, "dead letters", 3)
			assertNoSecret(t, p, certFile)
			err = ptest.Run(p)
			slog.SetDefault(prev)
			if err != nil {
				t.Fatalf("pipeline failed: %v", err)
			}
			t.Logf("captured %d log lines", strings.Count(logs.String(), "\n"))
			if !strings.Contains(logs.String(), kafkaPassFile) {
				t.Fatalf("the captured logs do not show the config: %.500s", logs.String())
			}
			for _, secret := range []string{kafkaPassword, redisPassword} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("the logs of the run contain the password %q", secret)
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			reg, err := redisio.Dial(ctx, cfg.RedisAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			byUser, err := reg.UserDevices(ctx, "com.example.news", []string{"u1", "u2", "u4", "u6", "u8", "u10"})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for u, ds := range byUser {
				for _, d := range ds {
					got[u] = append(got[u], d.ID+"/"+d.Platform)
				}
				sort.Strings(got[u])
			}
			want := map[string][]string{"u1": {"d1/ios", "d2/ios"}, "u2": {"d3/ios"}, "u4": {"d5/android"}, "u8": {"d9/ios"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("devices per user (-want +got):\n%s", diff)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// assertNoSecret fails if a password is in the serialized pipeline; the
// password file's path (known to be in it) proves the check can see
// DoFn configuration.
func assertNoSecret(t *testing.T, p *beam.Pipeline, knownPath string) {
	t.Helper()
	b := graphcheck.Serialized(t, p)
	if !bytes.Contains(b, []byte(knownPath)) {
		t.Fatalf("serialized pipeline does not contain %q: the check cannot see DoFn configuration", knownPath)
	}
	for _, secret := range []string{kafkaPassword, redisPassword} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("serialized pipeline contains the password %q", secret)
		}
	}
}

// produceSecure writes a JSONL file's lines to the devices topic with the
// contract's keys, over sec.
func produceSecure(t *testing.T, sec kafkaio.Security, brokers []string, path string) {
	t.Helper()
	lines, err := devstack.Lines(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := kafkaio.NewSaramaConfig("test-producer")
	if err := sec.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for _, l := range lines {
		m := &sarama.ProducerMessage{Topic: pushflow.TopicDevices, Value: sarama.ByteEncoder(l)}
		if k := devstack.Key(pushflow.TopicDevices, l); k != nil {
			m.Key = sarama.ByteEncoder(k)
		}
		msgs = append(msgs, m)
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}
