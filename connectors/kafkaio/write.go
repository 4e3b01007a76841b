package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/pushflow/pushflow/internal/stageout"
)

func init() {
	register.DoFn3x1[context.Context, Message, func(int), error](&writeFn{})
	register.Emitter1[int]()
}

// Defaults of the WriteConfig tuning fields.
const (
	DefaultBatchSize    = 1000
	DefaultRetryTimeout = 30 * time.Second
)

// WriteConfig configures [Write].
type WriteConfig struct {
	// Brokers are the bootstrap broker addresses (host:port). Required.
	Brokers []string
	// Topic is the topic of messages whose Message.Topic is empty. It may be
	// empty only if every message names its topic.
	Topic string
	// ClientID is the Kafka client ID. Default "pushflow".
	ClientID string
	// Security is the connection's TLS and SASL settings (default:
	// plaintext, no authentication).
	Security Security
	// BatchSize is the number of buffered messages that triggers a send
	// before the end of the bundle. Default 1000.
	BatchSize int
	// RetryTimeout is how long a failed send is retried (the failed messages
	// only, with exponential backoff, on a new producer) before the bundle
	// fails. Errors that cannot go away (message too large, invalid topic,
	// not authorized) fail it at once. Default 30s.
	RetryTimeout time.Duration
}

