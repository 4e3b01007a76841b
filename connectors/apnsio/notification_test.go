package apnsio_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sideshow/apns2"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
)

const (
	topic  = "com.example.app"
	devTok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	msgID  = "123e4567-e89b-12d3-a456-426614174000"
)

// sized is a notification whose alert payload is exactly n bytes.
func sized(t *testing.T, n int, pushType string) pushflow.Notification {
	t.Helper()
	one := pushflow.Notification{Body: "a", PushType: pushType}
	p, err := apnsio.BuildPayload(one)
	if err != nil {
		t.Fatal(err)
	}
	one.Body = strings.Repeat("a", n-len(p)+1)
	return one
}

func TestBuildNotification(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	alert := pushflow.Notification{Title: "T", Body: "B"}
	alertPayload := []byte(`{"aps":{"alert":{"title":"T","body":"B"}}}`)
	silent := pushflow.Notification{ContentAvailable: true, Data: map[string]string{"sync": "1"}}
	silentPayload := []byte(`{"aps":{"content-available":1},"sync":"1"}`)
	withType := func(n pushflow.Notification, pushType string) pushflow.Notification {
		n.PushType = pushType
		return n
	}

	tests := []struct {
		name string
		in   apnsio.Message
		want *apns2.Notification
	}{
		{"defaults: alert, priority 10",
			apnsio.Message{Token: devTok, Topic: topic, Notification: alert},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "alert", Priority: 10, Payload: alertPayload}},
		{"realtime is 10",
			apnsio.Message{Token: devTok, Topic: topic, Notification: alert, Priority: pushflow.PriorityRealtime},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "alert", Priority: 10, Payload: alertPayload}},
		{"normal is 10",
			apnsio.Message{Token: devTok, Topic: topic, Notification: alert, Priority: pushflow.PriorityNormal},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "alert", Priority: 10, Payload: alertPayload}},
		{"bulk is 5",
			apnsio.Message{Token: devTok, Topic: topic, Notification: alert, Priority: pushflow.PriorityBulk},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "alert", Priority: 5, Payload: alertPayload}},
		{"content-available only is background, 5 even when realtime",
			apnsio.Message{Token: devTok, Topic: topic, Notification: silent, Priority: pushflow.PriorityRealtime},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "background", Priority: 5, Payload: silentPayload}},
		{"content-available with a badge is alert",
			apnsio.Message{Token: devTok, Topic: topic, Notification: pushflow.Notification{ContentAvailable: true, HasBadge: true}},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "alert", Priority: 10, Payload: []byte(`{"aps":{"badge":0,"content-available":1}}`)}},
		{"content-available with a sound is alert",
			apnsio.Message{Token: devTok, Topic: topic, Notification: pushflow.Notification{ContentAvailable: true, Sound: "default"}},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "alert", Priority: 10, Payload: []byte(`{"aps":{"sound":"default","content-available":1}}`)}},
		{"explicit background is 5",
			apnsio.Message{Token: devTok, Topic: topic, Notification: withType(alert, "background"), Priority: pushflow.PriorityNormal},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "background", Priority: 5, Payload: alertPayload}},
		{"voip appends .voip",
			apnsio.Message{Token: devTok, Topic: topic, Notification: withType(alert, "voip")},
			&apns2.Notification{DeviceToken: devTok, Topic: topic + ".voip", PushType: "voip", Priority: 10, Payload: alertPayload}},
		{"voip topic already .voip",
			apnsio.Message{Token: devTok, Topic: topic + ".voip", Notification: withType(alert, "voip")},
			&apns2.Notification{DeviceToken: devTok, Topic: topic + ".voip", PushType: "voip", Priority: 10, Payload: alertPayload}},
		{"complication",
			apnsio.Message{Token: devTok, Topic: topic, Notification: withType(alert, "complication")},
			&apns2.Notification{DeviceToken: devTok, Topic: topic + ".complication", PushType: "complication", Priority: 10, Payload: alertPayload}},
		{"fileprovider",
			apnsio.Message{Token: devTok, Topic: topic, Notification: withType(alert, "fileprovider")},
			&apns2.Notification{DeviceToken: devTok, Topic: topic + ".pushkit.fileprovider", PushType: "fileprovider", Priority: 10, Payload: alertPayload}},
		{"liveactivity",
			apnsio.Message{Token: devTok, Topic: topic, Notification: withType(alert, "liveactivity"), Priority: pushflow.PriorityBulk},
			&apns2.Notification{DeviceToken: devTok, Topic: topic + ".push-type.liveactivity", PushType: "liveactivity", Priority: 5, Payload: alertPayload}},
		{"mdm keeps the topic",
			apnsio.Message{Token: devTok, Topic: topic, Notification: withType(alert, "mdm")},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "mdm", Priority: 10, Payload: alertPayload}},
		{"expiration, id and collapse id",
			apnsio.Message{Token: devTok, Topic: topic, Notification: pushflow.Notification{Body: "b", CollapseID: strings.Repeat("c", 64)}, Expiration: exp, ID: msgID},
			&apns2.Notification{DeviceToken: devTok, Topic: topic, PushType: "alert", Priority: 10, Expiration: exp, ApnsID: msgID,
				CollapseID: strings.Repeat("c", 64), Payload: []byte(`{"aps":{"alert":{"body":"b"}}}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := apnsio.BuildNotification(tt.in)
			if err != nil {
				t.Fatalf("BuildNotification(%+v) = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("BuildNotification(%+v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestBuildNotificationPayloadLimits(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		pushType string
		wantErr  error
	}{
		{"alert 4096", 4096, "", nil},
		{"alert 4097", 4097, "", apnsio.ErrPayloadTooLarge},
		{"background 4097", 4097, "background", apnsio.ErrPayloadTooLarge},
		{"voip 5120", 5120, "voip", nil},
		{"voip 5121", 5121, "voip", apnsio.ErrPayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := apnsio.Message{Token: devTok, Topic: topic, Notification: sized(t, tt.size, tt.pushType)}
			got, err := apnsio.BuildNotification(m)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("BuildNotification(%d-byte %s payload) = %v, want error %v", tt.size, tt.pushType, err, tt.wantErr)
			}
			if err == nil {
				if n := len(got.Payload.([]byte)); n != tt.size {
					t.Errorf("BuildNotification(%d-byte payload): payload is %d bytes", tt.size, n)
				}
			} else if r := apnsio.Reason(err); r != "PayloadTooLarge" {
				t.Errorf("Reason(%v) = %q, want PayloadTooLarge", err, r)
			}
		})
	}
}

func TestBuildNotificationErrors(t *testing.T) {
	tests := []struct {
		name       string
		in         apnsio.Message
		wantErr    error
		wantReason string
	}{
		{"no token", apnsio.Message{Topic: topic, Notification: pushflow.Notification{Body: "b"}},
			apnsio.ErrMissingDeviceToken, "MissingDeviceToken"},
		{"no topic", apnsio.Message{Token: devTok, Notification: pushflow.Notification{Body: "b"}},
			apnsio.ErrMissingTopic, "MissingTopic"},
		{"unknown push type", apnsio.Message{Token: devTok, Topic: topic, Notification: pushflow.Notification{Body: "b", PushType: "banana"}},
			apnsio.ErrInvalidPushType, "InvalidPushType"},
		{"unknown priority", apnsio.Message{Token: devTok, Topic: topic, Notification: pushflow.Notification{Body: "b"}, Priority: "urgent"},
			apnsio.ErrBadPriority, "BadPriority"},
		{"collapse id 65 bytes", apnsio.Message{Token: devTok, Topic: topic, Notification: pushflow.Notification{Body: "b", CollapseID: strings.Repeat("c", 65)}},
			apnsio.ErrBadCollapseID, "BadCollapseId"},
		{"data key aps", apnsio.Message{Token: devTok, Topic: topic, Notification: pushflow.Notification{Body: "b", Data: map[string]string{"aps": "x"}}},
			apnsio.ErrBadPayload, "BadPayload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := apnsio.BuildNotification(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("BuildNotification(%+v) = %+v, %v, want error %v", tt.in, got, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "apnsio: ") {
				t.Errorf("BuildNotification(%+v) error %q, want the apnsio: prefix", tt.in, err)
			}
			if r := apnsio.Reason(err); r != tt.wantReason {
				t.Errorf("Reason(%v) = %q, want %q", err, r, tt.wantReason)
			}
		})
	}
	if r := apnsio.Reason(errors.New("other")); r != "" {
		t.Errorf("Reason(other error) = %q, want \"\"", r)
	}
}
