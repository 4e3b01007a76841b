package encode

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
)

func TestDeliveryMessage(t *testing.T) {
	rt := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	for _, ev := range []pushflow.DeliveryEvent{
		{
			V: 1, RequestID: "r-1", Campaign: "demo", App: "com.example.news", Category: "news", Priority: "normal",
			UserID: "u1", DeviceID: "d1", Platform: "ios", Stage: "send", Outcome: "sent", ProviderID: "8F2B3C4D-0000-4000-8000-000000000001",
			Attempts: 3, RequestTime: rt, EventTime: rt.Add(1500*time.Millisecond + 123456*time.Nanosecond), LatencyMs: 1500,
		},
		{
			V: 1, RequestID: "r-8", App: "com.unknown.app", Stage: "expand", Outcome: "dropped", Reason: "unknown_app",
			RequestTime: rt, EventTime: rt,
		},
		{
			// Identifiers with characters JSON must escape, and a reason in
			// another script, survive the round trip.
			V: 1, RequestID: `r "quoted" \ / <html>&`, App: "com.example.news", UserID: "用户-1", Stage: "enrich", Outcome: "dropped",
			Reason: "file_error: open /tmp/ä.txt: no such file or directory", RequestTime: rt, EventTime: rt,
		},
	} {
		msg, err := deliveryMessage(ev)
		if err != nil {
			t.Fatalf("deliveryMessage(%s) = %v", ev.RequestID, err)
		}
		if string(msg.Key) != ev.RequestID {
			t.Errorf("deliveryMessage(%s).Key = %q, want the request id", ev.RequestID, msg.Key)
		}
		if msg.Topic != "" || len(msg.Headers) != 0 {
			t.Errorf("deliveryMessage(%s) topic %q headers %v, want none (the writer's topic)", ev.RequestID, msg.Topic, msg.Headers)
		}
		got, err := pushflow.DecodeDeliveryEvent(msg.Value)
		if err != nil {
			t.Fatalf("DecodeDeliveryEvent(deliveryMessage(%s).Value) = %v\nvalue: %s", ev.RequestID, err, msg.Value)
		}
		if diff := cmp.Diff(ev, got); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", ev.RequestID, diff)
		}
	}
}

// TestDeliveryMessageFields checks the JSON names of the contract: analysts
// and upstream systems rely on them.
func TestDeliveryMessageFields(t *testing.T) {
	msg, err := deliveryMessage(pushflow.DeliveryEvent{V: 1, RequestID: "r-1", App: "a", Stage: "send", Outcome: "failed", Reason: "no_provider"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg.Value, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	want := []string{"app", "attempts", "campaign", "category", "device_id", "event_id", "event_time", "latency_ms", "outcome", "platform",
		"priority", "provider_id", "reason", "request_id", "request_time", "stage", "user_id", "v"}
	slices.Sort(keys)
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("delivery event JSON keys (-want +got):\n%s", diff)
	}
}

func TestDeadLetterMessage(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 0, 0, 500, time.UTC)
	for _, tt := range []struct {
		dl      pushflow.DeadLetter
		wantKey string
	}{
		{pushflow.DeadLetter{V: 1, Stage: "decode", Reason: "invalid JSON at offset 1", Raw: "this is not json", Topic: "push.requests", Partition: 2, Offset: 41, At: at}, "push.requests/2/41"},
		{pushflow.DeadLetter{V: 1, Stage: "decode", Reason: "invalid JSON at offset 0", Raw: "//4=", RawEncoding: "base64", Topic: "push.devices", Partition: 0, Offset: 0, At: at}, "push.devices/0/0"},
		{pushflow.DeadLetter{V: 1, Stage: "validate", Reason: `target.users[0]: want string, got number`, Raw: `{"v":1,"target":{"users":[42]}}`, Topic: "push.requests", Partition: 11, Offset: 1 << 40, At: at}, "push.requests/11/1099511627776"},
	} {
		msg, err := deadLetterMessage(tt.dl)
		if err != nil {
			t.Fatalf("deadLetterMessage(%s) = %v", tt.wantKey, err)
		}
		if string(msg.Key) != tt.wantKey {
			t.Errorf("deadLetterMessage().Key = %q, want %q", msg.Key, tt.wantKey)
		}
		var got pushflow.DeadLetter
		if err := json.Unmarshal(msg.Value, &got); err != nil {
			t.Fatalf("unmarshal %s: %v", msg.Value, err)
		}
		if diff := cmp.Diff(tt.dl, got); diff != "" {
			t.Errorf("dead letter round trip (-want +got):\n%s", diff)
		}
		var m map[string]any
		if err := json.Unmarshal(msg.Value, &m); err != nil {
			t.Fatal(err)
		}
		_, hasEnc := m["raw_encoding"]
		if hasEnc != (tt.dl.RawEncoding != "") {
			t.Errorf("dead letter JSON %s: raw_encoding present = %v, want %v (omitted when empty)", msg.Value, hasEnc, tt.dl.RawEncoding != "")
		}
	}
}
