package redisio

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// IncrFrequency counts one more notification of category on day for each
// user and returns the counts after the increment. day is the caller's
// calendar day ("2026-11-22", usually in the user's time zone). Each counter
// lives for the frequency TTL (48h by default) from its first increment.
//
// Per user it pipelines SET key 0 EX ttl NX, then INCR key: the counter is
// created with its TTL in one atomic command, and INCR keeps the TTL, so no
// counter ever lives forever, even if the connection drops in between. One
// round trip for all users; duplicate users are counted once.
func (r *Registry) IncrFrequency(ctx context.Context, app, category, day string, users []string) (map[string]int64, error) {
	users = distinct(users)
	out := make(map[string]int64, len(users))
	if len(users) == 0 {
		return out, nil
	}
	cmds := make([]*redis.IntCmd, len(users))
	pipe := r.c.Pipeline()
	for i, u := range users {
		key := r.k.frequency(app, u, day, category)
		pipe.SetNX(ctx, key, 0, r.freqTTL)
		cmds[i] = pipe.Incr(ctx, key)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisio: count %s/%s on %s for %d users: %w", app, category, day, len(users), err)
	}
	for i, u := range users {
		out[u] = cmds[i].Val()
	}
	return out, nil
}

// InterestScores returns each user's interest score in category. Users
// without a score are absent (the filter decides what that means).
func (r *Registry) InterestScores(ctx context.Context, app, category string, users []string) (map[string]float64, error) {
	users = distinct(users)
	out := make(map[string]float64, len(users))
	if len(users) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(users))
	pipe := r.c.Pipeline()
	for i, u := range users {
		cmds[i] = pipe.HGet(ctx, r.k.userInterest(app, u), category)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisio: %s interest of %d users of %s: %w", category, len(users), app, err)
	}
	for i, u := range users {
		v, err := cmds[i].Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("redisio: %s interest of %s/%s: %w", category, app, u, err)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("redisio: %s interest of %s/%s: %w", category, app, u, err)
		}
		out[u] = f
	}
	return out, nil
}

// SetInterestScores stores scores (user → category → score), overwriting
// the given categories and keeping the others, in one round trip.
func (r *Registry) SetInterestScores(ctx context.Context, app string, scores map[string]map[string]float64) error {
	pipe := r.c.Pipeline()
	n := 0
	for u, byCat := range scores {
		if len(byCat) == 0 {
			continue
		}
		args := make([]any, 0, 2*len(byCat))
		for cat, s := range byCat {
			args = append(args, cat, strconv.FormatFloat(s, 'g', -1, 64))
		}
		pipe.HSet(ctx, r.k.userInterest(app, u), args...)
		n++
	}
	if n == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisio: set interest of %d users of %s: %w", n, app, err)
	}
	return nil
}
