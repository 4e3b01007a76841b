package pace

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAllocate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		budget  int
		demand  map[string]int
		ceiling map[string]int
		rot     int
		want    map[string]int
	}{
		{name: "no demand", budget: 100, want: map[string]int{}},
		{name: "no budget", budget: 0, demand: map[string]int{"a": 5}, want: map[string]int{}},
		{name: "negative budget", budget: -3, demand: map[string]int{"a": 5}, want: map[string]int{}},
		{name: "one under budget", budget: 100, demand: map[string]int{"a": 7}, want: map[string]int{"a": 7}},
		{name: "one over budget", budget: 100, demand: map[string]int{"a": 700}, want: map[string]int{"a": 100}},
		{name: "one capped by ceiling", budget: 100, demand: map[string]int{"a": 700}, ceiling: map[string]int{"a": 50},
			want: map[string]int{"a": 50}},
		{name: "equal split", budget: 90, demand: map[string]int{"a": 100, "b": 100, "c": 100},
			want: map[string]int{"a": 30, "b": 30, "c": 30}},
		{name: "remainder to a at rot 0", budget: 100, demand: map[string]int{"a": 100, "b": 100, "c": 100},
			want: map[string]int{"a": 34, "b": 33, "c": 33}},
		{name: "remainder to b at rot 1", budget: 100, demand: map[string]int{"a": 100, "b": 100, "c": 100}, rot: 1,
			want: map[string]int{"a": 33, "b": 34, "c": 33}},
		{name: "remainder wraps at rot 2", budget: 101, demand: map[string]int{"a": 100, "b": 100, "c": 100}, rot: 2,
			want: map[string]int{"a": 34, "b": 33, "c": 34}},
		{name: "negative rot", budget: 100, demand: map[string]int{"a": 100, "b": 100, "c": 100}, rot: -1,
			want: map[string]int{"a": 33, "b": 33, "c": 34}},
		{name: "small demand redistributed", budget: 100, demand: map[string]int{"a": 10, "b": 1000, "c": 1000},
			want: map[string]int{"a": 10, "b": 45, "c": 45}},
		{name: "ceiling redistributed", budget: 100, demand: map[string]int{"a": 1000, "b": 1000, "c": 1000},
			ceiling: map[string]int{"a": 20}, want: map[string]int{"a": 20, "b": 40, "c": 40}},
		{name: "several rounds", budget: 10, demand: map[string]int{"a": 1, "b": 2, "c": 100, "d": 100},
			want: map[string]int{"a": 1, "b": 2, "c": 4, "d": 3}},
		{name: "capped demand below budget", budget: 100, demand: map[string]int{"a": 10, "b": 1000},
			ceiling: map[string]int{"b": 30}, want: map[string]int{"a": 10, "b": 30}},
		{name: "zero ceiling this slot", budget: 100, demand: map[string]int{"a": 100, "b": 100},
			ceiling: map[string]int{"a": 0}, want: map[string]int{"b": 100}},
		{name: "zero and negative demand ignored", budget: 10, demand: map[string]int{"a": 0, "b": -4, "c": 3},
			want: map[string]int{"c": 3}},
		{name: "ceiling of a campaign without demand", budget: 10, demand: map[string]int{"a": 30},
			ceiling: map[string]int{"z": 1}, want: map[string]int{"a": 10}},
		{name: "unlimited budget", budget: math.MaxInt, demand: map[string]int{"a": 3, "b": 1 << 40},
			ceiling: map[string]int{"a": 2}, want: map[string]int{"a": 2, "b": 1 << 40}},
		{name: "campaign without name", budget: 9, demand: map[string]int{"": 10, "x": 10},
			want: map[string]int{"": 5, "x": 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Allocate(tc.budget, tc.demand, tc.ceiling, tc.rot)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Allocate(%d, %v, %v, %d) mismatch (-want +got):\n%s", tc.budget, tc.demand, tc.ceiling, tc.rot, diff)
			}
		})
	}
}

