package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// TestRegistryTestdata runs the registry pipeline on Prism over
// testdata/devices.jsonl, from the Kafka-protocol broker into a real
// redis-server, and checks the registry and the dead letters.
func TestRegistryTestdata(t *testing.T) {
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := devstack.ProduceFile(ctx, st.Brokers, pushflow.TopicDevices, pushflow.TopicDevices, filepath.Join("..", "..", "testdata", "devices.jsonl")); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Common: options.Common{
		KafkaBrokers: st.Brokers[0], RequestsTopic: pushflow.TopicRequests, DevicesTopic: pushflow.TopicDevices,
		ClicksTopic: pushflow.TopicClicks, DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
		RedisAddr: st.RedisAddr, Until: "latest", Group: "registry-test", Start: "earliest", LogLevel: "warn",
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, s := beam.NewPipelineWithRoot()
	Build(s, cfg)
	if err := ptest.Run(p); err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}

	rc := redis.NewClient(&redis.Options{Addr: st.RedisAddr})
	defer rc.Close()
	reg := redisio.New(rc)
	const app = "com.example.news"
	byUser, err := reg.UserDevices(ctx, app, []string{"u1", "u2", "u4", "u6", "u8", "u10"})
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
	want := map[string][]string{
		"u1": {"d1/ios", "d2/ios"},
		"u2": {"d3/ios"},
		"u4": {"d5/android"},
		"u8": {"d9/ios"},
		// u6 unregistered its only device; u10's register had a bad token.
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("devices per user (-want +got):\n%s", diff)
	}

	// A newer register replaced u8's phone: the old value points nowhere.
	alias, err := reg.AliasDevices(ctx, app, "phone", []string{"13900000001", "13900000008", "13900000009"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"13900000001": {"d1"}, "13900000009": {"d9"}}, alias); diff != "" {
		t.Errorf("AliasDevices (-want +got):\n%s", diff)
	}

	settings, err := reg.Settings(ctx, app, []string{"u2", "u3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := settings["u2"].OptOut; !cmp.Equal(got, []string{"marketing"}) {
		t.Errorf("u2 opt-out = %v, want [marketing]", got)
	}
	if got := settings["u3"]; got.Timezone != "Asia/Shanghai" || got.QuietHours != "00:00-23:59" {
		t.Errorf("u3 settings = %+v, want Asia/Shanghai 00:00-23:59", got)
	}

	tags, err := reg.UserTags(ctx, app, []string{"u1", "u7"})
	if err != nil {
		t.Fatal(err)
	}
	if !tags["u1"]["vip"] || !tags["u7"]["churned"] || tags["u1"]["churned"] {
		t.Errorf("UserTags = %v, want u1 {sports vip}, u7 {sports churned}", tags)
	}

	// Three bad records, three dead letters with their reasons.
	var reasons []string
	for _, v := range mustRead(t, st.Brokers, pushflow.TopicDeadLetter) {
		var dl pushflow.DeadLetter
		if err := json.Unmarshal(v, &dl); err != nil {
			t.Fatal(err)
		}
		if dl.Topic != pushflow.TopicDevices || dl.Raw == "" {
			t.Errorf("dead letter %+v: want topic %s and the raw record", dl, pushflow.TopicDevices)
		}
		reasons = append(reasons, dl.Stage+": "+dl.Reason)
	}
	sort.Strings(reasons)
	wantPrefixes := []string{"decode: invalid JSON", "validate: op: ", "validate: token: "}
	if len(reasons) != len(wantPrefixes) {
		t.Fatalf("dead letters = %q, want %d", reasons, len(wantPrefixes))
	}
	for i, w := range wantPrefixes {
		if !strings.HasPrefix(reasons[i], w) {
			t.Errorf("dead letter %d = %q, want prefix %q", i, reasons[i], w)
		}
	}
}

func mustRead(t *testing.T, brokers []string, topic string) [][]byte {
	t.Helper()
	vs, err := devstack.ReadTopic(brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}
