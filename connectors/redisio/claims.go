package redisio

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ClaimEach is ClaimOwners with an owner per key: it claims keys[i] for
// owners[i] for the dedup TTL and returns, per key, the owner that holds the
// claim after the call. Keys are claimed in order, so when two entries name
// the same key the first one's owner wins, as it would over two ClaimOwners
// calls. One round trip for all the keys, whatever their owners: SET NX EX
// then GET, pipelined. It is how a sender claims the devices of many
// requests (each with its own Kafka record as owner) at once.
func (r *Registry) ClaimEach(ctx context.Context, keys, owners []string) ([]string, error) {
	if len(keys) != len(owners) {
		return nil, fmt.Errorf("redisio: claim %d dedup keys with %d owners, want one owner per key", len(keys), len(owners))
	}
	out := make([]string, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	gets := make([]*redis.StringCmd, len(keys))
	pipe := r.c.Pipeline()
	for i, k := range keys {
		pipe.SetNX(ctx, r.k.dedup(k), owners[i], r.dedupTTL)
		gets[i] = pipe.Get(ctx, r.k.dedup(k))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("redisio: claim %d dedup keys: %w", len(keys), err)
	}
	for i, g := range gets {
		out[i] = g.Val()
	}
	return out, nil
}

// RecordClaims overwrites the values of claims that exist (SET XX,
// keeping their TTL), in one round trip: how a sender records, next to its
// claim, the outcome it got, so that a replay of the same work finds the
// outcome instead of sending again. A claim that expired meanwhile stays
// gone.
func (r *Registry) RecordClaims(ctx context.Context, keys, values []string) error {
	if len(keys) != len(values) {
		return fmt.Errorf("redisio: record %d claims with %d values, want one value per key", len(keys), len(values))
	}
	if len(keys) == 0 {
		return nil
	}
	pipe := r.c.Pipeline()
	for i, k := range keys {
		pipe.SetArgs(ctx, r.k.dedup(k), values[i], redis.SetArgs{Mode: "XX", KeepTTL: true})
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("redisio: record %d claims: %w", len(keys), err)
	}
	return nil
}
