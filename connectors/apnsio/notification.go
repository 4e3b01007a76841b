package apnsio

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/sideshow/apns2"
)

// Payload limits of APNs, in bytes.
const (
	MaxPayloadSize     = 4096
	MaxVoIPPayloadSize = 5120
	// MaxCollapseIDSize bounds apns-collapse-id.
	MaxCollapseIDSize = 64
)

// Errors of BuildNotification and BuildPayload, for errors.Is. A Result
// records them by the APNs reason they stand for (see Reason).
var (
	ErrMissingDeviceToken = errors.New("missing device token")
	ErrMissingTopic       = errors.New("missing topic")
	ErrInvalidPushType    = errors.New("invalid push type")
	ErrBadPriority        = errors.New("bad priority")
	ErrBadCollapseID      = errors.New("bad collapse id")
	ErrBadPayload         = errors.New("bad payload")
	ErrPayloadTooLarge    = errors.New("payload too large")
)

// reasons are the APNs reasons the errors above stand for.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrMissingDeviceToken, apns2.ReasonMissingDeviceToken},
	{ErrMissingTopic, apns2.ReasonMissingTopic},
	{ErrInvalidPushType, apns2.ReasonInvalidPushType},
	{ErrBadPriority, apns2.ReasonBadPriority},
	{ErrBadCollapseID, apns2.ReasonBadCollapseID},
	{ErrBadPayload, ReasonBadPayload},
	{ErrPayloadTooLarge, pushflow.ReasonPayloadSize}, // = apns2.ReasonPayloadTooLarge
}

// ReasonBadPayload is the reason of a notification whose payload cannot be
// built (a data key "aps"). APNs documents no reason string for it.
const ReasonBadPayload = "BadPayload"

// Reason is the APNs reason an error of BuildNotification stands for, or ""
// for another error.
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
	Token        string // device token, hex
	Topic        string // the app's bundle ID; BuildNotification adds push-type suffixes
	Notification pushflow.Notification
	// Priority is the pushflow priority (pushflow.PriorityRealtime,
	// PriorityNormal, PriorityBulk; "" is normal), mapped to apns-priority.
	Priority string
	// Expiration is when APNs stops trying to deliver (apns-expiration);
	// zero sends no header.
	Expiration time.Time
	// ID is the apns-id to send, a UUID; "" lets APNs make one.
	ID string
}

// topicSuffixes are the topic suffixes APNs requires for push types.
var topicSuffixes = map[apns2.EPushType]string{
	apns2.PushTypeVOIP:         ".voip",
	apns2.PushTypeComplication: ".complication",
	apns2.PushTypeFileProvider: ".pushkit.fileprovider",
	apns2.PushTypeLiveActivity: ".push-type.liveactivity",
	apns2.PushTypeLocation:     ".location-query",
	apns2.PushTypePushToTalk:   ".voip-ptt",
}

var pushTypes = map[string]apns2.EPushType{
	string(apns2.PushTypeAlert):        apns2.PushTypeAlert,
	string(apns2.PushTypeBackground):   apns2.PushTypeBackground,
	string(apns2.PushTypeLocation):     apns2.PushTypeLocation,
	string(apns2.PushTypeVOIP):         apns2.PushTypeVOIP,
	string(apns2.PushTypeComplication): apns2.PushTypeComplication,
	string(apns2.PushTypeFileProvider): apns2.PushTypeFileProvider,
	string(apns2.PushTypeMDM):          apns2.PushTypeMDM,
	string(apns2.PushTypeLiveActivity): apns2.PushTypeLiveActivity,
	string(apns2.PushTypePushToTalk):   apns2.PushTypePushToTalk,
}

// BuildNotification maps m to the apns2 request, checking it as APNs would
// so that a notification APNs must reject is never sent:
//
//   - apns-push-type is Notification.PushType, else "background" for a
//     content-available notification with nothing to show (no title, body,
//     sound or badge), else "alert".
//   - apns-priority is 5 for background pushes (APNs rejects 10) and bulk,
//     10 for realtime and normal.
//   - apns-topic gets the suffix the push type requires (".voip",
//     ".complication", ".pushkit.fileprovider", ".push-type.liveactivity",
//     ".location-query", ".voip-ptt") unless it has it already.
//   - apns-collapse-id is at most 64 bytes; the payload at most 4096 bytes
//     (5120 for voip).
//
// Errors wrap the Err* values above.
func BuildNotification(m Message) (*apns2.Notification, error) {
	if m.Token == "" {
		return nil, fmt.Errorf("apnsio: build notification: %w", ErrMissingDeviceToken)
	}
	if m.Topic == "" {
		return nil, fmt.Errorf("apnsio: build notification: %w", ErrMissingTopic)
	}
	n := m.Notification
	pushType, err := pushTypeOf(n)
	if err != nil {
		return nil, err
	}
	priority, err := priorityOf(pushType, m.Priority)
	if err != nil {
		return nil, err
	}
	if len(n.CollapseID) > MaxCollapseIDSize {
		return nil, fmt.Errorf("apnsio: collapse id is %d bytes, more than %d: %w", len(n.CollapseID), MaxCollapseIDSize, ErrBadCollapseID)
	}
	payload, err := BuildPayload(n)
	if err != nil {
		return nil, err
	}
	limit := MaxPayloadSize
	if pushType == apns2.PushTypeVOIP {
		limit = MaxVoIPPayloadSize
	}
	if len(payload) > limit {
		return nil, fmt.Errorf("apnsio: %s payload is %d bytes, more than %d: %w", pushType, len(payload), limit, ErrPayloadTooLarge)
	}
	topic := m.Topic
	if suffix := topicSuffixes[pushType]; suffix != "" && !strings.HasSuffix(topic, suffix) {
		topic += suffix
	}
	return &apns2.Notification{
		ApnsID:      m.ID,
		CollapseID:  n.CollapseID,
		DeviceToken: m.Token,
		Topic:       topic,
		Expiration:  m.Expiration,
		Priority:    priority,
		Payload:     payload,
		PushType:    pushType,
	}, nil
}

func pushTypeOf(n pushflow.Notification) (apns2.EPushType, error) {
	if n.PushType != "" {
		t, ok := pushTypes[n.PushType]
		if !ok {
			return "", fmt.Errorf("apnsio: push type %q: %w", n.PushType, ErrInvalidPushType)
		}
		return t, nil
	}
	silent := n.Title == "" && n.Body == "" && n.Sound == "" && !n.HasBadge && n.Badge == 0
	if n.ContentAvailable && silent {
		return apns2.PushTypeBackground, nil
	}
	return apns2.PushTypeAlert, nil
}

func priorityOf(pushType apns2.EPushType, priority string) (int, error) {
	var p int
	switch priority {
	case pushflow.PriorityRealtime, pushflow.PriorityNormal, "":
		p = apns2.PriorityHigh
	case pushflow.PriorityBulk:
		p = apns2.PriorityLow
	default:
		return 0, fmt.Errorf("apnsio: priority %q: %w", priority, ErrBadPriority)
	}
	if pushType == apns2.PushTypeBackground {
		p = apns2.PriorityLow
	}
	return p, nil
}
