package pace

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// Allocate splits one slot's budget among campaigns: the even-allocation
// strategy of the campaign seed. It is pure and deterministic.
//
// Every campaign with pending demand (> 0) starts with an equal share of the
// budget, capped by its cap: min(demand, ceiling). What a campaign cannot use
// is redistributed evenly among the others, round after round, until the
// budget or the capped demand is exhausted. So:
//
//   - the result never exceeds budget in total, nor any campaign's demand or
//     ceiling;
//   - it is work-conserving: when the capped demands sum to at least budget,
//     all of budget is allocated; otherwise every campaign gets its cap;
//   - campaigns that are not capped get equal shares, ±1.
//
// A campaign missing from ceiling has no ceiling; a present ceiling ≤ 0 means
// "nothing this slot" (a slow campaign's slot can round down to 0). A
// budget < 0 is treated as 0; use math.MaxInt for "no budget limit".
//
// The integer remainder (fewer units than campaigns still wanting more) goes
// one unit each to the campaigns in sorted-name order, starting at index
// rot mod n, so that callers passing a slot counter as rot rotate the extra
// unit among campaigns instead of always favouring the first name.
//
// Campaigns with no allocation are absent from the result.
func Allocate(budget int, demand, ceiling map[string]int, rot int) map[string]int {
	caps := make(map[string]int, len(demand))
	active := make([]string, 0, len(demand))
	for c, d := range demand {
		if d <= 0 {
			continue
		}
		if ceil, ok := ceiling[c]; ok {
			d = min(d, max(ceil, 0))
		}
		if d > 0 {
			caps[c] = d
			active = append(active, c)
		}
	}
	slices.Sort(active)
	alloc := make(map[string]int, len(active))
	remaining := max(budget, 0)
	for remaining > 0 && len(active) > 0 {
		share := remaining / len(active)
		if share == 0 {
			// remaining < len(active), and each active campaign can take
			// at least one more unit: hand them out one each, rotating.
			start := rot % len(active)
			if start < 0 {
				start += len(active)
			}
			for i := range remaining {
				alloc[active[(start+i)%len(active)]]++
			}
			break
		}
		next := active[:0]
		for _, c := range active {
			give := min(share, caps[c]-alloc[c])
			alloc[c] += give
			remaining -= give
			if alloc[c] < caps[c] {
				next = append(next, c)
			}
		}
		active = next
	}
	return alloc
}

// unlimited is the budget Allocate gets when no rate applies.
const unlimited = math.MaxInt

// rate turns "qps per second, split over shards" into whole units per slot
// without drift: units(n) is how many units slots [0, n) may release in
// total, floor(n · qps · slot / (shards · 1s)), so the units of slots
// (a, b] are units(b+1) − units(a+1) and fractional per-slot rates (e.g.
// 1000/s over 16 shards in 100 ms slots = 6.25 per slot) even out exactly
// over time, and never run ahead of qps.
type rate struct {
	num, den uint64 // units per slot = num/den, reduced
}

// newRate returns the per-shard rate of qps units per second in slots of
// slot, or ok=false when qps ≤ 0 (no limit).
func newRate(qps int, slot time.Duration, shards int) (r rate, ok bool) {
	if qps <= 0 {
		return rate{}, false
	}
	num, den := uint64(qps), uint64(shards)*uint64(time.Second)
	// num·slot may exceed 64 bits only for absurd configs; reduce first.
	s := uint64(slot)
	g1 := gcd(num, den)
	num, den = num/g1, den/g1
	g2 := gcd(s, den)
	s, den = s/g2, den/g2
	hi, lo := bits.Mul64(num, s)
	if hi != 0 {
		panic("pace: qps × slot overflows")
	}
	return rate{num: lo, den: den}, true
}

// units returns floor(n · num / den) for n ≥ 0.
func (r rate) units(n int64) int64 {
	if n <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(n), r.num)
	if hi >= r.den {
		return math.MaxInt64 // beyond any realistic run; saturate
	}
	q, _ := bits.Div64(hi, lo, r.den)
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// between returns the units of slots (last, cur]: units(cur+1) − units(last+1),
// clamped to int.
func (r rate) between(last, cur int64) int {
	d := r.units(cur+1) - r.units(last+1)
	if d > math.MaxInt {
		return math.MaxInt
	}
	return int(max(d, 0))
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
