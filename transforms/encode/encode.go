// Package encode turns output records into Kafka messages: the contract's
// JSON as the value, the record's natural key as the key.
package encode

import (
	"encoding/json"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/kafkaio"
)

func init() {
	register.Function1x2(deliveryMessage)
	register.Function1x2(deadLetterMessage)
}

// Deliveries encodes PCollection<pushflow.DeliveryEvent> as
// PCollection<kafkaio.Message> keyed by request id, so one request's events
// stay in order on one partition.
func Deliveries(s beam.Scope, events beam.PCollection) beam.PCollection {
	return beam.ParDo(s.Scope("encode.Deliveries"), deliveryMessage, events)
}

// DeadLetters encodes PCollection<pushflow.DeadLetter> as
// PCollection<kafkaio.Message> keyed by the source topic/partition/offset.
func DeadLetters(s beam.Scope, dead beam.PCollection) beam.PCollection {
	return beam.ParDo(s.Scope("encode.DeadLetters"), deadLetterMessage, dead)
}

func deliveryMessage(ev pushflow.DeliveryEvent) (kafkaio.Message, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return kafkaio.Message{}, fmt.Errorf("encode: delivery event %s: %w", ev.RequestID, err)
	}
	return kafkaio.Message{Key: []byte(ev.RequestID), Value: b}, nil
}

func deadLetterMessage(dl pushflow.DeadLetter) (kafkaio.Message, error) {
	b, err := json.Marshal(dl)
	if err != nil {
		return kafkaio.Message{}, fmt.Errorf("encode: dead letter %s/%d/%d: %w", dl.Topic, dl.Partition, dl.Offset, err)
	}
	return kafkaio.Message{Key: fmt.Appendf(nil, "%s/%d/%d", dl.Topic, dl.Partition, dl.Offset), Value: b}, nil
}
