// Package recipient defines the elements that flow through dispatch between
// decoding and sending: a validated Request with its Kafka source position,
// and Batches of Recipients of one request. Batching recipients (rather than
// one element per recipient) keeps expand → filter → enrich → send fused
// without a shuffle, and filter, enrich and send buffer a bundle's batches
// so that they read Redis with one pipelined round trip per flush of up to
// 1,000 recipients, across requests.
//
// Every recipient that leaves the pipeline early leaves with a
// pushflow.DeliveryEvent built by Batch.Event or Request.Event, so that for a
// valid request: recipients expanded = sent + failed + dropped.
package recipient

import (
	"fmt"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow"
)

// Source is where a request was read from: its Kafka position. It is part of
// the dedup record so a replay after a failure can be told apart from a
// request submitted twice.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// String renders "topic/partition/offset".
func (s Source) String() string { return fmt.Sprintf("%s/%d/%d", s.Topic, s.Partition, s.Offset) }

// Request is a validated push request on its way through dispatch.
type Request struct {
	Req        pushflow.PushRequest
	Source     Source
	ReceivedAt time.Time // when dispatch decoded it; request_time when CreatedAt is unset
	// Replayed is set on a request a restarted pipeline replays from the
	// ledger: stages that recorded outcomes for it re-emit those instead of
	// deciding (and sending) again.
	Replayed bool
}

// RequestTime is the time latency is measured from: created_at when the
// producer set it, else when dispatch received the request.
func (r Request) RequestTime() time.Time {
	if !r.Req.CreatedAt.IsZero() {
		return r.Req.CreatedAt
	}
	return r.ReceivedAt
}

// Event builds the DeliveryEvent of a request that ended before recipients
// existed (or of one recipient, when userID/deviceID are set).
func (r Request) Event(now time.Time, userID, deviceID, platform, stage, outcome, reason string) pushflow.DeliveryEvent {
	rt := r.RequestTime()
	return pushflow.DeliveryEvent{
		V:           pushflow.Version,
		EventID:     pushflow.EventID(r.Req.ID, r.Source.String(), userID, deviceID),
		RequestID:   r.Req.ID,
		Campaign:    r.Req.Campaign,
		App:         r.Req.App,
		Category:    r.Req.Category,
		Priority:    r.Req.Priority,
		UserID:      userID,
		DeviceID:    deviceID,
		Platform:    platform,
		Stage:       stage,
		Outcome:     outcome,
		Reason:      reason,
		RequestTime: rt.UTC(),
		EventTime:   now.UTC(),
		LatencyMs:   max(now.Sub(rt).Milliseconds(), 0),
	}
}

// Recipient is one user, or one device of a user once enriched.
type Recipient struct {
	UserID   string
	DeviceID string // set by expansion of device/alias targets, or by enrichment
	Platform string // set by enrichment
	Token    string // set by enrichment
	Topic    string // provider topic override from the registry (APNs bundle id)
}

// Batch is a slice of one request's recipients. Expansion cuts audiences into
// batches of at most a configured size, so memory per element is bounded
// whatever the audience size.
type Batch struct {
	Request    Request
	Recipients []Recipient
	// Seq numbers the batches of one request (0, 1, ...), for logs and
	// per-request progress.
	Seq int
	// Emitted is when expansion emitted the batch (unix ns). The pacer
	// reports the newest it has received, so a producer held back by its
	// reports can tell whether what it emitted last has arrived.
	Emitted int64
	// Attempts are the provider attempts already made for these recipients
	// (a batch in send's retry lane), and RetryAt when to try again (unix
	// ns).
	Attempts int
	RetryAt  int64
}

// Event builds the DeliveryEvent of one recipient of b.
func (b Batch) Event(now time.Time, r Recipient, stage, outcome, reason string) pushflow.DeliveryEvent {
	return b.Request.Event(now, r.UserID, r.DeviceID, r.Platform, stage, outcome, reason)
}

// With returns a batch of the same request holding rs.
func (b Batch) With(rs []Recipient) Batch {
	return Batch{Request: b.Request, Recipients: rs, Seq: b.Seq, Emitted: b.Emitted}
}

// RequestIDs names the requests of a failed flush for its error: the
// distinct ids in order, at most the first three, and how many more.
func RequestIDs(ids []string) string {
	const show = 3
	var names []string
	seen := make(map[string]bool, len(ids))
	more := 0
	for _, id := range ids {
		switch {
		case seen[id]:
		case len(names) < show:
			names = append(names, id)
		default:
			more++
		}
		seen[id] = true
	}
	s := strings.Join(names, ", ")
	if more > 0 {
		s += fmt.Sprintf(" and %d more requests", more)
	}
	return s
}

// DefaultFlushRecipients is how many recipients filter, enrich and send
// buffer from a bundle, by default, before they do their Redis and provider
// work for all of them at once.
const DefaultFlushRecipients = 1000

// FlushAt resolves a FlushRecipients setting: 0 is DefaultFlushRecipients,
// and anything below 1 is 1 (a flush after every batch).
func FlushAt(n int) int {
	switch {
	case n == 0:
		return DefaultFlushRecipients
	case n < 1:
		return 1
	}
	return n
}

// Buffered is a batch a buffering DoFn holds until its flush, with the
// timestamp its outputs carry.
type Buffered struct {
	TS    beam.EventTime
	Batch Batch
}

// Buffer holds a bundle's batches, in arrival order, until a flush does the
// work of all of them together (across requests).
type Buffer struct {
	Items      []Buffered
	Recipients int // in Items
}

// Add buffers b and reports whether a flush is due: after every batch when
// at <= 1, otherwise once the buffer holds at recipients.
func (buf *Buffer) Add(ts beam.EventTime, b Batch, at int) bool {
	buf.Items = append(buf.Items, Buffered{TS: ts, Batch: b})
	buf.Recipients += len(b.Recipients)
	return at <= 1 || buf.Recipients >= at
}

// Reset empties the buffer, keeping its storage but letting the batches go:
// at a flush's end, and at a bundle's start (a failed bundle's leftovers).
func (buf *Buffer) Reset() {
	clear(buf.Items)
	buf.Items, buf.Recipients = buf.Items[:0], 0
}
