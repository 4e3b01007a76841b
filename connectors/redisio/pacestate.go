package redisio

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fields of a pace backlog report (the hash pf:pace:<lane>:<shard>): one
// count per campaign under "c:<campaign>", and "t", the newest emission
// time (unix ns) among the batches the shard has received, with which a
// producer tells whether what it emitted last has reached the pacer yet.
const (
	paceCountPrefix = "c:"
	paceNewest      = "t"
)

// ReportBacklog replaces what shard of the paced lane reports as pending:
// recipients per campaign waiting in its pacing state. An empty map deletes
// the report. It is ReportBacklogAt without an emission time.
func (r *Registry) ReportBacklog(ctx context.Context, lane string, shard int, pending map[string]int64, ttl time.Duration) error {
	return r.ReportBacklogAt(ctx, lane, shard, pending, 0, ttl)
}

// ReportBacklogAt replaces shard's report with pending (recipients per
// campaign) and newest (the newest emission time, unix ns, of the batches
// it has received; 0 = unknown). A shard with nothing pending keeps only
// newest, which tells a producer that what it emitted has arrived (and,
// already, left); with neither, the report is deleted. The report expires
// after ttl, so the report of a shard whose pacer stopped firing (nothing
// pending, or the pipeline is gone) does not hold producers back forever.
// One round trip: DEL, HSET, PEXPIRE in a MULTI, so a reader never sees
// half a report.
func (r *Registry) ReportBacklogAt(ctx context.Context, lane string, shard int, pending map[string]int64, newest int64, ttl time.Duration) error {
	key := r.k.paceBacklog(lane, shard)
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		if len(pending) == 0 && newest <= 0 {
			return nil
		}
		fields := make([]any, 0, 2*len(pending)+2)
		for c, n := range pending {
			fields = append(fields, paceCountPrefix+c, n)
		}
		if newest > 0 {
			fields = append(fields, paceNewest, newest)
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
	n, _, err := r.BacklogAt(ctx, lane, campaign, shards)
	return n, err
}

// BacklogAt is Backlog and the newest emission time any of the shards has
// received (0 when none reported one).
func (r *Registry) BacklogAt(ctx context.Context, lane, campaign string, shards int) (pending, newest int64, err error) {
	return r.readBacklog(ctx, lane, shards, func(field string) bool { return field == paceCountPrefix+campaign })
}

// TotalBacklog returns the recipients of every campaign pending in the
// paced lane, and the newest emission time any shard has received. One
// pipelined round trip.
func (r *Registry) TotalBacklog(ctx context.Context, lane string, shards int) (pending, newest int64, err error) {
	return r.readBacklog(ctx, lane, shards, func(field string) bool { return strings.HasPrefix(field, paceCountPrefix) })
}

// readBacklog sums the count fields that count selects over the reports of
// shards 0 … shards-1, and takes the largest newest.
func (r *Registry) readBacklog(ctx context.Context, lane string, shards int, count func(field string) bool) (pending, newest int64, err error) {
	cmds := make([]*redis.MapStringStringCmd, max(shards, 1))
	pipe := r.c.Pipeline()
	for i := range cmds {
		cmds[i] = pipe.HGetAll(ctx, r.k.paceBacklog(lane, i))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, 0, fmt.Errorf("redisio: read backlog of %s: %w", lane, err)
	}
	for i, c := range cmds {
		for f, v := range c.Val() {
			if f != paceNewest && !count(f) {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("redisio: backlog of %s/%d: %s=%q: %w", lane, i, f, v, err)
			}
			if f == paceNewest {
				newest = max(newest, n)
			} else {
				pending += n
			}
		}
	}
	return pending, newest, nil
}
