package redisio_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
)

func TestClaimEach(t *testing.T) {
	const a, b = "push.requests/0/7", "push.requests/1/9"
	calls := []struct {
		name   string
		keys   []string
		owners []string
		want   []string
	}{
		{"two owners", []string{"r-1/d1", "r-1/d2", "r-2/d1"}, []string{a, a, b}, []string{a, a, b}},
		// A replay of the same records keeps their claims, also for a key
		// not claimed before.
		{"replay", []string{"r-1/d1", "r-2/d1", "r-1/d3"}, []string{a, b, a}, []string{a, b, a}},
		// Another record finds the claims taken, whoever asks.
		{"duplicate", []string{"r-1/d1", "r-2/d1", "r-3/d1"}, []string{b, a, b}, []string{a, b, b}},
		// The same key twice in one call: the first entry's owner wins, as
		// over two calls in that order.
		{"same key twice", []string{"r-4/d1", "r-4/d1"}, []string{b, a}, []string{b, b}},
		{"no keys", nil, nil, []string{}},
	}
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c, redisio.WithDedupTTL(time.Hour))
		for _, cl := range calls {
			got, err := r.ClaimEach(ctx, cl.keys, cl.owners)
			if err != nil {
				t.Fatalf("%s: ClaimEach(%v, %v) = %v", cl.name, cl.keys, cl.owners, err)
			}
			if diff := cmp.Diff(cl.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: ClaimEach(%v, %v) (-want +got):\n%s", cl.name, cl.keys, cl.owners, diff)
			}
		}
		// ClaimOwners and ClaimEach share the claims.
		got, err := r.ClaimOwners(ctx, []string{"r-1/d1", "r-1/d9"}, b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{a, b}, got); diff != "" {
			t.Errorf("ClaimOwners after ClaimEach (-want +got):\n%s", diff)
		}
		ttl, err := c.TTL(ctx, "pf:dedup:r-2/d1").Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("TTL(pf:dedup:r-2/d1) = %v, %v, want (59m, 1h]", ttl, err)
		}
	})
}

func TestClaimEachMismatchedOwners(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer c.Close()
	r := redisio.New(c)
	if got, err := r.ClaimEach(context.Background(), []string{"r-1/d1", "r-1/d2"}, []string{"src"}); err == nil {
		t.Errorf("ClaimEach(2 keys, 1 owner) = %v, nil, want an error", got)
	}
}

// TestClaimEachOneRoundTrip checks the keys of many owners are claimed in
// one pipeline on redis-server.
func TestClaimEachOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer c.Close()
	h := &countHook{}
	c.AddHook(h)
	r := redisio.New(c)
	// Warm the pool up: a new connection runs its handshake through the hook.
	for range 2 {
		if _, err := r.ClaimEach(ctx, []string{"warm"}, []string{"src"}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 500
	keys, owners := make([]string, n), make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("r-%d/d%d", i%50, i/50)
		owners[i] = fmt.Sprintf("push.requests/0/%d", i%50%7)
	}
	h.n.Store(0)
	got, err := r.ClaimEach(ctx, keys, owners)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Errorf("ClaimEach(%d keys) returned %d owners", n, len(got))
	}
	if rt := h.n.Load(); rt != 1 {
		t.Errorf("ClaimEach(%d keys of 7 owners) took %d round trips, want 1", n, rt)
	}
}
