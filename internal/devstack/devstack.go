// Package devstack runs pushflow's embedded development stack in-process: a
// Kafka-protocol broker (franz-go's kfake), a Redis-protocol store
// (miniredis), an APNs-protocol HTTP/2 TLS server (apnsiotest) with a
// freshly generated token key, and an FCM HTTP v1 server (fcmiotest). `make run` and pipeline tests use it so that a
// fresh machine needs nothing installed; production points the pipelines'
// flags at real Kafka, Redis and Apple instead.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Dir holds the generated APNs key and CA files. Default: a new temp dir,
	// removed by Close.
	Dir string
	// Partitions per seeded topic. Default 3.
	Partitions int32
	// KafkaPort, RedisPort: fixed ports, 0 = any free port.
	KafkaPort, RedisPort int
	// RedisAddr uses an existing Redis (tests use a real redis-server)
	// instead of starting the in-process store.
	RedisAddr string
	// APNsOptions are passed to the APNs test server.
	APNsOptions []apnsiotest.Option
}

// Stack is a running dev stack. Its fields are what the pipelines' flags need.
type Stack struct {
	Brokers   []string
	RedisAddr string

	APNs        *apnsiotest.Server
	APNsURL     string
	APNsCAFile  string
	APNsKeyFile string
	APNsKeyID   string
	APNsTeamID  string

	FCM          *fcmiotest.Server
	FCMURL       string
	FCMProjectID string

	Kafka *kfake.Cluster
	Redis *miniredis.Miniredis // nil when Options.RedisAddr was given

	dir      string
	ownDir   bool
	stopTTLs func()
}

// TeamID is the APNs team the dev stack's token key belongs to.
const TeamID = "PUSHFLOW01"

// FCMProjectID is the Firebase project the dev stack's FCM server serves.
const FCMProjectID = "pushflow-dev"

// Topics seeded on the embedded broker.
var Topics = []string{
	pushflow.TopicRequests, pushflow.TopicDevices, pushflow.TopicClicks,
	pushflow.TopicDeliveries, pushflow.TopicDeadLetter,
}

// Start starts the stack. Close it when done.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	st := &Stack{dir: opts.Dir}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if st.dir == "" {
		if st.dir, err = os.MkdirTemp("", "pushflow-dev-*"); err != nil {
			return nil, fmt.Errorf("devstack: %w", err)
		}
		st.ownDir = true
	} else if err := os.MkdirAll(st.dir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	parts := opts.Partitions
	if parts <= 0 {
		parts = 3
	}

	kopts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(parts, Topics...), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(int(parts))}
	if opts.KafkaPort != 0 {
		kopts = append(kopts, kfake.Ports(opts.KafkaPort))
	}
	if st.Kafka, err = kfake.NewCluster(kopts...); err != nil {
		return nil, fmt.Errorf("devstack: start kafka broker: %w", err)
	}
	st.Brokers = st.Kafka.ListenAddrs()

	if st.RedisAddr = opts.RedisAddr; st.RedisAddr == "" {
		st.Redis = miniredis.NewMiniRedis()
		if err := st.Redis.StartAddr(fmt.Sprintf("127.0.0.1:%d", opts.RedisPort)); err != nil {
			return nil, fmt.Errorf("devstack: start redis store: %w", err)
		}
		st.RedisAddr = st.Redis.Addr()
		st.stopTTLs = redistest.RealTimeTTLs(st.Redis)
	}

	keyPEM, keyID, err := apnsiotest.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("devstack: apns key: %w", err)
	}
	st.APNsKeyID, st.APNsTeamID = keyID, TeamID
	st.APNsKeyFile = filepath.Join(st.dir, "apns-dev-key.p8")
	if err := os.WriteFile(st.APNsKeyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	aopts := append([]apnsiotest.Option{apnsiotest.WithP8(keyPEM, keyID, TeamID)}, opts.APNsOptions...)
	if st.APNs, err = apnsiotest.NewServer(aopts...); err != nil {
		return nil, fmt.Errorf("devstack: start apns server: %w", err)
	}
	st.APNsURL = st.APNs.URL()
	st.APNsCAFile = filepath.Join(st.dir, "apns-dev-ca.pem")
	if err := st.APNs.WriteCAFile(st.APNsCAFile); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if st.FCM, err = fcmiotest.NewServer(); err != nil {
		return nil, fmt.Errorf("devstack: start fcm server: %w", err)
	}
	st.FCMURL, st.FCMProjectID = st.FCM.URL(), FCMProjectID
	slog.InfoContext(ctx, "dev stack started", "kafka", strings.Join(st.Brokers, ","), "redis", st.RedisAddr, "apns", st.APNsURL, "fcm", st.FCMURL)
	return st, nil
}

// Dir is where the stack keeps its generated files.
func (st *Stack) Dir() string { return st.dir }

// Close stops every server and removes a temp dir the stack created.
func (st *Stack) Close() error {
	var errs []error
	if st.APNs != nil {
		st.APNs.Close()
	}
	if st.FCM != nil {
		st.FCM.Close()
	}
	if st.Redis != nil {
		st.stopTTLs()
		st.Redis.Close()
	}
	if st.Kafka != nil {
		st.Kafka.Close()
	}
	if st.ownDir && st.dir != "" {
		errs = append(errs, os.RemoveAll(st.dir))
	}
	return errors.Join(errs...)
}
