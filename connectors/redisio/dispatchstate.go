package redisio

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// AppKnown reports whether any device was ever registered for app and the
// app still has a user with a device. Dispatch dead-letters requests for
// unknown apps: they are almost always a typo upstream.
func (r *Registry) AppKnown(ctx context.Context, app string) (bool, error) {
	n, err := r.c.Exists(ctx, r.k.users(app)).Result()
	if err != nil {
		return false, fmt.Errorf("redisio: app %s: %w", app, err)
	}
	return n > 0, nil
}

// UserTags returns each user's tags as a set, in one round trip. Users
// without tags are absent.
func (r *Registry) UserTags(ctx context.Context, app string, users []string) (map[string]map[string]bool, error) {
	users = distinct(users)
	out := make(map[string]map[string]bool, len(users))
	if len(users) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(users))
	pipe := r.c.Pipeline()
	for i, u := range users {
		cmds[i] = pipe.SMembers(ctx, r.k.userTags(app, u))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisio: tags of %d users: %w", len(users), err)
	}
	for i, c := range cmds {
		if tags := c.Val(); len(tags) > 0 {
			set := make(map[string]bool, len(tags))
			for _, t := range tags {
				set[t] = true
			}
			out[users[i]] = set
		}
	}
	return out, nil
}

// ClaimOwners claims each key for owner for the dedup TTL and returns, per
// key, the owner that holds the claim after the call: owner itself when this
// call made the claim or owner had made it before (a replay), another owner
// when someone else claimed it first. One round trip: SET NX EX then GET,
// pipelined.
func (r *Registry) ClaimOwners(ctx context.Context, keys []string, owner string) ([]string, error) {
	owners := make([]string, len(keys))
	for i := range owners {
		owners[i] = owner
	}
	return r.ClaimEach(ctx, keys, owners)
}
