package redisio_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow/connectors/redisio"
)

func TestBacklogReports(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c)
		backlog := func(campaign string, shards int) int64 {
			t.Helper()
			n, err := r.Backlog(ctx, "paced", campaign, shards)
			if err != nil {
				t.Fatalf("Backlog(%q, %d): %v", campaign, shards, err)
			}
			return n
		}
		if got := backlog("spring", 4); got != 0 {
			t.Errorf("Backlog before any report = %d, want 0", got)
		}
		report := func(shard int, pending map[string]int64, ttl time.Duration) {
			t.Helper()
			if err := r.ReportBacklog(ctx, "paced", shard, pending, ttl); err != nil {
				t.Fatalf("ReportBacklog(%d, %v): %v", shard, pending, err)
			}
		}
		report(0, map[string]int64{"spring": 100, "": 7, "a:b{c}": 3}, time.Minute)
		report(2, map[string]int64{"spring": 50}, time.Minute)
		report(5, map[string]int64{"spring": 1000}, time.Minute) // beyond the shards asked for
		for _, tc := range []struct {
			campaign string
			shards   int
			want     int64
		}{
			{"spring", 4, 150},
			{"spring", 1, 100},
			{"spring", 6, 1150},
			{"", 4, 7},
			{"a:b{c}", 4, 3},
			{"autumn", 4, 0},
		} {
			if got := backlog(tc.campaign, tc.shards); got != tc.want {
				t.Errorf("Backlog(%q, %d) = %d, want %d", tc.campaign, tc.shards, got, tc.want)
			}
		}
		total, newest, err := r.TotalBacklog(ctx, "paced", 4)
		if err != nil || total != 100+7+3+50 || newest != 0 {
			t.Errorf("TotalBacklog(4) = %d, %d, %v; want %d (every campaign of shards 0-3) and no newest", total, newest, err, 100+7+3+50)
		}
		// The newest emission time is the largest any shard reports.
		if err := r.ReportBacklogAt(ctx, "paced", 3, map[string]int64{"t": 1}, 2000, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := r.ReportBacklogAt(ctx, "paced", 4, map[string]int64{"spring": 1}, 1000, time.Minute); err != nil {
			t.Fatal(err)
		}
		if n, at, err := r.BacklogAt(ctx, "paced", "spring", 5); err != nil || n != 151 || at != 2000 {
			t.Errorf("BacklogAt(spring, 5) = %d, %d, %v; want 151, 2000", n, at, err)
		}
		if n, _, _ := r.BacklogAt(ctx, "paced", "t", 5); n != 1 {
			t.Errorf("BacklogAt(t) = %d, want 1: a campaign named like the newest field is still a campaign", n)
		}
		// A drained shard keeps its newest: what it received has arrived.
		if err := r.ReportBacklogAt(ctx, "paced", 3, nil, 3000, time.Minute); err != nil {
			t.Fatal(err)
		}
		if n, at, err := r.BacklogAt(ctx, "paced", "t", 5); err != nil || n != 0 || at != 3000 {
			t.Errorf("BacklogAt after shard 3 drained = %d, %d, %v; want 0, 3000", n, at, err)
		}
		report(3, nil, time.Minute)
		report(4, nil, time.Minute)
		// A report replaces the shard's previous one as a whole.
		report(0, map[string]int64{"spring": 10}, time.Minute)
		if got, want := backlog("", 4), int64(0); got != want {
			t.Errorf("Backlog(\"\") after shard 0 reported without it = %d, want %d", got, want)
		}
		if got, want := backlog("spring", 4), int64(60); got != want {
			t.Errorf("Backlog(spring) after shard 0 reported 10 = %d, want %d", got, want)
		}
		// An empty report deletes it.
		report(2, nil, time.Minute)
		if got, want := backlog("spring", 4), int64(10); got != want {
			t.Errorf("Backlog(spring) after shard 2 reported nothing = %d, want %d", got, want)
		}
		// A report expires: a pacer that stopped firing holds nothing back.
		report(1, map[string]int64{"spring": 5}, 50*time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for backlog("spring", 4) != 10 {
			if time.Now().After(deadline) {
				t.Fatalf("shard 1's report did not expire: Backlog(spring) = %d, want 10", backlog("spring", 4))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
