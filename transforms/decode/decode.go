// Package decode turns Kafka records into validated contract records. Every
// record that cannot be decoded or validated becomes exactly one
// pushflow.DeadLetter carrying the original bytes and a precise reason; no
// record disappears and none crashes the pipeline.
package decode

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func init() {
	register.DoFn5x0[context.Context, kafkaio.Record, func(recipient.Request), func(pushflow.DeadLetter), func(pushflow.DeliveryEvent)](&requestsFn{})
	register.DoFn4x0[context.Context, kafkaio.Record, func(pushflow.DeviceEvent), func(pushflow.DeadLetter)](&deviceEventsFn{})
	register.Emitter1[recipient.Request]()
	register.Emitter1[pushflow.DeadLetter]()
	register.Emitter1[pushflow.DeliveryEvent]()
	register.Emitter1[pushflow.DeviceEvent]()
	register.DoFn4x0[context.Context, kafkaio.Record, func(pushflow.ClickEvent), func(pushflow.DeadLetter)](&clickEventsFn{})
	register.DoFn4x0[context.Context, kafkaio.Record, func(pushflow.DeliveryEvent), func(pushflow.DeadLetter)](&deliveryEventsFn{})
	register.Emitter1[pushflow.ClickEvent]()
}

// Requests decodes PCollection<kafkaio.Record> from push.requests into
// PCollection<recipient.Request> (valid requests), PCollection<pushflow.DeadLetter>
// (one per record that failed) and PCollection<pushflow.DeliveryEvent> (one
// "dropped" event at stage validate for an invalid record whose request id
// could still be read, so "why did user X not get message Y" finds it).
func Requests(s beam.Scope, records beam.PCollection) (reqs, dead, events beam.PCollection) {
	s = s.Scope("decode.Requests")
	return beam.ParDo3(s, &requestsFn{}, records)
}

// DeviceEvents decodes PCollection<kafkaio.Record> from push.devices into
// PCollection<pushflow.DeviceEvent> and PCollection<pushflow.DeadLetter>.
func DeviceEvents(s beam.Scope, records beam.PCollection) (events, dead beam.PCollection) {
	s = s.Scope("decode.DeviceEvents")
	return beam.ParDo2(s, &deviceEventsFn{}, records)
}

// ClickEvents decodes PCollection<kafkaio.Record> from push.clicks into
// PCollection<pushflow.ClickEvent> and PCollection<pushflow.DeadLetter>.
func ClickEvents(s beam.Scope, records beam.PCollection) (events, dead beam.PCollection) {
	s = s.Scope("decode.ClickEvents")
	return beam.ParDo2(s, &clickEventsFn{}, records)
}

// DeliveryEvents decodes PCollection<kafkaio.Record> from push.deliveries
// into PCollection<pushflow.DeliveryEvent> and PCollection<pushflow.DeadLetter>.
func DeliveryEvents(s beam.Scope, records beam.PCollection) (events, dead beam.PCollection) {
	s = s.Scope("decode.DeliveryEvents")
	return beam.ParDo2(s, &deliveryEventsFn{}, records)
}

var (
	decodedRequests   = beam.NewCounter("pushflow", "decode_requests_ok")
	decodedDevices    = beam.NewCounter("pushflow", "decode_device_events_ok")
	decodedClicks     = beam.NewCounter("pushflow", "decode_click_events_ok")
	decodedDeliveries = beam.NewCounter("pushflow", "decode_delivery_events_ok")
	deadLetters       = beam.NewCounter("pushflow", "dead_letters")
)

type requestsFn struct{}

func (fn *requestsFn) ProcessElement(ctx context.Context, rec kafkaio.Record, emit func(recipient.Request), dead func(pushflow.DeadLetter), events func(pushflow.DeliveryEvent)) {
	req, dl, ev := Request(ctx, rec, time.Now())
	switch {
	case dl == nil:
		emit(req)
	default:
		dead(*dl)
		if ev != nil {
			events(*ev)
		}
	}
}

// Request decodes and validates one push.requests record read at now: the
// valid request, or its dead letter and, when the request id could still be
// read, its "dropped" DeliveryEvent at the dead letter's stage. It counts
// and logs as Requests does; the ledger's admission calls it too.
func Request(ctx context.Context, rec kafkaio.Record, now time.Time) (recipient.Request, *pushflow.DeadLetter, *pushflow.DeliveryEvent) {
	src := recipient.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	req, err := pushflow.DecodePushRequest(rec.Value)
	if err == nil {
		err = checkPayload(req)
	}
	if err != nil {
		dl := reject(ctx, rec, err, now)
		var ev *pushflow.DeliveryEvent
		if id := requestHeader(rec.Value); id.ID != "" {
			r := recipient.Request{Req: pushflow.PushRequest{ID: id.ID, App: id.App, Campaign: id.Campaign, Category: id.Category, Priority: id.Priority, CreatedAt: id.CreatedAt}, Source: src, ReceivedAt: now}
			e := r.Event(now, "", "", "", dl.Stage, pushflow.OutcomeDropped, dl.Reason)
			ev = &e
		}
		return recipient.Request{}, &dl, ev
	}
	decodedRequests.Inc(ctx, 1)
	return recipient.Request{Req: req, Source: src, ReceivedAt: now}, nil, nil
}

type deviceEventsFn struct{}

