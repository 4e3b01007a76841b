// Package pushflow holds the public contract of the pushflow platform: one Go
// type per JSON record that crosses a Kafka topic or lands in the delivery
// table, and the strict decoders that turn bytes into validated records.
//
// Every record carries "v": 1. Unknown JSON fields are ignored; a known field
// of the wrong type, a missing required field or an out-of-range value is a
// *ValidationError naming the field. Times are RFC 3339.
//
// The contract is documented in README.md ("Contracts"); upstream systems and
// analysts rely on the JSON names below, so they never change.
package pushflow

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Version is the only record version this package reads and writes.
const Version = 1

// Default topic names. Pipelines take them as flags.
const (
	TopicRequests   = "push.requests"
	TopicDevices    = "push.devices"
	TopicClicks     = "push.clicks"
	TopicDeliveries = "push.deliveries"
	TopicDeadLetter = "push.deadletter"
)

// Priorities of a PushRequest.
const (
	PriorityRealtime = "realtime"
	PriorityNormal   = "normal"
	PriorityBulk     = "bulk"
)

// PushRequest asks pushflow to notify a target audience. It is read from
// push.requests, keyed by ID.
type PushRequest struct {
	V            int          `json:"v"`
	ID           string       `json:"id"`
	App          string       `json:"app"`
	Campaign     string       `json:"campaign,omitempty"`
	Category     string       `json:"category,omitempty"`
	Priority     string       `json:"priority,omitempty"`
	Target       Target       `json:"target"`
	Notification Notification `json:"notification"`
	TTLSeconds   int64        `json:"ttl_seconds,omitempty"`
	NotBefore    time.Time    `json:"not_before,omitzero"`
	CreatedAt    time.Time    `json:"created_at,omitzero"`
}

// Target names the audience of a request. Exactly one kind is set.
type Target struct {
	Users     []string    `json:"users,omitempty"`
	Devices   []string    `json:"devices,omitempty"`
	Alias     AliasTarget `json:"alias,omitzero"`
	Tags      string      `json:"tags,omitempty"`
	Broadcast bool        `json:"broadcast,omitempty"`
	File      string      `json:"file,omitempty"`
}

// Target kinds, as returned by Target.Kind.
const (
	TargetUsers     = "users"
	TargetDevices   = "devices"
	TargetAlias     = "alias"
	TargetTags      = "tags"
	TargetBroadcast = "broadcast"
	TargetFile      = "file"
)

// Kind returns which kind of target is set, or "" when none is. Decoding
// guarantees exactly one kind for a validated request.
func (t Target) Kind() string {
	switch {
	case len(t.Users) > 0:
		return TargetUsers
	case len(t.Devices) > 0:
		return TargetDevices
	case t.Alias.Type != "" || len(t.Alias.Values) > 0:
		return TargetAlias
	case t.Tags != "":
		return TargetTags
	case t.Broadcast:
		return TargetBroadcast
	case t.File != "":
		return TargetFile
	}
	return ""
}

// AliasTarget selects devices by an alias such as a phone number.
type AliasTarget struct {
	Type   string   `json:"type"`
	Values []string `json:"values"`
}

// Notification is the provider-neutral message. Senders map it to APNs or
// FCM payloads.
type Notification struct {
	Title            string            `json:"title,omitempty"`
	Body             string            `json:"body,omitempty"`
	Sound            string            `json:"sound,omitempty"`
	Badge            int               `json:"badge,omitempty"`
	HasBadge         bool              `json:"-"` // true when "badge" was present (0 clears the badge)
	Data             map[string]string `json:"data,omitempty"`
	CollapseID       string            `json:"collapse_id,omitempty"`
	ThreadID         string            `json:"thread_id,omitempty"`
	PushType         string            `json:"push_type,omitempty"`
	MutableContent   bool              `json:"mutable_content,omitempty"`
	ContentAvailable bool              `json:"content_available,omitempty"`
}

// DeviceEvent is the device registry's input, read from push.devices, keyed
// by app/user_id.
type DeviceEvent struct {
	V        int               `json:"v"`
	Op       string            `json:"op"`
	App      string            `json:"app"`
	UserID   string            `json:"user_id"`
	DeviceID string            `json:"device_id,omitempty"`
	Platform string            `json:"platform,omitempty"`
	Token    string            `json:"token,omitempty"`
	Tags     []string          `json:"tags,omitempty"`
	Alias    map[string]string `json:"alias,omitempty"`
	Settings Settings          `json:"settings,omitzero"`
	At       time.Time         `json:"at,omitzero"`
}

// Device event operations.
const (
	OpRegister   = "register"
	OpUnregister = "unregister"
	OpSettings   = "settings"
)

// Platforms of a device.
const (
	PlatformIOS     = "ios"
	PlatformAndroid = "android"
)

// Settings are a user's delivery preferences.
type Settings struct {
	Timezone   string   `json:"timezone,omitempty"`
	QuietHours string   `json:"quiet_hours,omitempty"` // "22:00-08:00", local to Timezone
	OptOut     []string `json:"opt_out,omitempty"`     // opted-out categories
}

