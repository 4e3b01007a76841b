package redisio

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReportBacklog replaces what shard of the paced lane reports as pending:
// recipients per campaign waiting in its pacing state. An empty map deletes
// the report. The report expires after ttl, so the report of a shard whose
// pacer stopped firing (nothing pending, or the pipeline is gone) does not
// hold expansions back forever. One round trip: DEL, HSET, PEXPIRE in a
// MULTI, so a reader never sees half a report.
func (r *Registry) ReportBacklog(ctx context.Context, lane string, shard int, pending map[string]int64, ttl time.Duration) error {
	key := r.k.paceBacklog(lane, shard)
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		if len(pending) == 0 {
			return nil
		}
		fields := make([]any, 0, 2*len(pending))
		for c, n := range pending {
			fields = append(fields, c, n)
		}
		p.HSet(ctx, key, fields...)
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisio: report backlog of %s/%d: %w", lane, shard, err)
	}
	return nil
}

// Backlog returns the recipients of campaign pending in the paced lane: the
// sum of the reports of shards 0 … shards-1 (a shard without a report
// counts 0). One pipelined round trip.
func (r *Registry) Backlog(ctx context.Context, lane, campaign string, shards int) (int64, error) {
	cmds := make([]*redis.StringCmd, max(shards, 1))
	pipe := r.c.Pipeline()
	for i := range cmds {
		cmds[i] = pipe.HGet(ctx, r.k.paceBacklog(lane, i), campaign)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("redisio: read backlog of %s: %w", lane, err)
	}
	var sum int64
	for i, c := range cmds {
		if c.Err() == redis.Nil {
			continue
		}
		n, err := strconv.ParseInt(c.Val(), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("redisio: backlog of %s/%d: %q: %w", lane, i, c.Val(), err)
		}
		sum += n
	}
	return sum, nil
}

// TotalBacklog returns the recipients of every campaign pending in the
// paced lane: the sum of all fields of the reports of shards 0 …
// shards-1. One pipelined round trip.
func (r *Registry) TotalBacklog(ctx context.Context, lane string, shards int) (int64, error) {
	cmds := make([]*redis.StringSliceCmd, max(shards, 1))
	pipe := r.c.Pipeline()
	for i := range cmds {
		cmds[i] = pipe.HVals(ctx, r.k.paceBacklog(lane, i))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("redisio: read backlog of %s: %w", lane, err)
	}
	var sum int64
	for i, c := range cmds {
		for _, v := range c.Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("redisio: backlog of %s/%d: %q: %w", lane, i, v, err)
			}
			sum += n
		}
	}
	return sum, nil
}