// Write writes a PCollection<Message> to Kafka (see the package doc for the
// producer settings and delivery semantics). It returns nothing: a bundle
// succeeds only once Kafka acknowledged all its messages, and fails, to be
// retried by the runner, otherwise. Write panics, with a "kafkaio.Write:"
// prefix, on an invalid configuration.
func Write(s beam.Scope, cfg WriteConfig, msgs beam.PCollection) {
	s = s.Scope("kafkaio.Write")
	if len(cfg.Brokers) == 0 {
		panic("kafkaio.Write: invalid WriteConfig: no Brokers")
	}
	if cfg.BatchSize < 0 || cfg.RetryTimeout < 0 {
		panic("kafkaio.Write: invalid WriteConfig: negative BatchSize or RetryTimeout")
	}
	if err := cfg.Security.Validate(); err != nil {
		panic(fmt.Sprintf("kafkaio.Write: invalid WriteConfig: Security: %v", err))
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.RetryTimeout == 0 {
		cfg.RetryTimeout = DefaultRetryTimeout
	}
	out := beam.ParDo(s, &writeFn{
		Brokers: cfg.Brokers, Topic: cfg.Topic, ClientID: cfg.ClientID, Security: cfg.Security,
		BatchSize: cfg.BatchSize, RetryTimeout: cfg.RetryTimeout,
	}, msgs)
	// writeFn emits nothing: out only gives the write stage a consumed
	// output (see package stageout).
	stageout.Consume(s, out)
}

type writeFn struct {
	Brokers      []string
	Topic        string
	ClientID     string
	Security     Security
	BatchSize    int
	RetryTimeout time.Duration

	p   *Producer
	buf []Message
}

func (fn *writeFn) Setup() error {
	// The sarama producer is made by the first send, which retries.
	fn.p = NewProducer(WriteConfig{Brokers: fn.Brokers, Topic: fn.Topic, ClientID: fn.ClientID, Security: fn.Security, BatchSize: fn.BatchSize, RetryTimeout: fn.RetryTimeout})
	return nil
}

func (fn *writeFn) StartBundle(context.Context, func(int)) {
	fn.buf = fn.buf[:0]
}

func (fn *writeFn) ProcessElement(ctx context.Context, m Message, _ func(int)) error {
	fn.buf = append(fn.buf, m)
	if len(fn.buf) >= fn.BatchSize {
		return fn.flush(ctx)
	}
	return nil
}

func (fn *writeFn) FinishBundle(ctx context.Context, _ func(int)) error {
	return fn.flush(ctx)
}

func (fn *writeFn) flush(ctx context.Context) error {
	defer func() { clear(fn.buf); fn.buf = fn.buf[:0] }()
	return fn.p.Send(ctx, fn.buf)
}

func (fn *writeFn) Teardown() error { return fn.p.Close() }

// Producer sends messages to Kafka the way Write does — idempotent
// producer, only failed messages retried for WriteConfig.RetryTimeout,
// permanent errors returned at once — for a DoFn that has to know its
// messages are in Kafka before it goes on (e.g. to record that they were
// written). Its sarama producer is made by the first Send and closed after
// 10 s unused. Safe for use by one goroutine at a time.
type Producer struct {
	cfg      WriteConfig
	producer sarama.SyncProducer // used under jan.busy
	jan      janitor

	written, bytes, errs beam.Counter
}

// NewProducer returns a Producer for cfg (zero tuning fields take their
// defaults). It connects on first use.
func NewProducer(cfg WriteConfig) *Producer {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.RetryTimeout <= 0 {
		cfg.RetryTimeout = DefaultRetryTimeout
	}
	return &Producer{
		cfg:     cfg,
		written: beam.NewCounter("kafkaio", "records_written"),
		bytes:   beam.NewCounter("kafkaio", "bytes_written"),
		errs:    beam.NewCounter("kafkaio", "write_errors"),
	}
}

func (p *Producer) connect() error {
	if p.producer != nil {
		return nil
	}
	scfg, err := p.cfg.Security.saramaConfig(p.cfg.ClientID)
	if err != nil {
		return permanentError{err}
	}
	sp, err := sarama.NewSyncProducer(p.cfg.Brokers, scfg)
	if err != nil {
		err = p.cfg.Security.connectError("producer for", p.cfg.Brokers, err)
		if errors.Is(err, ErrAuthentication) {
			return permanentError{err}
		}
		return err
	}
	p.producer = sp
	return nil
}

// closeProducer is the janitor's close: it runs under jan.busy.
func (p *Producer) closeProducer() {
	if p.producer != nil {
		p.producer.Close()
		p.producer = nil
	}
}

// Send writes msgs (each to its Topic, or WriteConfig.Topic) and returns
// once Kafka acknowledged every one, or with the error that made it give up.
func (p *Producer) Send(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	pending := make([]*sarama.ProducerMessage, 0, len(msgs))
	var size int64
	for _, m := range msgs {
		topic := m.Topic
		if topic == "" {
			topic = p.cfg.Topic
		}
		if topic == "" {
			p.errs.Inc(ctx, 1)
			return errors.New("kafkaio: message without a topic, and WriteConfig.Topic is empty")
		}
		pm := &sarama.ProducerMessage{Topic: topic, Headers: toSaramaHeaders(m.Headers)}
		if m.Key != nil {
			pm.Key = sarama.ByteEncoder(m.Key)
		}
		if m.Value != nil {
			pm.Value = sarama.ByteEncoder(m.Value)
		}
		pending = append(pending, pm)
		size += int64(len(m.Key) + len(m.Value))
	}
	p.jan.busy.Lock()
	defer func() {
		p.jan.touch(p.closeProducer)
		p.jan.busy.Unlock()
	}()
	n := len(pending)
	deadline := time.Now().Add(p.cfg.RetryTimeout)
	backoff := 100 * time.Millisecond
	for {
		err := p.connect()
		if err == nil {
			if err = p.producer.SendMessages(pending); err == nil {
				p.written.Inc(ctx, int64(n))
				p.bytes.Inc(ctx, size)
				return nil
			}
			var perrs sarama.ProducerErrors
			if errors.As(err, &perrs) && len(perrs) > 0 {
				// Only the failed messages are sent again.
				retry := make([]*sarama.ProducerMessage, 0, len(perrs))
				for _, pe := range perrs {
					if permanent(pe.Err) {
						p.errs.Inc(ctx, int64(len(perrs)))
						return fmt.Errorf("kafkaio: write to %s: %w", pe.Msg.Topic, pe.Err)
					}
					retry = append(retry, &sarama.ProducerMessage{
						Topic: pe.Msg.Topic, Key: pe.Msg.Key, Value: pe.Msg.Value, Headers: pe.Msg.Headers,
					})
				}
				err = fmt.Errorf("%d of %d messages failed, first to %s: %w", len(perrs), len(pending), perrs[0].Msg.Topic, perrs[0].Err)
				pending = retry
			}
			p.errs.Inc(ctx, int64(len(pending)))
			// The producer may be unusable (e.g. its idempotent sequence is
			// broken): start afresh.
			p.producer.Close()
			p.producer = nil
		} else if pe := (permanentError{}); errors.As(err, &pe) {
			p.errs.Inc(ctx, int64(len(pending)))
			return pe.err
		}
		if time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("kafkaio: write (gave up after %v): %w", p.cfg.RetryTimeout, err)
		}
		log.Warnf(ctx, "kafkaio.Write: %v (retrying in %v)", err, backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkaio: write: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Close closes the sarama producer, if one is open.
func (p *Producer) Close() error {
	if p == nil {
		return nil
	}
	p.jan.busy.Lock()
	defer p.jan.busy.Unlock()
	if p.producer == nil {
		return nil
	}
	err := p.producer.Close()
	p.producer = nil
	return err
}

// permanentError is a connect error that retrying cannot heal (a refused
// password, an unreadable CA file).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// permanent reports whether a produce error cannot go away by retrying.
func permanent(err error) bool {
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrInvalidMessage) ||
		errors.Is(err, sarama.ErrInvalidTopic) || errors.Is(err, sarama.ErrTopicAuthorizationFailed)
}
