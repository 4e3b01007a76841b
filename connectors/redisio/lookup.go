package redisio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/redis/go-redis/v9"
)

// Every lookup sends one command per distinct element in one pipeline: one
// round trip for the whole slice. Elements with nothing stored are absent
// from the returned map. Callers bound the slice (a bundle's worth).

// UserDevices returns the devices of each user, sorted by device id. Users
// without devices are absent.
func (r *Registry) UserDevices(ctx context.Context, app string, users []string) (map[string][]Device, error) {
	users = distinct(users)
	out := make(map[string][]Device, len(users))
	if len(users) == 0 {
		return out, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(users))
	pipe := r.c.Pipeline()
	for i, u := range users {
		cmds[i] = pipe.HGetAll(ctx, r.k.userDevices(app, u))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisio: devices of %d users of %s: %w", len(users), app, err)
	}
	for i, u := range users {
		m := cmds[i].Val()
		if len(m) == 0 {
			continue
		}
		devs := make([]Device, 0, len(m))
		for id, v := range m {
			d, err := decodeDevice(id, u, v)
			if err != nil {
				return nil, fmt.Errorf("redisio: devices of %s/%s: %w", app, u, err)
			}
			devs = append(devs, d)
		}
		slices.SortFunc(devs, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
		out[u] = devs
	}
	return out, nil
}

func decodeDevice(id, user, v string) (Device, error) {
	j, err := decodeDeviceJSON(v)
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	t, err := parseTime(j.UpdatedAt)
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	return Device{ID: id, UserID: user, Token: j.Token, Platform: j.Platform, Topic: j.Topic, UpdatedAt: t}, nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// Devices returns the registered devices among deviceIDs, with their users.
// Unknown devices, and devices whose token was removed, are absent.
func (r *Registry) Devices(ctx context.Context, app string, deviceIDs []string) (map[string]Device, error) {
	deviceIDs = distinct(deviceIDs)
	out := make(map[string]Device, len(deviceIDs))
	if len(deviceIDs) == 0 {
		return out, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(deviceIDs))
	pipe := r.c.Pipeline()
	for i, id := range deviceIDs {
		cmds[i] = pipe.HGetAll(ctx, r.k.device(app, id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisio: %d devices of %s: %w", len(deviceIDs), app, err)
	}
	for i, id := range deviceIDs {
		m := cmds[i].Val()
		if m["user"] == "" || m["token"] == "" {
			continue
		}
		t, err := parseTime(m["updated_at"])
		if err != nil {
			return nil, fmt.Errorf("redisio: device %s/%s: %w", app, id, err)
		}
		out[id] = Device{ID: id, UserID: m["user"], Token: m["token"], Platform: m["platform"], Topic: m["topic"], UpdatedAt: t}
	}
	return out, nil
}

// AliasDevices returns, for each alias value of the given type, the sorted
// ids of the devices holding it. Values no device holds are absent.
func (r *Registry) AliasDevices(ctx context.Context, app, aliasType string, values []string) (map[string][]string, error) {
	values = distinct(values)
	out := make(map[string][]string, len(values))
	if len(values) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(values))
	pipe := r.c.Pipeline()
	for i, v := range values {
		cmds[i] = pipe.SMembers(ctx, r.k.alias(app, aliasType, v))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisio: %d %s aliases of %s: %w", len(values), aliasType, app, err)
	}
	for i, v := range values {
		if ids := cmds[i].Val(); len(ids) > 0 {
			slices.Sort(ids)
			out[v] = ids
		}
	}
	return out, nil
}

// Settings returns the settings of each user. Users who never sent settings
// (or cleared them) are absent: the zero Settings apply.
func (r *Registry) Settings(ctx context.Context, app string, users []string) (map[string]pushflow.Settings, error) {
	users = distinct(users)
	out := make(map[string]pushflow.Settings, len(users))
	if len(users) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(users))
	pipe := r.c.Pipeline()
	for i, u := range users {
		cmds[i] = pipe.Get(ctx, r.k.userSettings(app, u))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisio: settings of %d users of %s: %w", len(users), app, err)
	}
	for i, u := range users {
		v, err := cmds[i].Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("redisio: settings of %s/%s: %w", app, u, err)
		}
		var s pushflow.Settings
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("redisio: settings of %s/%s: %w", app, u, err)
		}
		out[u] = s
	}
	return out, nil
}

// ScanTag returns one page of the users holding tag, from an SSCAN of the
// tag's set. Start with cursor 0 and continue with next until it is 0. count
// is a hint of the page size (Redis may return more). A user holding the tag
// for the whole scan is returned at least once; exactly once unless the set
// is resized meanwhile, so consumers tolerate duplicates (the filter's dedup
// claims do).
func (r *Registry) ScanTag(ctx context.Context, app, tag string, cursor uint64, count int64) (users []string, next uint64, err error) {
	users, next, err = r.c.SScan(ctx, r.k.tag(app, tag), cursor, "", count).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("redisio: scan tag %s/%s at %d: %w", app, tag, cursor, err)
	}
	return users, next, nil
}

// ScanUsers returns one page of the app's users (those that registered a
// device), for broadcasts, with ScanTag's cursor contract. It scans a set
// kept per app rather than the keyspace: a keyspace SCAN would walk every
// key of every app (devices, tags, counters...) to find the users of one,
// and on a cluster would have to visit every node.
func (r *Registry) ScanUsers(ctx context.Context, app string, cursor uint64, count int64) (users []string, next uint64, err error) {
	users, next, err = r.c.SScan(ctx, r.k.users(app), cursor, "", count).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("redisio: scan users of %s at %d: %w", app, cursor, err)
	}
	return users, next, nil
}

// TagUsers returns all users holding tag, sorted. It loads the whole set:
// use it for small tags, and ScanTag for audiences.
func (r *Registry) TagUsers(ctx context.Context, app, tag string) ([]string, error) {
	users, err := r.c.SMembers(ctx, r.k.tag(app, tag)).Result()
	if err != nil {
		return nil, fmt.Errorf("redisio: users of tag %s/%s: %w", app, tag, err)
	}
	slices.Sort(users)
	return users, nil
}

// Stats counts the app's users (with a registered device, see ScanUsers)
// and their devices. It walks the user set page by page, one pipelined
// round trip per page: meant for demo summaries and tests, not hot paths.
func (r *Registry) Stats(ctx context.Context, app string) (users, devices int64, err error) {
	var cursor uint64
	for {
		var page []string
		page, cursor, err = r.ScanUsers(ctx, app, cursor, 1000)
		if err != nil {
			return 0, 0, err
		}
		if len(page) > 0 {
			cmds := make([]*redis.IntCmd, len(page))
			pipe := r.c.Pipeline()
			for i, u := range page {
				cmds[i] = pipe.HLen(ctx, r.k.userDevices(app, u))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, 0, fmt.Errorf("redisio: stats of %s: %w", app, err)
			}
			for _, c := range cmds {
				devices += c.Val()
			}
		}
		if cursor == 0 {
			break
		}
	}
	users, err = r.c.SCard(ctx, r.k.users(app)).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("redisio: stats of %s: %w", app, err)
	}
	return users, devices, nil
}

// distinct returns xs without duplicates, keeping the first occurrence.
func distinct(xs []string) []string {
	if len(xs) < 2 {
		return xs
	}
	seen := make(map[string]struct{}, len(xs))
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if _, ok := seen[x]; !ok {
			seen[x] = struct{}{}
			out = append(out, x)
		}
	}
	return out
}
