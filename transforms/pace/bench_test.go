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
	enc  map[reflect.Type]beam.ElementEncoder
	dec  map[reflect.Type]beam.ElementDecoder
	typ  map[string]reflect.Type
	adds int // bag appends: each one is a state request of its own on a runner
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
	c.adds++
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

// BenchmarkTinyRequestsFiring measures what a timer firing costs with
// 100,000 one-user requests (one-recipient batches, 3 campaigns) pending on
// one key, with coalescing (the default) and without (CoalesceBelow 0),
// side by side. Coded fake state as in BenchmarkLargeBacklog; GlobalQPS
// 4000 on one shard: 400 per 100 ms slot. 400 new requests arrive after
// every firing, so the backlog stays at 100,000 and refills come every
// RefillEvery (10 slots). Each variant fires 60 times; reported per
// variant: ns per OnTimer (all firings, refills, others), bag appends per
// firing (state requests on a runner), inbox entries after the load, and
// ns per ProcessElement of the load. Run it once:
//
//	go test -run '^$' -bench TinyRequestsFiring -benchtime 1x ./transforms/pace/
func BenchmarkTinyRequestsFiring(b *testing.B) {
	const pending, firings, perSlot = 100_000, 60, 400
	campaigns := []string{"a", "b", "c"}
	in := tinyRequests(campaigns, 0, pending+firings*perSlot)
	for range b.N {
		for _, v := range []struct {
			name  string
			below int
		}{{"coalesced", coalesceBelow}, {"uncoalesced", 0}} {
			now := t0
			cfg := Config{GlobalQPS: 10 * perSlot, Clock: func() time.Time { return now }}.withDefaults("bench")
			fn := newFn(cfg)
			fn.CoalesceBelow = v.below
			fn.Setup()
			sp, tp := newCodedState(), &fakeTimers{}
			released := 0
			emit := func(x recipient.Batch) { released += len(x.Recipients) }
			add := func(bs []recipient.Batch) {
				for _, x := range bs {
					if err := fn.ProcessElement(sp, tp, 0, x, emit); err != nil {
						b.Fatal(err)
					}
				}
			}
			start := time.Now()
			add(in[:pending])
			load := time.Since(start)
			entries := len(sp.bags["pending"]) + len(sp.bags["open"])

			var all, refill time.Duration
			refills, adds := 0, 0
			for i := range firings {
				if !tp.set {
					b.Fatal("no timer set")
				}
				tp.set = false
				now = tp.at
				reads, adds0, start := sp.reads, sp.adds, time.Now()
				if err := fn.OnTimer(context.Background(), sp, tp, 0, timers.Context{Family: "slot"}, emit); err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				all += d
				adds += sp.adds - adds0
				if sp.reads > reads {
					refill += d
					refills++
				}
				add(in[pending+i*perSlot : pending+(i+1)*perSlot])
			}
			if released != firings*perSlot {
				b.Fatalf("%s: released %d in %d firings, want %d", v.name, released, firings, firings*perSlot)
			}
			b.ReportMetric(float64(all.Nanoseconds())/firings, "ns/firing_"+v.name)
			if refills > 0 {
				b.ReportMetric(float64(refill.Nanoseconds())/float64(refills), "ns/refill_"+v.name)
			}
			if firings > refills {
				b.ReportMetric(float64((all-refill).Nanoseconds())/float64(firings-refills), "ns/plain_firing_"+v.name)
			}
			b.ReportMetric(float64(adds)/firings, "bagadds/firing_"+v.name)
			b.ReportMetric(float64(entries), "inbox_entries_"+v.name)
			b.ReportMetric(float64(load.Nanoseconds())/pending, "ns/element_"+v.name)
		}
	}
}
