package redisio_test

import (
	"context"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow/connectors/redisio"
)

func TestLedger(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c)
		const name = "dispatch/test"
		open := func() int64 {
			t.Helper()
			n, err := r.LedgerOpen(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		admit := func(es ...redisio.LedgerEntry) []bool {
			t.Helper()
			ok, err := r.LedgerAdmit(ctx, name, es)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		progress := func(cs ...redisio.LedgerChange) []string {
			t.Helper()
			done, err := r.LedgerProgress(ctx, name, cs)
			if err != nil {
				t.Fatal(err)
			}
			return done
		}

		// A list request: admitted with its units, final.
		if got := admit(redisio.LedgerEntry{Key: "r:a@t/0/1", Pool: "r:a", Value: []byte("a"), Units: 2, Final: true}); !slices.Equal(got, []bool{true}) {
			t.Fatalf("admit = %v, want [true]", got)
		}
		// The same record again (a re-read) is not admitted; a second copy
		// of the request (another record) joins its pool.
		if got := admit(redisio.LedgerEntry{Key: "r:a@t/0/1", Pool: "r:a", Units: 2, Final: true}, redisio.LedgerEntry{Key: "r:a@t/0/2", Pool: "r:a", Units: 1, Final: true}); !slices.Equal(got, []bool{false, true}) {
			t.Fatalf("admit again = %v, want [false true]", got)
		}
		if got := progress(redisio.LedgerChange{Key: "r:a", Delta: -2}); len(got) != 0 {
			t.Fatalf("settled %v with one unit open, want none", got)
		}
		if got := progress(redisio.LedgerChange{Key: "r:a", Delta: -1}); !slices.Equal(got, []string{"r:a"}) {
			t.Fatalf("settled %v, want [r:a]", got)
		}
		if n := open(); n != 0 {
			t.Fatalf("%d entries open after settling, want 0", n)
		}
		// Progress of a settled or unknown pool is ignored.
		if got := progress(redisio.LedgerChange{Key: "r:a", Delta: -1}, redisio.LedgerChange{Key: "r:nobody", Delta: 5, Final: true}); len(got) != 0 {
			t.Fatalf("settled %v of unknown pools, want none", got)
		}

		// A broadcast: units arrive with its expansion, and outputs may be
		// written before they are counted; it settles only once expanded.
		admit(redisio.LedgerEntry{Key: "r:b@t/0/3", Pool: "r:b", Value: []byte("b")})
		if got := progress(redisio.LedgerChange{Key: "r:b", Delta: -3}); len(got) != 0 {
			t.Fatalf("settled %v before the expansion ended", got)
		}
		if got := progress(redisio.LedgerChange{Key: "r:b", Delta: 3}); len(got) != 0 {
			t.Fatalf("settled %v before the expansion ended", got)
		}
		if got := progress(redisio.LedgerChange{Key: "r:b", Delta: 2, Final: true}); len(got) != 0 {
			t.Fatalf("settled %v with 2 units open", got)
		}

		// A new run replays it: reset, and the scan still sees it.
		var keys []string
		if err := r.LedgerScan(ctx, name, 10, func(k string, v []byte) error { keys = append(keys, k+"="+string(v)); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(keys, []string{"r:b@t/0/3=b"}) {
			t.Fatalf("scan = %v, want [r:b@t/0/3=b]", keys)
		}
		if err := r.LedgerReset(ctx, name, []redisio.LedgerPool{{Pool: "r:b", Expanding: 1, Keys: []string{"r:b@t/0/3"}}}, map[string][]byte{"r:b@t/0/3": []byte("b2")}); err != nil {
			t.Fatal(err)
		}
		progress(redisio.LedgerChange{Key: "r:b", Delta: 4, Final: true})
		if got := progress(redisio.LedgerChange{Key: "r:b", Delta: -4}); !slices.Equal(got, []string{"r:b"}) {
			t.Fatalf("settled %v after the replay, want [r:b]", got)
		}
		if n := open(); n != 0 {
			t.Fatalf("%d entries open, want 0", n)
		}
	})
}

func TestCountFrequencyOncePerToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c)
		count := func(es ...redisio.FrequencyCount) []int64 {
			t.Helper()
			got, err := r.CountFrequency(ctx, "com.example.news", "news", es)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		a := redisio.FrequencyCount{User: "u1", Day: "20261122", Token: "r-1@push.requests/0/1"}
		b := redisio.FrequencyCount{User: "u1", Day: "20261122", Token: "r-2@push.requests/0/2"}
		if got := count(a, b); !slices.Equal(got, []int64{1, 2}) {
			t.Fatalf("CountFrequency(r-1, r-2) = %v, want [1 2]", got)
		}
		// A replay of r-1 is not counted again and sees its first count; a
		// new request is counted after both.
		c3 := redisio.FrequencyCount{User: "u1", Day: "20261122", Token: "r-3@push.requests/0/3"}
		if got := count(a, c3, b); !slices.Equal(got, []int64{1, 3, 2}) {
			t.Fatalf("CountFrequency(replay r-1, r-3, replay r-2) = %v, want [1 3 2]", got)
		}
		// Another day, another counter.
		if got := count(redisio.FrequencyCount{User: "u1", Day: "20261123", Token: a.Token}); !slices.Equal(got, []int64{1}) {
			t.Fatalf("CountFrequency(next day) = %v, want [1]", got)
		}
	})
}
