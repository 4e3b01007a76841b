package fcmio

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushflow/pushflow"
)

// Limits of FCM.
const (
	// MaxPayloadSize bounds a message's payload (see PayloadSize), in bytes.
	MaxPayloadSize = 4096
	// MaxTTL is the longest time to live FCM accepts: 28 days.
	MaxTTL = pushflow.MaxTTLSeconds * time.Second
)

// Android message priorities (android.priority).
const (
	AndroidPriorityHigh   = "high"
	AndroidPriorityNormal = "normal"
)

// Errors of BuildMessage, for errors.Is. A Result records them by the
// reason they stand for (see Reason).
var (
	ErrMissingToken    = errors.New("missing registration token")
	ErrBadPriority     = errors.New("bad priority")
	ErrBadTTL          = errors.New("bad ttl")
	ErrReservedDataKey = errors.New("reserved data key")
	ErrPayloadTooLarge = errors.New("payload too large")
)

// reasons are the reasons the errors above stand for.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrMissingToken, ReasonInvalidArgument},
	{ErrBadPriority, ReasonInvalidArgument},
	{ErrBadTTL, ReasonInvalidArgument},
	{ErrReservedDataKey, ReasonInvalidArgument},
	{ErrPayloadTooLarge, pushflow.ReasonPayloadSize},
}

// Reason is the reason an error of BuildMessage stands for: what FCM would
// answer (INVALID_ARGUMENT), or pushflow.ReasonPayloadSize
// ("PayloadTooLarge") for a payload over MaxPayloadSize, which FCM answers
// with a mere INVALID_ARGUMENT. "" for another error.
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ""
}

// Message is one notification to one device.
type Message struct {
	Token        string // FCM registration token
	Notification pushflow.Notification
	// Priority is the pushflow priority (pushflow.PriorityRealtime,
	// PriorityNormal, PriorityBulk; "" is normal), mapped to android.priority.
	Priority string
	// TTL is how long FCM keeps the message for an offline device
	// (android.ttl), at most MaxTTL; 0 sends none: FCM's default, 4 weeks.
	TTL time.Duration
	// CollapseKey is android.collapse_key; "" takes Notification.CollapseID.
	CollapseKey string
}

// BuildMessage maps m to the FCM message the firebase SDK sends, checking it
// as FCM would so that a message FCM must reject is never sent:
//
//   - A notification message when there is something to show: notification
//     {title, body}, and android.notification with the sound, the tag
//     Notification.CollapseID (a newer notification with the same tag
//     replaces the shown one, as apns-collapse-id does) and notification_count
//     from the badge.
//   - A data message when Notification.ContentAvailable is set (a silent
//     push: the app handles it) or there is no title and no body. A silent
//     push's title and body, if any, travel in the data as "title" and
//     "body" (unless the data has these keys), for the app to use.
//   - data is Notification.Data, whatever the kind; FCM's reserved keys
//     ("from", "message_type", and keys starting with "google" or "gcm") are
//     rejected.
//   - android.priority is "high" for realtime and normal, "normal" for bulk;
//     android.ttl is TTL when set; android.collapse_key is CollapseKey, else
//     Notification.CollapseID.
//   - The payload (see PayloadSize) is at most MaxPayloadSize bytes.
//
// Only the common and Android fields are set: FCM delivers the notification
// and data of a message to web and Apple tokens too, with its defaults for
// those platforms (pushflow sends to Apple devices through APNs directly).
// The iOS-only fields (thread ID, push type, mutable content) have no
// Android counterpart and are left out.
//
// Errors wrap the Err* values above.
func BuildMessage(m Message) (*messaging.Message, error) {
	if m.Token == "" {
		return nil, fmt.Errorf("fcmio: build message: %w", ErrMissingToken)
	}
	n := m.Notification
	var priority string
	switch m.Priority {
	case pushflow.PriorityRealtime, pushflow.PriorityNormal, "":
		priority = AndroidPriorityHigh
	case pushflow.PriorityBulk:
		priority = AndroidPriorityNormal
	default:
		return nil, fmt.Errorf("fcmio: priority %q: %w", m.Priority, ErrBadPriority)
	}
	if m.TTL < 0 || m.TTL > MaxTTL {
		return nil, fmt.Errorf("fcmio: ttl %v is not in [0, %v]: %w", m.TTL, MaxTTL, ErrBadTTL)
	}
	for k := range n.Data {
		if ReservedDataKey(k) {
			return nil, fmt.Errorf("fcmio: data key %q is reserved by FCM: %w", k, ErrReservedDataKey)
		}
	}

	android := &messaging.AndroidConfig{Priority: priority, CollapseKey: m.CollapseKey}
	if android.CollapseKey == "" {
		android.CollapseKey = n.CollapseID
	}
	if m.TTL > 0 {
		ttl := m.TTL
		android.TTL = &ttl
	}
	msg := &messaging.Message{Token: m.Token, Android: android}

	data := maps.Clone(n.Data)
	if n.ContentAvailable || n.Title == "" && n.Body == "" {
		for k, v := range map[string]string{"title": n.Title, "body": n.Body} {
			if _, ok := data[k]; !ok && v != "" {
				if data == nil {
					data = map[string]string{}
				}
				data[k] = v
			}
		}
	} else {
		msg.Notification = &messaging.Notification{Title: n.Title, Body: n.Body}
		an := &messaging.AndroidNotification{Sound: n.Sound, Tag: n.CollapseID}
		if n.HasBadge || n.Badge != 0 {
			count := n.Badge
			an.NotificationCount = &count
		}
		if an.Sound != "" || an.Tag != "" || an.NotificationCount != nil {
			android.Notification = an
		}
	}
	if len(data) > 0 {
		msg.Data = data
	}
	if size := PayloadSize(msg); size > MaxPayloadSize {
		return nil, fmt.Errorf("fcmio: payload is %d bytes, more than %d: %w", size, MaxPayloadSize, ErrPayloadTooLarge)
	}
	return msg, nil
}

// PayloadSize is the size FCM limits to MaxPayloadSize: the keys and values
// of the message's data (android.data, when set, replaces it) and the title
// and body of its notification (android.notification's override them), in
// bytes. FCM documents the limit as "the total size of the payload data ...
// both the keys and the values"; fcmiotest counts the same way.
func PayloadSize(m *messaging.Message) int {
	data := m.Data
	var title, body string
	if n := m.Notification; n != nil {
		title, body = n.Title, n.Body
	}
	if a := m.Android; a != nil {
		if a.Data != nil {
			data = a.Data
		}
		if n := a.Notification; n != nil {
			if n.Title != "" {
				title = n.Title
			}
			if n.Body != "" {
				body = n.Body
			}
		}
	}
	size := len(title) + len(body)
	for k, v := range data {
		size += len(k) + len(v)
	}
	return size
}

// ReservedDataKey reports whether FCM rejects k as a data key: "from",
// "message_type", and keys starting with "google" or "gcm".
func ReservedDataKey(k string) bool {
	return k == "from" || k == "message_type" || strings.HasPrefix(k, "google") || strings.HasPrefix(k, "gcm")
}
