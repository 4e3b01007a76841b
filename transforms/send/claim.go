package send

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// A device's claim holds the Kafka record that claimed it ("owner") and,
// once the provider answered, the outcome: "<owner>\n<recorded JSON>".
// Owners are "topic/partition/offset", which never contain a newline.

// recorded is the outcome of one device, as kept in its claim.
type recorded struct {
	Outcome    string    `json:"o"`
	Reason     string    `json:"r,omitempty"`
	ProviderID string    `json:"p,omitempty"`
	Attempts   int       `json:"a,omitempty"`
	UserID     string    `json:"u,omitempty"`
	Platform   string    `json:"pl,omitempty"`
	At         time.Time `json:"t"`
}

// recordedClaim is the claim value of owner with ev's outcome.
func recordedClaim(owner string, ev pushflow.DeliveryEvent) string {
	b, _ := json.Marshal(recorded{Outcome: ev.Outcome, Reason: ev.Reason, ProviderID: ev.ProviderID, Attempts: ev.Attempts, UserID: ev.UserID, Platform: ev.Platform, At: ev.EventTime})
	return owner + "\n" + string(b)
}

// parseClaim splits a claim value into its owner and recorded outcome (nil
// while none is recorded, or if it cannot be read).
func parseClaim(v string) (owner string, rec *recorded) {
	owner, js, ok := strings.Cut(v, "\n")
	if !ok {
		return owner, nil
	}
	var r recorded
	if json.Unmarshal([]byte(js), &r) != nil {
		return owner, nil
	}
	return owner, &r
}

// event is the DeliveryEvent the recorded outcome stands for: the same
// event (same event_id, time and provider id) the first send emitted.
func (rec *recorded) event(b recipient.Batch, r recipient.Recipient) pushflow.DeliveryEvent {
	if rec.UserID != "" {
		r.UserID = rec.UserID
	}
	if rec.Platform != "" {
		r.Platform = rec.Platform
	}
	ev := b.Event(rec.At, r, pushflow.StageSend, rec.Outcome, rec.Reason)
	ev.ProviderID, ev.Attempts = rec.ProviderID, rec.Attempts
	return ev
}