// checkAllocation checks the properties Allocate promises, and returns the
// first violated one.
func checkAllocation(budget int, demand, ceiling map[string]int, rot int, got map[string]int) error {
	capOf := func(c string) int {
		d := max(demand[c], 0)
		if ceil, ok := ceiling[c]; ok {
			d = min(d, max(ceil, 0))
		}
		return d
	}
	total, capped := 0, 0
	for c := range demand {
		capped += capOf(c)
	}
	for c, a := range got {
		if a <= 0 {
			return fmt.Errorf("campaign %q allocated %d, want absent or > 0", c, a)
		}
		if a > capOf(c) {
			return fmt.Errorf("campaign %q allocated %d > min(demand %d, ceiling %v)", c, a, demand[c], ceiling[c])
		}
		total += a
	}
	if total > max(budget, 0) {
		return fmt.Errorf("allocated %d > budget %d", total, budget)
	}
	// Work-conserving: all of the budget, or everyone's cap.
	if want := min(max(budget, 0), capped); total != want {
		return fmt.Errorf("allocated %d, want min(budget %d, capped demand %d) = %d", total, budget, capped, want)
	}
	// Max-min fair: a campaign that got less than its cap got at most one
	// less than anyone else. (So equal demands get equal shares ±1.)
	for x, ax := range got {
		if ax >= capOf(x) {
			continue
		}
		for y, ay := range got {
			if ay > ax+1 {
				return fmt.Errorf("campaign %q got %d < its cap %d while %q got %d", x, ax, capOf(x), y, ay)
			}
		}
	}
	for c := range demand {
		if _, ok := got[c]; !ok && capOf(c) > 0 && total < budget {
			return fmt.Errorf("campaign %q with cap %d got nothing while budget was left", c, capOf(c))
		}
	}
	// Deterministic: same inputs, same answer (map order must not matter).
	if again := Allocate(budget, maps.Clone(demand), maps.Clone(ceiling), rot); !maps.Equal(again, got) {
		return fmt.Errorf("second call returned %v, first %v", again, got)
	}
	return nil
}

func randomInput(r *rand.Rand) (budget int, demand, ceiling map[string]int, rot int) {
	n := r.IntN(12)
	demand, ceiling = map[string]int{}, map[string]int{}
	for i := range n {
		c := fmt.Sprintf("c%02d", i)
		switch r.IntN(4) {
		case 0:
			demand[c] = r.IntN(5) // tiny, often 0
		default:
			demand[c] = r.IntN(2000)
		}
		if r.IntN(2) == 0 {
			ceiling[c] = r.IntN(400) - 10 // sometimes ≤ 0
		}
	}
	budget = r.IntN(3000) - 5
	if r.IntN(20) == 0 {
		budget = math.MaxInt
	}
	return budget, demand, ceiling, r.IntN(100) - 10
}

func TestAllocateProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		budget, demand, ceiling, rot := randomInput(r)
		got := Allocate(budget, demand, ceiling, rot)
		if err := checkAllocation(budget, demand, ceiling, rot, got); err != nil {
			t.Fatalf("case %d: Allocate(%d, %v, %v, %d) = %v: %v", i, budget, demand, ceiling, rot, got, err)
		}
	}
}

// TestAllocateRotation checks that, over n consecutive slots, n campaigns
// with equal demand get exactly equal totals: the remainder rotates.
func TestAllocateRotation(t *testing.T) {
	demand := map[string]int{"a": 1000, "b": 1000, "c": 1000, "d": 1000}
	for budget := range 40 {
		totals := map[string]int{}
		for slot := range 4 {
			for c, a := range Allocate(budget, demand, nil, slot+7) {
				totals[c] += a
			}
		}
		for c, got := range totals {
			if got != budget {
				t.Errorf("budget %d: %s got %d over 4 slots, want %d", budget, c, got, budget)
			}
		}
	}
}

