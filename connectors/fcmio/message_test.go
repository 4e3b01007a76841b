package fcmio_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/fcmio"
)

const tok = "d0000000000000000000001:APA91bexample"

func ptr[T any](v T) *T { return &v }

func TestBuildMessage(t *testing.T) {
	high := func(a *messaging.AndroidConfig) *messaging.AndroidConfig { a.Priority = "high"; return a }
	tests := []struct {
		name string
		in   fcmio.Message
		want *messaging.Message
	}{
		{"notification, default priority high",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{Title: "Goal", Body: "1-0"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Title: "Goal", Body: "1-0"},
				Android: high(&messaging.AndroidConfig{})}},
		{"realtime is high",
			fcmio.Message{Token: tok, Priority: pushflow.PriorityRealtime, Notification: pushflow.Notification{Body: "b"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"}, Android: high(&messaging.AndroidConfig{})}},
		{"normal is high",
			fcmio.Message{Token: tok, Priority: pushflow.PriorityNormal, Notification: pushflow.Notification{Body: "b"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"}, Android: high(&messaging.AndroidConfig{})}},
		{"bulk is normal",
			fcmio.Message{Token: tok, Priority: pushflow.PriorityBulk, Notification: pushflow.Notification{Body: "b"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"}, Android: &messaging.AndroidConfig{Priority: "normal"}}},
		{"ttl",
			fcmio.Message{Token: tok, TTL: 90 * time.Minute, Notification: pushflow.Notification{Body: "b"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"},
				Android: &messaging.AndroidConfig{Priority: "high", TTL: ptr(90 * time.Minute)}}},
		{"ttl 28 days",
			fcmio.Message{Token: tok, TTL: fcmio.MaxTTL, Notification: pushflow.Notification{Body: "b"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"},
				Android: &messaging.AndroidConfig{Priority: "high", TTL: ptr(28 * 24 * time.Hour)}}},
		{"collapse id is collapse key and tag",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{Body: "b", CollapseID: "score"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"},
				Android: &messaging.AndroidConfig{Priority: "high", CollapseKey: "score", Notification: &messaging.AndroidNotification{Tag: "score"}}}},
		{"collapse key overrides collapse id",
			fcmio.Message{Token: tok, CollapseKey: "k", Notification: pushflow.Notification{Body: "b", CollapseID: "score"}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"},
				Android: &messaging.AndroidConfig{Priority: "high", CollapseKey: "k", Notification: &messaging.AndroidNotification{Tag: "score"}}}},
		{"sound and badge",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{Title: "T", Sound: "default", Badge: 3}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Title: "T"},
				Android: &messaging.AndroidConfig{Priority: "high", Notification: &messaging.AndroidNotification{Sound: "default", NotificationCount: ptr(3)}}}},
		{"badge 0 clears",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{Title: "T", HasBadge: true}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Title: "T"},
				Android: &messaging.AndroidConfig{Priority: "high", Notification: &messaging.AndroidNotification{NotificationCount: ptr(0)}}}},
		{"notification with data",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{Title: "T", Data: map[string]string{"url": "https://x/<y>&z"}}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Title: "T"}, Data: map[string]string{"url": "https://x/<y>&z"},
				Android: high(&messaging.AndroidConfig{})}},
		{"data only: nothing to show",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{Sound: "default", Badge: 1, Data: map[string]string{"sync": "1"}}},
			&messaging.Message{Token: tok, Data: map[string]string{"sync": "1"}, Android: high(&messaging.AndroidConfig{})}},
		{"data only: content available",
			fcmio.Message{Token: tok, Priority: pushflow.PriorityBulk, Notification: pushflow.Notification{ContentAvailable: true, Data: map[string]string{"sync": "1"}}},
			&messaging.Message{Token: tok, Data: map[string]string{"sync": "1"}, Android: &messaging.AndroidConfig{Priority: "normal"}}},
		{"data only: a silent push carries its title and body in the data",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{ContentAvailable: true, Title: "T", Body: "B", CollapseID: "c"}},
			&messaging.Message{Token: tok, Data: map[string]string{"title": "T", "body": "B"},
				Android: &messaging.AndroidConfig{Priority: "high", CollapseKey: "c"}}},
		{"data only: the data's own title wins",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{ContentAvailable: true, Title: "T", Body: "B", Data: map[string]string{"title": "mine"}}},
			&messaging.Message{Token: tok, Data: map[string]string{"title": "mine", "body": "B"}, Android: high(&messaging.AndroidConfig{})}},
		{"empty notification",
			fcmio.Message{Token: tok},
			&messaging.Message{Token: tok, Android: high(&messaging.AndroidConfig{})}},
		{"iOS-only fields left out",
			fcmio.Message{Token: tok, Notification: pushflow.Notification{Body: "b", ThreadID: "t", PushType: "alert", MutableContent: true}},
			&messaging.Message{Token: tok, Notification: &messaging.Notification{Body: "b"}, Android: high(&messaging.AndroidConfig{})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fcmio.BuildMessage(tt.in)
			if err != nil {
				t.Fatalf("BuildMessage(%+v) = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("BuildMessage(%+v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestBuildMessageDoesNotAliasData(t *testing.T) {
	data := map[string]string{"k": "v"}
	m, err := fcmio.BuildMessage(fcmio.Message{Token: tok, Notification: pushflow.Notification{ContentAvailable: true, Title: "T", Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	m.Data["x"] = "y"
	if len(data) != 1 {
		t.Errorf("BuildMessage changed the notification's data: %v", data)
	}
}

func TestBuildMessageRejects(t *testing.T) {
	tests := []struct {
		name       string
		in         fcmio.Message
		wantErr    error
		wantReason string
	}{
		{"no token", fcmio.Message{Notification: pushflow.Notification{Body: "b"}}, fcmio.ErrMissingToken, "INVALID_ARGUMENT"},
		{"unknown priority", fcmio.Message{Token: tok, Priority: "urgent"}, fcmio.ErrBadPriority, "INVALID_ARGUMENT"},
		{"negative ttl", fcmio.Message{Token: tok, TTL: -time.Second}, fcmio.ErrBadTTL, "INVALID_ARGUMENT"},
		{"ttl over 28 days", fcmio.Message{Token: tok, TTL: fcmio.MaxTTL + time.Second}, fcmio.ErrBadTTL, "INVALID_ARGUMENT"},
		{"data key from", fcmio.Message{Token: tok, Notification: pushflow.Notification{Data: map[string]string{"from": "x"}}}, fcmio.ErrReservedDataKey, "INVALID_ARGUMENT"},
		{"data key message_type", fcmio.Message{Token: tok, Notification: pushflow.Notification{Data: map[string]string{"message_type": "x"}}}, fcmio.ErrReservedDataKey, "INVALID_ARGUMENT"},
		{"data key google.", fcmio.Message{Token: tok, Notification: pushflow.Notification{Data: map[string]string{"google.c.a.e": "1"}}}, fcmio.ErrReservedDataKey, "INVALID_ARGUMENT"},
		{"data key gcm", fcmio.Message{Token: tok, Notification: pushflow.Notification{Data: map[string]string{"gcm.n.e": "1"}}}, fcmio.ErrReservedDataKey, "INVALID_ARGUMENT"},
		{"body over the limit", fcmio.Message{Token: tok, Notification: pushflow.Notification{Body: strings.Repeat("x", 4097)}}, fcmio.ErrPayloadTooLarge, "PayloadTooLarge"},
		{"title, body and data over the limit", fcmio.Message{Token: tok, Notification: pushflow.Notification{
			Title: strings.Repeat("t", 1000), Body: strings.Repeat("b", 1000), Data: map[string]string{"k": strings.Repeat("v", 2096)}}}, fcmio.ErrPayloadTooLarge, "PayloadTooLarge"},
		{"silent title moved into data over the limit", fcmio.Message{Token: tok, Notification: pushflow.Notification{
			ContentAvailable: true, Title: strings.Repeat("t", 4000), Data: map[string]string{"k": strings.Repeat("v", 100)}}}, fcmio.ErrPayloadTooLarge, "PayloadTooLarge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fcmio.BuildMessage(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("BuildMessage() = %+v, %v, want error %v", got, err, tt.wantErr)
			}
			if r := fcmio.Reason(err); r != tt.wantReason {
				t.Errorf("Reason(%v) = %q, want %q", err, r, tt.wantReason)
			}
			if !strings.HasPrefix(err.Error(), "fcmio: ") {
				t.Errorf("BuildMessage() error = %q, want the fcmio: prefix", err)
			}
		})
	}
	if r := fcmio.Reason(errors.New("other")); r != "" {
		t.Errorf("Reason(other error) = %q, want \"\"", r)
	}
}

func TestBuildMessagePayloadLimit(t *testing.T) {
	// Exactly at the limit: title 1 + body 1 + key 1 + value 4093.
	at := fcmio.Message{Token: tok, Notification: pushflow.Notification{Title: "T", Body: "B", Data: map[string]string{"k": strings.Repeat("v", 4093)}}}
	m, err := fcmio.BuildMessage(at)
	if err != nil {
		t.Fatalf("BuildMessage(payload of 4096 bytes) = %v, want it sent", err)
	}
	if got := fcmio.PayloadSize(m); got != fcmio.MaxPayloadSize {
		t.Errorf("PayloadSize() = %d, want %d", got, fcmio.MaxPayloadSize)
	}
	at.Notification.Data["k"] += "v"
	if _, err := fcmio.BuildMessage(at); !errors.Is(err, fcmio.ErrPayloadTooLarge) {
		t.Errorf("BuildMessage(payload of 4097 bytes) = %v, want %v", err, fcmio.ErrPayloadTooLarge)
	}
}

func TestPayloadSize(t *testing.T) {
	tests := []struct {
		name string
		in   *messaging.Message
		want int
	}{
		{"empty", &messaging.Message{Token: tok}, 0},
		{"data keys and values", &messaging.Message{Data: map[string]string{"ab": "cde", "f": ""}}, 6},
		{"notification", &messaging.Message{Notification: &messaging.Notification{Title: "Tt", Body: "Bbb", ImageURL: "https://x/i.png"}}, 5},
		{"android data replaces data", &messaging.Message{Data: map[string]string{"k": "v"},
			Android: &messaging.AndroidConfig{Data: map[string]string{"kk": "vv"}}}, 4},
		{"android title overrides", &messaging.Message{Notification: &messaging.Notification{Title: "T", Body: "B"},
			Android: &messaging.AndroidConfig{Notification: &messaging.AndroidNotification{Title: "Title"}}}, 6},
		{"bytes, not runes", &messaging.Message{Data: map[string]string{"é": "👍"}}, 6},
	}
	for _, tt := range tests {
		if got := fcmio.PayloadSize(tt.in); got != tt.want {
			t.Errorf("PayloadSize(%s) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestReservedDataKey(t *testing.T) {
	for k, want := range map[string]bool{
		"from": true, "message_type": true, "google": true, "google.sent_time": true, "gcm": true, "gcm.notification.e": true,
		"From": false, "fromage": false, "googleapp": true, "googly": false, "my_google": false, "title": false, "collapse_key": false, "": false,
	} {
		if got := fcmio.ReservedDataKey(k); got != want {
			t.Errorf("ReservedDataKey(%q) = %v, want %v", k, got, want)
		}
	}
}
