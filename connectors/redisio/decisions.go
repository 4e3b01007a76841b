package redisio

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/redis/go-redis/v9"
)

// Recorded filter decisions: for the work named by a scope (a request and
// the Kafka record it was read from), each user's decision, so that a
// replay of that work decides the same way even where a rule depends on
// the time (quiet hours) or on state that moved on. One hash per scope and
// shard of users, living for the dedup TTL:
//
//	fd:{<scope>}:<shard>   user → decision (the caller's encoding)

const decisionShards = 16

func (k keys) decisions(scope string, shard uint32) string {
	return fmt.Sprintf("%sfd:{%s}:%d", k.prefix, esc(scope), shard)
}

func decisionShard(user string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(user))
	return h.Sum32() % decisionShards
}

// RecordDecisions stores decisions (scope → user → decision) in one round
// trip: one HSET per scope and shard, each key kept for the dedup TTL.
func (r *Registry) RecordDecisions(ctx context.Context, decisions map[string]map[string]string) error {
	pipe := r.c.Pipeline()
	n := 0
	for scope, byUser := range decisions {
		fields := map[uint32][]any{}
		for u, d := range byUser {
			s := decisionShard(u)
			fields[s] = append(fields[s], u, d)
		}
		for s, f := range fields {
			key := r.k.decisions(scope, s)
			pipe.HSet(ctx, key, f...)
			pipe.Expire(ctx, key, r.dedupTTL)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisio: record decisions of %d scopes: %w", len(decisions), err)
	}
	return nil
}

// RecordedDecisions returns the recorded decisions of users (scope → users
// → decision); users without one are absent. One round trip.
func (r *Registry) RecordedDecisions(ctx context.Context, users map[string][]string) (map[string]map[string]string, error) {
	type read struct {
		scope string
		users []string
		cmd   *redis.SliceCmd
	}
	var reads []read
	pipe := r.c.Pipeline()
	for scope, us := range users {
		byShard := map[uint32][]string{}
		for _, u := range us {
			s := decisionShard(u)
			byShard[s] = append(byShard[s], u)
		}
		for s, group := range byShard {
			reads = append(reads, read{scope, group, pipe.HMGet(ctx, r.k.decisions(scope, s), group...)})
		}
	}
	out := map[string]map[string]string{}
	if len(reads) == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisio: read decisions of %d scopes: %w", len(users), err)
	}
	for _, rd := range reads {
		for i, v := range rd.cmd.Val() {
			s, ok := v.(string)
			if !ok {
				continue
			}
			if out[rd.scope] == nil {
				out[rd.scope] = map[string]string{}
			}
			out[rd.scope][rd.users[i]] = s
		}
	}
	return out, nil
}