func FuzzAllocate(f *testing.F) {
	f.Add(100, []byte{10, 200, 200}, []byte{0, 255, 20}, 0)
	f.Add(7, []byte{1, 1, 1, 1, 1, 1, 1, 1}, []byte{}, 3)
	f.Add(0, []byte{}, []byte{}, 0)
	f.Fuzz(func(t *testing.T, budget int, ds, cs []byte, rot int) {
		budget %= 1 << 20
		demand, ceiling := map[string]int{}, map[string]int{}
		for i, d := range ds {
			demand[fmt.Sprint("c", i)] = int(d) * 7
		}
		for i, c := range cs {
			if c != 255 { // 255 = no ceiling
				ceiling[fmt.Sprint("c", i)] = int(c) - 3
			}
		}
		got := Allocate(budget, demand, ceiling, rot)
		if err := checkAllocation(budget, demand, ceiling, rot, got); err != nil {
			t.Fatalf("Allocate(%d, %v, %v, %d) = %v: %v", budget, demand, ceiling, rot, got, err)
		}
	})
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		qps    int
		slot   time.Duration
		shards int
	}{
		{1000, 50 * time.Millisecond, 1},
		{1000, 100 * time.Millisecond, 16},
		{2000, 50 * time.Millisecond, 3},
		{7, 100 * time.Millisecond, 4},
		{1, time.Millisecond, 64},
		{1_000_000, time.Second, 1},
		{150_000, 37 * time.Millisecond, 7},
	} {
		t.Run(fmt.Sprint(tc.qps, "/", tc.slot, "/", tc.shards), func(t *testing.T) {
			r, ok := newRate(tc.qps, tc.slot, tc.shards)
			if !ok {
				t.Fatal("newRate() ok = false, want true")
			}
			exact := func(n int64) float64 {
				return float64(n) * float64(tc.qps) * tc.slot.Seconds() / float64(tc.shards)
			}
			prev := int64(0)
			for _, n := range []int64{0, 1, 2, 3, 10, 16, 17, 1000, 1_000_003, 10_000_000_000} {
				u := r.units(n)
				if e := exact(n); float64(u) > e*(1+1e-12) || float64(u) < e*(1-1e-12)-1 {
					t.Errorf("units(%d) = %d, want floor(%g)", n, u, e)
				}
				if u < prev {
					t.Errorf("units(%d) = %d < units of a smaller n %d", n, u, prev)
				}
				prev = u
			}
			// Per-slot units never exceed ceil(per-slot rate).
			per := exact(1)
			for n := int64(0); n < 200; n++ {
				if b := r.between(n-1, n); float64(b) > math.Ceil(per) {
					t.Errorf("between(%d, %d) = %d > ceil(%g)", n-1, n, b, per)
				}
			}
		})
	}
	if _, ok := newRate(0, time.Second, 1); ok {
		t.Error("newRate(0, ...) ok = true, want false (no limit)")
	}
}

// TestRateShardsSumToGlobal checks the documented division: over a second,
// Shards keys release GlobalQPS between them (± one unit per shard).
func TestRateShardsSumToGlobal(t *testing.T) {
	for _, shards := range []int{1, 2, 3, 7, 16, 64} {
		r, _ := newRate(1000, 100*time.Millisecond, shards)
		total := int64(0)
		for range shards {
			total += r.units(10) // 10 slots of 100 ms = 1 s
		}
		if total > 1000 || total < 1000-int64(shards) {
			t.Errorf("%d shards release %d in 1 s at 1000/s, want 1000 (−%d at most)", shards, total, shards)
		}
	}
}

func TestAllocateIgnoresInputOrder(t *testing.T) {
	names := []string{"z", "m", "a", "q", "b"}
	want := Allocate(17, map[string]int{"z": 9, "m": 9, "a": 9, "q": 9, "b": 2}, nil, 3)
	for range 20 {
		d := map[string]int{}
		slices.Reverse(names)
		for _, n := range names {
			d[n] = 9
		}
		d["b"] = 2
		if got := Allocate(17, d, nil, 3); !maps.Equal(got, want) {
			t.Fatalf("Allocate differs with map order: %v vs %v", got, want)
		}
	}
}