func (fn *deviceEventsFn) ProcessElement(ctx context.Context, rec kafkaio.Record, emit func(pushflow.DeviceEvent), dead func(pushflow.DeadLetter)) {
	decodeOr(ctx, rec, pushflow.DecodeDeviceEvent, decodedDevices, emit, dead)
}

type clickEventsFn struct{}

func (fn *clickEventsFn) ProcessElement(ctx context.Context, rec kafkaio.Record, emit func(pushflow.ClickEvent), dead func(pushflow.DeadLetter)) {
	decodeOr(ctx, rec, pushflow.DecodeClickEvent, decodedClicks, emit, dead)
}

type deliveryEventsFn struct{}

func (fn *deliveryEventsFn) ProcessElement(ctx context.Context, rec kafkaio.Record, emit func(pushflow.DeliveryEvent), dead func(pushflow.DeadLetter)) {
	decodeOr(ctx, rec, pushflow.DecodeDeliveryEvent, decodedDeliveries, emit, dead)
}

// decodeOr decodes rec with decodeFn and emits the record, or its dead letter.
func decodeOr[T any](ctx context.Context, rec kafkaio.Record, decodeFn func([]byte) (T, error), ok beam.Counter, emit func(T), dead func(pushflow.DeadLetter)) {
	v, err := decodeFn(rec.Value)
	if err != nil {
		dead(reject(ctx, rec, err, time.Now()))
		return
	}
	ok.Inc(ctx, 1)
	emit(v)
}

// reject counts, logs and builds the dead letter of rec, which failed with err.
func reject(ctx context.Context, rec kafkaio.Record, err error, now time.Time) pushflow.DeadLetter {
	deadLetters.Inc(ctx, 1)
	dl := DeadLetter(rec, err, now)
	slog.WarnContext(ctx, "dead letter", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "stage", dl.Stage, "reason", dl.Reason)
	return dl
}

// checkPayload rejects a notification whose provider payload would exceed
// the provider's size limit, so it is dead-lettered with the reason instead
// of failing once per recipient at send time.
func checkPayload(req pushflow.PushRequest) error {
	b, err := apnsio.BuildPayload(req.Notification)
	if err != nil {
		return &pushflow.ValidationError{Field: "notification", Problem: err.Error()}
	}
	limit := apnsio.MaxPayloadSize
	if req.Notification.PushType == "voip" {
		limit = apnsio.MaxVoIPPayloadSize
	}
	if len(b) > limit {
		return &pushflow.ValidationError{Field: "notification", Problem: fmt.Sprintf("APNs payload is %d bytes, the limit is %d", len(b), limit)}
	}
	return nil
}

// DeadLetter builds the dead letter of rec, which failed with err.
func DeadLetter(rec kafkaio.Record, err error, now time.Time) pushflow.DeadLetter {
	return NewDeadLetter(rec.Topic, rec.Partition, rec.Offset, rec.Value, pushflow.ErrorStage(err), err.Error(), now)
}

// NewDeadLetter builds a dead letter of raw, read at topic/partition/offset:
// raw is kept verbatim when it is UTF-8, else base64, and cut to
// pushflow.MaxDeadLetterRaw bytes (at a character boundary) when larger.
func NewDeadLetter(topic string, partition int32, offset int64, raw []byte, stage, reason string, now time.Time) pushflow.DeadLetter {
	dl := pushflow.DeadLetter{
		V:         pushflow.Version,
		Stage:     stage,
		Reason:    reason,
		Topic:     topic,
		Partition: partition,
		Offset:    offset,
		At:        now.UTC(),
	}
	if len(raw) > pushflow.MaxDeadLetterRaw {
		dl.RawTruncated, dl.RawBytes = true, len(raw)
		cut := pushflow.MaxDeadLetterRaw
		for cut > pushflow.MaxDeadLetterRaw-utf8.UTFMax && !utf8.RuneStart(raw[cut]) {
			cut--
		}
		raw = raw[:cut]
	}
	if utf8.Valid(raw) {
		dl.Raw = string(raw)
	} else {
		dl.Raw = base64.StdEncoding.EncodeToString(raw)
		dl.RawEncoding = "base64"
	}
	return dl
}

// header is the part of an invalid request that is still worth recording.
type header struct {
	ID        string
	App       string
	Campaign  string
	Category  string
	Priority  string
	CreatedAt time.Time
}

// requestHeader reads what it can of an invalid request's identity, field by
// field, so one bad field does not hide the request id.
func requestHeader(b []byte) header {
	var m map[string]json.RawMessage
	if len(b) > pushflow.MaxRecordBytes || json.Unmarshal(b, &m) != nil {
		return header{}
	}
	str := func(k string) string {
		var s string
		// json.Unmarshal turns broken text into U+FFFD: an id of broken
		// text is not the request's id, so it is not repeated in an event.
		if json.Unmarshal(m[k], &s) != nil || strings.ContainsRune(s, utf8.RuneError) {
			return ""
		}
		return s
	}
	h := header{ID: str("id"), App: str("app"), Campaign: str("campaign"), Category: str("category"), Priority: str("priority")}
	if h.Priority == "" {
		h.Priority = pushflow.PriorityNormal // as for a valid request
	}
	if t, err := time.Parse(time.RFC3339, str("created_at")); err == nil {
		h.CreatedAt = t
	}
	return h
}
