package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/fcmio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
	"github.com/pushflow/pushflow/transforms/pace"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// TestDispatchTestdata runs dispatch on Prism over testdata/ against a real
// redis-server, the Kafka-protocol broker and the APNs test server, and
// checks every recipient's one delivery event, the dead letters, and what
// the APNs server received.
func TestDispatchTestdata(t *testing.T) { runTestdata(t, nil) }

// TestDispatchTestdataPacedWithRealtimeTopic runs the same data with the
// normal/bulk lane paced, its broadcast, tag and file expansions held back
// by a tiny backpressure limit, the requests topic's reader paused whenever
// the pacer holds two recipients, filter/enrich/send flushing every three
// recipients, and realtime requests on their own topic: every outcome must
// be the same.
func TestDispatchTestdataPacedWithRealtimeTopic(t *testing.T) {
	runTestdata(t, func(cfg *Config) {
		cfg.RealtimeTopic = "push.requests.realtime"
		cfg.Pace = pace.Config{GlobalQPS: 200, DefaultCampaignQPS: 100, Shards: 2, Slot: 20 * time.Millisecond}
		cfg.PaceMaxPending = 3
		cfg.RequestsMaxPending = 2
		cfg.FlushRecipients = 3 // flushes inside bundles as well as at their end
	})
}

func runTestdata(t *testing.T, mutate func(*Config)) {
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	td := filepath.Join("..", "..", "testdata")
	if _, err := devstack.ApplyDevicesFile(ctx, st.RedisAddr, filepath.Join(td, "devices.jsonl")); err != nil {
		t.Fatal(err)
	}
	if err := st.UnregisterTokensFile(filepath.Join(td, "apns-unregistered.txt")); err != nil {
		t.Fatal(err)
	}
	lines, err := devstack.Lines(filepath.Join(td, "requests.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	// The file target is relative to the repo root; tests run in this package's dir.
	abs, _ := filepath.Abs(filepath.Join(td, "audience.txt"))
	for i, l := range lines {
		lines[i] = bytes.ReplaceAll(l, []byte(`"testdata/audience.txt"`), []byte(fmt.Sprintf("%q", abs)))
	}
	table := t.TempDir()
	cfg := Config{
		Common: options.Common{
			KafkaBrokers: st.Brokers[0], RequestsTopic: pushflow.TopicRequests, DevicesTopic: pushflow.TopicDevices,
			ClicksTopic: pushflow.TopicClicks, DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
			RedisAddr: st.RedisAddr, Until: "latest", Group: "dispatch-test", Start: "earliest", LogLevel: "warn",
		},
		APNs:                apnsio.Config{Endpoint: st.APNsURL, CAFile: st.APNsCAFile, KeyFile: st.APNsKeyFile, KeyID: st.APNsKeyID, TeamID: st.APNsTeamID},
		FCM:                 fcmio.Config{Endpoint: st.FCMURL, ProjectID: st.FCMProjectID},
		DeliveryTable:       "file://" + table,
		BatchSize:           2, // several batches per request
		RealtimeConcurrency: 8,
		AudienceRoots:       []string{filepath.Dir(abs)},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	main, rt := lines, [][]byte(nil)
	if cfg.RealtimeTopic != "" {
		main = nil
		for _, l := range lines {
			if bytes.Contains(l, []byte(`"priority":"realtime"`)) {
				rt = append(rt, l)
			} else {
				main = append(main, l)
			}
		}
		if len(rt) == 0 {
			t.Fatal("testdata has no realtime request")
		}
		if err := devstack.CreateTopic(st.Brokers, cfg.RealtimeTopic, 1); err != nil {
			t.Fatal(err)
		}
		if err := devstack.Produce(ctx, st.Brokers, cfg.RealtimeTopic, pushflow.TopicRequests, rt); err != nil {
			t.Fatal(err)
		}
	}
	if err := devstack.Produce(ctx, st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, main); err != nil {
		t.Fatal(err)
	}
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

	// Dead letters carry the raw bytes and the precise reason.
	dead := readTopic(t, st.Brokers, pushflow.TopicDeadLetter)
	var reasons []string
	for _, d := range dead {
		var dl pushflow.DeadLetter
		if err := json.Unmarshal(d, &dl); err != nil {
			t.Fatalf("dead letter %s: %v", d, err)
		}
		if dl.Raw == "" || dl.Topic != pushflow.TopicRequests {
			t.Errorf("dead letter %+v: want raw bytes and topic %s", dl, pushflow.TopicRequests)
		}
		reasons = append(reasons, dl.Stage+": "+dl.Reason)
	}
	sort.Strings(reasons)
	wantReasons := []string{
		"decode: ",
		`validate: app: unknown app "com.unknown.app" (no device was ever registered for it)`,
		"validate: notification: APNs payload is",
		"validate: target.users[0]: want string, got number",
		"validate: target: exactly one of",
	}
	if len(reasons) != len(wantReasons) {
		t.Fatalf("dead letters:\n%s\nwant %d", strings.Join(reasons, "\n"), len(wantReasons))
	}
	for i := range wantReasons {
		if !strings.HasPrefix(reasons[i], wantReasons[i]) {
			t.Errorf("dead letter %d = %q, want prefix %q", i, reasons[i], wantReasons[i])
		}
	}
	// And the deliveries topic holds the same events as the table.
	if n := len(readTopic(t, st.Brokers, pushflow.TopicDeliveries)); n != len(events) {
		t.Errorf("%s has %d events, the delivery table %d", pushflow.TopicDeliveries, n, len(events))
	}
}

func readTopic(t *testing.T, brokers []string, topic string) [][]byte {
	t.Helper()
	vs, err := devstack.ReadTopic(brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// testdataRoot is the repository's testdata directory, absolute: the
// audience root of tests that run testdata/requests.jsonl.
func testdataRoot(t testing.TB) string {
	abs, err := filepath.Abs(filepath.Join("..", "..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
