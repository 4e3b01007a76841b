package redisio

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

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

// FrequencyCount is one notification to count against a user's frequency
// cap: on Day (the user's local calendar day, "20261122"), for the work
// named Token (e.g. a request and its Kafka record), which is counted once
// however often it is replayed.
type FrequencyCount struct {
	User, Day, Token string
}

// scriptFrequencyOnce counts one notification of a token once.
//
//	KEYS[1] the counter, KEYS[2] the token's marker (same user, same slot)
//	ARGV    ttl seconds
//	returns the count this token got when it was first counted
const scriptFrequencyOnce = `
local m = redis.call('GET', KEYS[2])
if m then return tonumber(m) end
redis.call('SET', KEYS[1], 0, 'NX', 'EX', ARGV[1])
local c = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], c, 'EX', ARGV[1])
return c
`

// CountFrequency counts each entry against its user's counter of category
// on its day, in order, in one round trip, and returns the count each got.
// An entry whose token was counted before (a replay) is not counted again
// and gets the count it got then, so a replayed decision is the same
// decision. Counters and markers live for the frequency TTL.
func (r *Registry) CountFrequency(ctx context.Context, app, category string, entries []FrequencyCount) ([]int64, error) {
	out := make([]int64, len(entries))
	if len(entries) == 0 {
		return out, nil
	}
	ttl := int64(r.freqTTL / time.Second)
	cmds := make([]*redis.Cmd, len(entries))
	pipe := r.c.Pipeline()
	for i, e := range entries {
		key := r.k.frequency(app, e.User, e.Day, category)
		cmds[i] = pipe.Eval(ctx, scriptFrequencyOnce, []string{key, key + ":t:" + esc(e.Token)}, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisio: count %s/%s for %d users: %w", app, category, len(entries), err)
	}
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, fmt.Errorf("redisio: count %s/%s for %s: %w", app, category, entries[i].User, err)
		}
		out[i] = n
	}
	return out, nil
}
