package pace

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"

	"github.com/pushflow/pushflow/transforms/recipient"
)

// codedState is fakeState with every state value stored encoded by the Beam
// coder of its type, as a runner's state API holds it: reads decode and
// writes encode, so a benchmark pays what the SDK harness pays per element.
type codedState struct {
	*fakeState
	enc map[reflect.Type]beam.ElementEncoder
	dec map[reflect.Type]beam.ElementDecoder
	typ map[string]reflect.Type
}

func newCodedState() *codedState {
	return &codedState{fakeState: newFakeState(), enc: map[reflect.Type]beam.ElementEncoder{},
		dec: map[reflect.Type]beam.ElementDecoder{}, typ: map[string]reflect.Type{}}
}

func (c *codedState) encode(key string, v any) []byte {
	t := reflect.TypeOf(v)
	c.typ[key] = t
	e, ok := c.enc[t]
	if !ok {
		e = beam.NewElementEncoder(t)
		c.enc[t] = e
	}
	var buf bytes.Buffer
	if err := e.Encode(v, &buf); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func (c *codedState) decode(key string, b []byte) any {
	t := c.typ[key]
	d, ok := c.dec[t]
	if !ok {
		d = beam.NewElementDecoder(t)
		c.dec[t] = d
	}
	v, err := d.Decode(bytes.NewReader(b))
	if err != nil {
		panic(err)
	}
	return v
}

func (c *codedState) ReadValueState(id string) (any, []state.Transaction, error) {
	b, ok := c.values[id]
	if !ok {
		return nil, nil, nil
	}
	return c.decode(id, b.([]byte)), nil, nil
}
func (c *codedState) WriteValueState(t state.Transaction) error {
	c.values[t.Key] = c.encode(t.Key, t.Val)
	return nil
}
func (c *codedState) ReadBagState(id string) ([]any, []state.Transaction, error) {
	c.reads++
	var out []any
	for _, b := range c.bags[id] {
		out = append(out, c.decode(id, b.([]byte)))
	}
	return out, nil, nil
}
func (c *codedState) WriteBagState(t state.Transaction) error {
	c.bags[t.Key] = append(c.bags[t.Key], c.encode(t.Key, t.Val))
	return nil
}

// BenchmarkLargeBacklog drives the DoFn directly with coded fake state: a
// large backlog of one campaign pending over 4 shards at GlobalQPS 4000 (100
// per shard per 100 ms slot), and reports the CPU time per timer firing and
// the inbox bag reads per firing.
//
//	go test -run '^$' -bench LargeBacklog -benchtime 2000x ./transforms/pace/
func BenchmarkLargeBacklog(b *testing.B) {
	for _, bc := range []struct {
		name    string
		n, size int
	}{
		{name: "1M_in_2000x500", n: 1_000_000, size: 500},
		{name: "200k_in_200000x1", n: 200_000, size: 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const shards = 4
			now := t0
			cfg := Config{Shards: shards, GlobalQPS: 4000, Clock: func() time.Time { return now }}.withDefaults("bench")
			in := batches("big", "c", bc.n, bc.size)
			type key struct {
				fn *paceFn
				sp *codedState
				tp *fakeTimers
			}
			var keys []key
			released, reads, firings := 0, 0, 0
			var plainNs, readNs time.Duration // CPU of firings without and with an inbox read
			plain := 0
			emit := func(x recipient.Batch) { released += len(x.Recipients) }
			load := func() {
				for _, k := range keys {
					reads += k.sp.reads
				}
				now = t0
				keys = keys[:0]
				for range shards {
					k := key{fn: newFn(cfg), sp: newCodedState(), tp: &fakeTimers{}}
					k.fn.Setup()
					keys = append(keys, k)
				}
				for _, x := range in {
					k := keys[Shard(x, shards)]
					if err := k.fn.ProcessElement(k.sp, k.tp, 0, x, emit); err != nil {
						b.Fatal(err)
					}
				}
				for _, k := range keys {
					k.sp.reads = 0
				}
			}
			load()
			released = 0
			b.ResetTimer()
			for i := range b.N {
				k := keys[i%shards]
				if !k.tp.set {
					b.StopTimer()
					load()
					b.StartTimer()
					k = keys[i%shards]
				}
				k.tp.set = false
				if k.tp.at.After(now) {
					now = k.tp.at
				}
				r0, start := k.sp.reads, time.Now()
				if err := k.fn.OnTimer(context.Background(), k.sp, k.tp, 0, timers.Context{Family: "slot"}, emit); err != nil {
					b.Fatal(err)
				}
				if d := time.Since(start); k.sp.reads == r0 {
					plainNs += d
					plain++
				} else {
					readNs += d
				}
				firings++
			}
			b.StopTimer()
			for _, k := range keys {
				reads += k.sp.reads
			}
			b.ReportMetric(float64(released)/float64(firings), "recipients/firing")
			b.ReportMetric(float64(reads)/float64(firings), "bagreads/firing")
			if plain > 0 {
				b.ReportMetric(float64(plainNs.Nanoseconds())/float64(plain), "ns/plain_firing")
			}
			if firings > plain {
				b.ReportMetric(float64(readNs.Nanoseconds())/float64(firings-plain), "ns/refill_firing")
			}
		})
	}
}