// DeliveryEvent is the one outcome of one recipient device, or of a request
// that ended before recipients existed. Written to push.deliveries and to the
// delivery table.
type DeliveryEvent struct {
	V int `json:"v" parquet:"v"`
	// EventID identifies the outcome of one recipient of one request read
	// from one Kafka record (EventID): a replay of that work, after a crash
	// or a retried bundle, produces the same id, so consumers of
	// push.deliveries and the delivery table's queries deduplicate on it.
	EventID     string    `json:"event_id" parquet:"event_id"`
	RequestID   string    `json:"request_id" parquet:"request_id"`
	Campaign    string    `json:"campaign" parquet:"campaign"`
	App         string    `json:"app" parquet:"app"`
	Category    string    `json:"category" parquet:"category"`
	Priority    string    `json:"priority" parquet:"priority"`
	UserID      string    `json:"user_id" parquet:"user_id"`
	DeviceID    string    `json:"device_id" parquet:"device_id"`
	Platform    string    `json:"platform" parquet:"platform"`
	Stage       string    `json:"stage" parquet:"stage"`
	Outcome     string    `json:"outcome" parquet:"outcome"`
	Reason      string    `json:"reason" parquet:"reason"`
	ProviderID  string    `json:"provider_id" parquet:"provider_id"`
	Attempts    int       `json:"attempts" parquet:"attempts"`
	RequestTime time.Time `json:"request_time" parquet:"request_time,timestamp(millisecond)"`
	EventTime   time.Time `json:"event_time" parquet:"event_time,timestamp(millisecond)"`
	LatencyMs   int64     `json:"latency_ms" parquet:"latency_ms"`
}

// Stages of the dispatch pipeline, as recorded in DeliveryEvent.Stage and
// DeadLetter.Stage.
const (
	StageDecode   = "decode"
	StageValidate = "validate"
	StageExpand   = "expand"
	StageFilter   = "filter"
	StageEnrich   = "enrich"
	StageSend     = "send"
)

// Outcomes of a DeliveryEvent.
const (
	OutcomeSent    = "sent"
	OutcomeFailed  = "failed"
	OutcomeDropped = "dropped"
)

// Reasons pushflow itself assigns. Provider reasons (APNs "Unregistered",
// "BadDeviceToken", FCM "UNREGISTERED", ...) are recorded verbatim.
const (
	ReasonQuietHours   = "quiet_hours"
	ReasonOptOut       = "opt_out"
	ReasonFrequencyCap = "frequency_cap"
	ReasonDuplicate    = "duplicate"
	ReasonNoDevice     = "no_device"
	ReasonNoUser       = "no_user"
	ReasonNoToken      = "no_token"
	ReasonUnknownApp   = "unknown_app"
	ReasonExpired      = "expired"
	ReasonUnsupported  = "unsupported_target"
	ReasonPayloadSize  = "PayloadTooLarge"
	ReasonNoProvider   = "no_provider"
)

// MaxDeadLetterRaw is the most bytes of the original record a DeadLetter
// carries.
const MaxDeadLetterRaw = 256 << 10

// DeadLetter carries a record that could not be decoded or validated, with
// the original bytes and the reason. Nothing unparseable is dropped silently.
type DeadLetter struct {
	V      int    `json:"v"`
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
	// Raw is the original record: verbatim when it is valid UTF-8, otherwise
	// standard base64 with RawEncoding "base64".
	Raw         string `json:"raw"`
	RawEncoding string `json:"raw_encoding,omitempty"`
	// RawTruncated is true when Raw holds only the first MaxDeadLetterRaw
	// bytes of a larger record (RawBytes long): the whole record stays at
	// Topic/Partition/Offset. It keeps a dead letter under Kafka's message
	// size limit, which a failed write would turn into a failed job.
	RawTruncated bool      `json:"raw_truncated,omitempty"`
	RawBytes     int       `json:"raw_bytes,omitempty"`
	Topic        string    `json:"topic"`
	Partition    int32     `json:"partition"`
	Offset       int64     `json:"offset"`
	At           time.Time `json:"at"`
	// RequestID is set when the record was a valid request rejected later
	// (an unknown app), so its dead letter and delivery event can be joined.
	RequestID string `json:"request_id,omitempty"`
}

// ClickEvent is a user's reaction to a notification, read from push.clicks.
type ClickEvent struct {
	V         int       `json:"v"`
	RequestID string    `json:"request_id"`
	App       string    `json:"app"`
	UserID    string    `json:"user_id"`
	DeviceID  string    `json:"device_id"`
	Action    string    `json:"action"`
	At        time.Time `json:"at"`
}

// Click actions.
const (
	ActionReceived  = "received"
	ActionOpened    = "opened"
	ActionClicked   = "clicked"
	ActionDismissed = "dismissed"
)

// EventID is the deterministic id of the DeliveryEvent of (userID,
// deviceID) — both empty for a request-level event — of request requestID
// read at source ("topic/partition/offset"): 32 hex digits of SHA-256 over
// the four, length-prefixed so no two tuples collide.
func EventID(requestID, source, userID, deviceID string) string {
	h := sha256.New()
	for _, s := range [...]string{requestID, source, userID, deviceID} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
