package redisio_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/redis/go-redis/v9"
)

const app = "com.example.news"

// backends are the servers every behaviour test runs against: a real
// redis-server, miniredis (which the embedded dev stack uses), and a real
// three-node Redis Cluster, where a script touching keys of two hash slots
// fails.
var backends = []struct {
	name    string
	connect func(testing.TB) redis.UniversalClient
}{
	{"redis-server", func(t testing.TB) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	}},
	{"miniredis", func(t testing.TB) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: redistest.StartMini(t)})
	}},
	{"redis-cluster", connectCluster},
}

// cluster is shared by the tests: a new cluster takes 2s to accept writes.
var cluster struct {
	once  sync.Once
	addrs []string
	stop  func()
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.stop != nil {
		cluster.stop()
	}
	os.Exit(code)
}

// connectCluster connects to the shared cluster, emptied.
func connectCluster(t testing.TB) redis.UniversalClient {
	t.Helper()
	cluster.once.Do(func() { cluster.addrs, cluster.stop, cluster.err = redistest.StartClusterServers(3) })
	if errors.Is(cluster.err, redistest.ErrNotFound) && os.Getenv(redistest.SkipEnv) == "1" {
		t.Skip(cluster.err)
	}
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.addrs})
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// forEachBackend runs f as a subtest per backend, each with its own server.
func forEachBackend(t *testing.T, f func(t *testing.T, c redis.UniversalClient)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			c := b.connect(t)
			t.Cleanup(func() { c.Close() })
			f(t, c)
		})
	}
}

var (
	t0 = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
	t2 = t0.Add(2 * time.Minute)
	t3 = t0.Add(3 * time.Minute)
)

func register(user, device, token string, at time.Time) pushflow.DeviceEvent {
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpRegister, App: app, UserID: user, DeviceID: device,
		Platform: pushflow.PlatformIOS, Token: token, At: at}
}

func withAlias(e pushflow.DeviceEvent, typ, value string) pushflow.DeviceEvent {
	e.Alias = map[string]string{typ: value}
	return e
}

func withTags(e pushflow.DeviceEvent, tags ...string) pushflow.DeviceEvent {
	if tags == nil {
		tags = []string{}
	}
	e.Tags = tags
	return e
}

func unregister(user, device string) pushflow.DeviceEvent {
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpUnregister, App: app, UserID: user, DeviceID: device}
}

func settings(user string, s pushflow.Settings) pushflow.DeviceEvent {
	return pushflow.DeviceEvent{V: 1, Op: pushflow.OpSettings, App: app, UserID: user, Settings: s}
}

func dev(id, user, token string, at time.Time) redisio.Device {
	return redisio.Device{ID: id, UserID: user, Token: token, Platform: pushflow.PlatformIOS, UpdatedAt: at}
}

// state is what the registry answers about a fixed set of probes.
type state struct {
	UserDevices map[string][]redisio.Device
	Devices     map[string]redisio.Device
	Phones      map[string][]string // phone alias value → device ids
	Tags        map[string][]string // tag → users
	Users       []string            // ScanUsers, sorted
	Settings    map[string]pushflow.Settings
}

var (
	probeUsers   = []string{"u1", "u2", "u3"}
	probeDevices = []string{"d1", "d2", "d3"}
	probePhones  = []string{"139", "140", "141"}
	probeTags    = []string{"sports", "news", "vip"}
)

func snapshot(t *testing.T, r *redisio.Registry) state {
	t.Helper()
	ctx := context.Background()
	var s state
	var err error
	if s.UserDevices, err = r.UserDevices(ctx, app, probeUsers); err != nil {
		t.Fatal(err)
	}
	if s.Devices, err = r.Devices(ctx, app, probeDevices); err != nil {
		t.Fatal(err)
	}
	if s.Phones, err = r.AliasDevices(ctx, app, "phone", probePhones); err != nil {
		t.Fatal(err)
	}
	s.Tags = map[string][]string{}
	for _, tag := range probeTags {
		users, err := r.TagUsers(ctx, app, tag)
		if err != nil {
			t.Fatal(err)
		}
		if len(users) > 0 {
			s.Tags[tag] = users
		}
	}
	s.Users = scanAll(t, func(cursor uint64) ([]string, uint64, error) {
		return r.ScanUsers(ctx, app, cursor, 100)
	})
	slices.Sort(s.Users)
	if s.Settings, err = r.Settings(ctx, app, probeUsers); err != nil {
		t.Fatal(err)
	}
	return s
}

// scanAll follows a cursor to its end and returns every page's members.
func scanAll(t *testing.T, page func(cursor uint64) ([]string, uint64, error)) []string {
	t.Helper()
	var all []string
	var cursor uint64
	for {
		members, next, err := page(cursor)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, members...)
		if next == 0 {
			return all
		}
		cursor = next
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]pushflow.DeviceEvent
		want    state
	}{
		{
			name:    "register",
			batches: [][]pushflow.DeviceEvent{{withTags(withAlias(register("u1", "d1", "tokA", t0), "phone", "139"), "sports")}},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t0)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t0)},
				Phones:      map[string][]string{"139": {"d1"}},
				Tags:        map[string][]string{"sports": {"u1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name: "register two devices of two users",
			batches: [][]pushflow.DeviceEvent{{
				register("u1", "d1", "tokA", t0),
				register("u1", "d2", "tokB", t1),
				register("u2", "d3", "tokC", t2),
			}},
			want: state{
				UserDevices: map[string][]redisio.Device{
					"u1": {dev("d1", "u1", "tokA", t0), dev("d2", "u1", "tokB", t1)},
					"u2": {dev("d3", "u2", "tokC", t2)},
				},
				Devices: map[string]redisio.Device{
					"d1": dev("d1", "u1", "tokA", t0), "d2": dev("d2", "u1", "tokB", t1), "d3": dev("d3", "u2", "tokC", t2),
				},
				Users: []string{"u1", "u2"},
			},
		},
		{
			name: "new token replaces the old one",
			batches: [][]pushflow.DeviceEvent{
				{register("u1", "d1", "tokA", t0)},
				{register("u1", "d1", "tokB", t1)},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokB", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokB", t1)},
				Users:       []string{"u1"},
			},
		},
		{
			name: "unregister removes device, alias and user",
			batches: [][]pushflow.DeviceEvent{
				{withTags(withAlias(register("u1", "d1", "tokA", t0), "phone", "139"), "sports")},
				{unregister("u1", "d1")},
			},
			want: state{
				// Tags belong to the user, not to the device.
				Tags: map[string][]string{"sports": {"u1"}},
			},
		},
		{
			name: "unregister keeps the user's other devices",
			batches: [][]pushflow.DeviceEvent{
				{register("u1", "d1", "tokA", t0), register("u1", "d2", "tokB", t1)},
				{unregister("u1", "d1")},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d2", "u1", "tokB", t1)}},
				Devices:     map[string]redisio.Device{"d2": dev("d2", "u1", "tokB", t1)},
				Users:       []string{"u1"},
			},
		},
		{
			name: "register after unregister in one batch",
			batches: [][]pushflow.DeviceEvent{{
				withAlias(register("u1", "d1", "tokA", t0), "phone", "139"),
				unregister("u1", "d1"),
				withAlias(register("u1", "d1", "tokB", t1), "phone", "140"),
			}},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokB", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokB", t1)},
				Phones:      map[string][]string{"140": {"d1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name: "unregister after register in one batch",
			batches: [][]pushflow.DeviceEvent{{
				withAlias(register("u1", "d1", "tokA", t0), "phone", "139"),
				unregister("u1", "d1"),
			}},
			want: state{},
		},
		{
			name: "settings",
			batches: [][]pushflow.DeviceEvent{{
				settings("u1", pushflow.Settings{Timezone: "Asia/Shanghai", QuietHours: "22:00-08:00", OptOut: []string{"marketing"}}),
			}},
			want: state{Settings: map[string]pushflow.Settings{
				"u1": {Timezone: "Asia/Shanghai", QuietHours: "22:00-08:00", OptOut: []string{"marketing"}},
			}},
		},
		{
			name: "settings are replaced, not merged",
			batches: [][]pushflow.DeviceEvent{
				{settings("u1", pushflow.Settings{Timezone: "Asia/Shanghai", OptOut: []string{"marketing"}})},
				{settings("u1", pushflow.Settings{Timezone: "Europe/Paris"})},
			},
			want: state{Settings: map[string]pushflow.Settings{"u1": {Timezone: "Europe/Paris"}}},
		},
		{
			name: "empty settings clear them",
			batches: [][]pushflow.DeviceEvent{{
				settings("u1", pushflow.Settings{Timezone: "Asia/Shanghai"}),
				settings("u1", pushflow.Settings{}),
			}},
			want: state{},
		},
		{
			name: "newer register replaces the alias",
			batches: [][]pushflow.DeviceEvent{
				{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")},
				{withAlias(register("u1", "d1", "tokA", t1), "phone", "140")},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t1)},
				Phones:      map[string][]string{"140": {"d1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name: "alias replaced twice in one batch",
			batches: [][]pushflow.DeviceEvent{{
				withAlias(register("u1", "d1", "tokA", t0), "phone", "139"),
				withAlias(register("u1", "d1", "tokA", t1), "phone", "140"),
				withAlias(register("u1", "d1", "tokA", t2), "phone", "141"),
			}},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t2)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t2)},
				Phones:      map[string][]string{"141": {"d1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name: "alias replaced and restored in one batch",
			batches: [][]pushflow.DeviceEvent{
				{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")},
				{
					withAlias(register("u1", "d1", "tokA", t1), "phone", "140"),
					withAlias(register("u1", "d1", "tokA", t2), "phone", "139"),
				},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t2)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t2)},
				Phones:      map[string][]string{"139": {"d1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name: "register without alias keeps it",
			batches: [][]pushflow.DeviceEvent{
				{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")},
				{register("u1", "d1", "tokB", t1)},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokB", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokB", t1)},
				Phones:      map[string][]string{"139": {"d1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name: "empty alias value removes the alias",
			batches: [][]pushflow.DeviceEvent{
				{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")},
				{withAlias(register("u1", "d1", "tokA", t1), "phone", "")},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t1)},
				Users:       []string{"u1"},
			},
		},
		{
			name: "alias shared by two devices",
			batches: [][]pushflow.DeviceEvent{
				{
					withAlias(register("u1", "d1", "tokA", t0), "phone", "139"),
					withAlias(register("u2", "d2", "tokB", t0), "phone", "139"),
				},
				{withAlias(register("u1", "d1", "tokA", t1), "phone", "140")},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{
					"u1": {dev("d1", "u1", "tokA", t1)},
					"u2": {dev("d2", "u2", "tokB", t0)},
				},
				Devices: map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t1), "d2": dev("d2", "u2", "tokB", t0)},
				Phones:  map[string][]string{"139": {"d2"}, "140": {"d1"}},
				Users:   []string{"u1", "u2"},
			},
		},
		{
			name: "device moves to another user",
			batches: [][]pushflow.DeviceEvent{
				{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")},
				{register("u2", "d1", "tokA", t1)},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u2": {dev("d1", "u2", "tokA", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u2", "tokA", t1)},
				Phones:      map[string][]string{"139": {"d1"}},
				// u1 stays in the user set with no device: only its own
				// unregister removes it (see Apply).
				Users: []string{"u1", "u2"},
			},
		},
		{
			name: "device moves twice in one batch",
			batches: [][]pushflow.DeviceEvent{{
				register("u1", "d1", "tokA", t0),
				register("u2", "d1", "tokA", t1),
				register("u3", "d1", "tokB", t2),
			}},
			want: state{
				UserDevices: map[string][]redisio.Device{"u3": {dev("d1", "u3", "tokB", t2)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u3", "tokB", t2)},
				Users:       []string{"u1", "u2", "u3"},
			},
		},
		{
			name: "device moves away and back in one batch",
			batches: [][]pushflow.DeviceEvent{
				{register("u1", "d1", "tokA", t0)},
				{register("u2", "d1", "tokA", t1), register("u1", "d1", "tokA", t2)},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t2)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t2)},
				Users:       []string{"u1", "u2"},
			},
		},
		{
			// Equal updated_at: only the batch's final owner protects u1's entry.
			name: "device moves away and back in one batch at the same time",
			batches: [][]pushflow.DeviceEvent{
				{register("u1", "d1", "tokA", t0)},
				{register("u2", "d1", "tokA", t0), register("u1", "d1", "tokA", t0)},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t0)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t0)},
				Users:       []string{"u1", "u2"},
			},
		},
		{
			name: "unregister by the previous owner keeps the device with its new owner",
			batches: [][]pushflow.DeviceEvent{
				{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")},
				{register("u2", "d1", "tokA", t1)},
				{unregister("u1", "d1")},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u2": {dev("d1", "u2", "tokA", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u2", "tokA", t1)},
				Phones:      map[string][]string{"139": {"d1"}},
				Users:       []string{"u2"},
			},
		},
		{
			name: "tags are replaced",
			batches: [][]pushflow.DeviceEvent{
				{withTags(register("u1", "d1", "tokA", t0), "sports", "news")},
				{withTags(register("u1", "d1", "tokA", t1), "news", "vip")},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t1)},
				Tags:        map[string][]string{"news": {"u1"}, "vip": {"u1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name: "nil tags keep them, empty tags clear them",
			batches: [][]pushflow.DeviceEvent{
				{withTags(register("u1", "d1", "tokA", t0), "sports"), withTags(register("u2", "d2", "tokB", t0), "sports")},
				{register("u1", "d1", "tokA", t1), withTags(register("u2", "d2", "tokB", t1))},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{
					"u1": {dev("d1", "u1", "tokA", t1)},
					"u2": {dev("d2", "u2", "tokB", t1)},
				},
				Devices: map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t1), "d2": dev("d2", "u2", "tokB", t1)},
				Tags:    map[string][]string{"sports": {"u1"}},
				Users:   []string{"u1", "u2"},
			},
		},
		{
			name: "tags replaced and restored in one batch",
			batches: [][]pushflow.DeviceEvent{
				{withTags(register("u1", "d1", "tokA", t0), "sports")},
				{
					withTags(register("u1", "d1", "tokA", t1), "news"),
					withTags(register("u1", "d2", "tokB", t2), "sports", "vip"),
				},
			},
			want: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t1), dev("d2", "u1", "tokB", t2)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t1), "d2": dev("d2", "u1", "tokB", t2)},
				Tags:        map[string][]string{"sports": {"u1"}, "vip": {"u1"}},
				Users:       []string{"u1"},
			},
		},
	}
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		for i, tt := range tests {
			for _, twice := range []bool{false, true} {
				name := tt.name
				if twice {
					name += "/each batch twice"
				}
				t.Run(name, func(t *testing.T) {
					r := redisio.New(c, redisio.WithKeyPrefix(fmt.Sprintf("t%d-%v:", i, twice)))
					for _, b := range tt.batches {
						if err := r.Apply(ctx, b); err != nil {
							t.Fatalf("Apply(%v) = %v", b, err)
						}
						if twice {
							if err := r.Apply(ctx, b); err != nil {
								t.Fatalf("Apply(%v) again = %v", b, err)
							}
						}
					}
					want := tt.want
					for _, m := range []*map[string][]string{&want.Phones, &want.Tags} {
						if *m == nil {
							*m = map[string][]string{}
						}
					}
					if want.UserDevices == nil {
						want.UserDevices = map[string][]redisio.Device{}
					}
					if want.Devices == nil {
						want.Devices = map[string]redisio.Device{}
					}
					if want.Settings == nil {
						want.Settings = map[string]pushflow.Settings{}
					}
					if diff := cmp.Diff(want, snapshot(t, r)); diff != "" {
						t.Errorf("state after Apply (-want +got):\n%s", diff)
					}
				})
			}
		}
	})
}

func TestApplyInvalid(t *testing.T) {
	tests := []struct {
		name string
		e    pushflow.DeviceEvent
	}{
		{"unknown op", pushflow.DeviceEvent{Op: "delete", App: app, UserID: "u1"}},
		{"no app", pushflow.DeviceEvent{Op: pushflow.OpSettings, UserID: "u1"}},
		{"no user", pushflow.DeviceEvent{Op: pushflow.OpSettings, App: app}},
		{"register without token", pushflow.DeviceEvent{Op: pushflow.OpRegister, App: app, UserID: "u1", DeviceID: "d1"}},
		{"register without device", pushflow.DeviceEvent{Op: pushflow.OpRegister, App: app, UserID: "u1", Token: "t"}},
		{"unregister without device", pushflow.DeviceEvent{Op: pushflow.OpUnregister, App: app, UserID: "u1"}},
	}
	c := redis.NewClient(&redis.Options{Addr: redistest.StartMini(t)})
	defer c.Close()
	r := redisio.New(c)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A valid event first: nothing is written when any event is invalid.
			err := r.Apply(context.Background(), []pushflow.DeviceEvent{register("u1", "d1", "tokA", t0), tt.e})
			if !errors.Is(err, redisio.ErrInvalidEvent) {
				t.Errorf("Apply(%+v) = %v, want %v", tt.e, err, redisio.ErrInvalidEvent)
			}
			if n := c.DBSize(context.Background()).Val(); n != 0 {
				t.Errorf("DBSIZE after a rejected Apply = %d, want 0", n)
			}
		})
	}
}

func TestRemoveToken(t *testing.T) {
	tests := []struct {
		name          string
		setup         [][]pushflow.DeviceEvent
		device, token string
		want          bool
		after         []pushflow.DeviceEvent // applied after RemoveToken
		wantState     state
	}{
		{
			name:   "matching token",
			setup:  [][]pushflow.DeviceEvent{{withAlias(register("u1", "d1", "tokA", t0), "phone", "139"), register("u1", "d2", "tokB", t0)}},
			device: "d1", token: "tokA",
			want: true,
			wantState: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d2", "u1", "tokB", t0)}},
				Devices:     map[string]redisio.Device{"d2": dev("d2", "u1", "tokB", t0)},
				// The alias stays with the device id until it registers again
				// or unregisters; without a token it gets nothing.
				Phones: map[string][]string{"139": {"d1"}},
				Users:  []string{"u1"},
			},
		},
		{
			name:   "token replaced by a re-register before the cleanup",
			setup:  [][]pushflow.DeviceEvent{{register("u1", "d1", "tokA", t0)}, {register("u1", "d1", "tokB", t1)}},
			device: "d1", token: "tokA",
			want: false,
			wantState: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokB", t1)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokB", t1)},
				Users:       []string{"u1"},
			},
		},
		{
			name:   "device moved to another user with the same token",
			setup:  [][]pushflow.DeviceEvent{{register("u1", "d1", "tokA", t0)}, {register("u2", "d1", "tokA", t1)}},
			device: "d1", token: "tokA",
			want: true,
			wantState: state{
				UserDevices: map[string][]redisio.Device{},
				Devices:     map[string]redisio.Device{},
				Users:       []string{"u1", "u2"},
			},
		},
		{
			name:   "unknown device",
			setup:  [][]pushflow.DeviceEvent{{register("u1", "d1", "tokA", t0)}},
			device: "d3", token: "tokA",
			want: false,
			wantState: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokA", t0)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokA", t0)},
				Users:       []string{"u1"},
			},
		},
		{
			name:   "register after removal replaces the old alias",
			setup:  [][]pushflow.DeviceEvent{{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")}},
			device: "d1", token: "tokA",
			want:  true,
			after: []pushflow.DeviceEvent{withAlias(register("u1", "d1", "tokC", t3), "phone", "141")},
			wantState: state{
				UserDevices: map[string][]redisio.Device{"u1": {dev("d1", "u1", "tokC", t3)}},
				Devices:     map[string]redisio.Device{"d1": dev("d1", "u1", "tokC", t3)},
				Phones:      map[string][]string{"141": {"d1"}},
				Users:       []string{"u1"},
			},
		},
		{
			name:   "unregister after removal drops the alias",
			setup:  [][]pushflow.DeviceEvent{{withAlias(register("u1", "d1", "tokA", t0), "phone", "139")}},
			device: "d1", token: "tokA",
			want:  true,
			after: []pushflow.DeviceEvent{unregister("u1", "d1")},
			wantState: state{
				UserDevices: map[string][]redisio.Device{},
				Devices:     map[string]redisio.Device{},
			},
		},
	}
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := redisio.New(c, redisio.WithKeyPrefix(fmt.Sprintf("t%d:", i)))
				for _, b := range tt.setup {
					if err := r.Apply(ctx, b); err != nil {
						t.Fatal(err)
					}
				}
				got, err := r.RemoveToken(ctx, app, tt.device, tt.token)
				if err != nil || got != tt.want {
					t.Errorf("RemoveToken(%s, %s) = %v, %v, want %v, nil", tt.device, tt.token, got, err, tt.want)
				}
				if err := r.Apply(ctx, tt.after); err != nil {
					t.Fatal(err)
				}
				want := tt.wantState
				if want.Phones == nil {
					want.Phones = map[string][]string{}
				}
				want.Tags = map[string][]string{}
				want.Settings = map[string]pushflow.Settings{}
				if diff := cmp.Diff(want, snapshot(t, r)); diff != "" {
					t.Errorf("state after RemoveToken (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestIncrFrequency(t *testing.T) {
	type call struct {
		category, day string
		users         []string
		want          map[string]int64
	}
	calls := []call{
		{"news", "2026-11-22", []string{"u1", "u2"}, map[string]int64{"u1": 1, "u2": 1}},
		{"news", "2026-11-22", []string{"u1", "u1"}, map[string]int64{"u1": 2}},
		{"news", "2026-11-22", []string{"u1", "u2", "u3"}, map[string]int64{"u1": 3, "u2": 2, "u3": 1}},
		{"sports", "2026-11-22", []string{"u1"}, map[string]int64{"u1": 1}},
		{"news", "2026-11-23", []string{"u1"}, map[string]int64{"u1": 1}},
		{"news", "2026-11-22", nil, map[string]int64{}},
	}
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c, redisio.WithFrequencyTTL(36*time.Hour))
		for _, cl := range calls {
			got, err := r.IncrFrequency(ctx, app, cl.category, cl.day, cl.users)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(cl.want, got); diff != "" {
				t.Errorf("IncrFrequency(%s, %s, %v) (-want +got):\n%s", cl.category, cl.day, cl.users, diff)
			}
		}
		// Every counter has the TTL, counted from its first increment.
		for _, k := range []string{
			"pf:u:{" + app + ":u1}:freq:2026-11-22:news",
			"pf:u:{" + app + ":u2}:freq:2026-11-22:news",
			"pf:u:{" + app + ":u3}:freq:2026-11-22:news",
			"pf:u:{" + app + ":u1}:freq:2026-11-22:sports",
			"pf:u:{" + app + ":u1}:freq:2026-11-23:news",
		} {
			ttl, err := c.TTL(ctx, k).Result()
			if err != nil || ttl <= 35*time.Hour || ttl > 36*time.Hour {
				t.Errorf("TTL(%s) = %v, %v, want (35h, 36h]", k, ttl, err)
			}
		}
		if got := c.Get(ctx, "pf:u:{"+app+":u1}:freq:2026-11-22:news").Val(); got != "3" {
			t.Errorf("GET of u1's news counter = %q, want 3", got)
		}
	})
}

func TestClaimOwnersTTL(t *testing.T) {
	calls := []struct {
		keys  []string
		owner string
		want  []string
	}{
		{[]string{"r-1/d1", "r-1/d2"}, "src-a", []string{"src-a", "src-a"}},
		{[]string{"r-1/d1", "r-2/d1", "r-2/d1"}, "src-b", []string{"src-a", "src-b", "src-b"}},
		{nil, "src-c", []string{}},
	}
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c, redisio.WithDedupTTL(time.Hour))
		for _, cl := range calls {
			got, err := r.ClaimOwners(ctx, cl.keys, cl.owner)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(cl.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ClaimOwners(%v, %s) (-want +got):\n%s", cl.keys, cl.owner, diff)
			}
		}
		ttl, err := c.TTL(ctx, "pf:dedup:r-1/d1").Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("TTL(pf:dedup:r-1/d1) = %v, %v, want (59m, 1h]", ttl, err)
		}
	})
}

func TestInterestScores(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c)
		if err := r.SetInterestScores(ctx, app, map[string]map[string]float64{
			"u1": {"news": 0.5, "sports": 0.25},
			"u2": {"news": 1},
		}); err != nil {
			t.Fatal(err)
		}
		if err := r.SetInterestScores(ctx, app, map[string]map[string]float64{"u1": {"news": 0.75}}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			category string
			want     map[string]float64
		}{
			{"news", map[string]float64{"u1": 0.75, "u2": 1}},
			{"sports", map[string]float64{"u1": 0.25}},
			{"weather", map[string]float64{}},
		}
		for _, tt := range tests {
			got, err := r.InterestScores(ctx, app, tt.category, []string{"u1", "u2", "u3"})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("InterestScores(%s) (-want +got):\n%s", tt.category, diff)
			}
		}
	})
}

// countHook counts the commands and pipelines a client sends: each is one
// round trip to the server.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// pipelineHook counts the pipelines a client sends.
type pipelineHook struct{ n atomic.Int64 }

func (h *pipelineHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

func TestRoundTrips(t *testing.T) {
	const n = 1000
	users := make([]string, n)
	devices := make([]string, n)
	phones := make([]string, n)
	register1 := make([]pushflow.DeviceEvent, n)
	move := make([]pushflow.DeviceEvent, n)
	scores := map[string]map[string]float64{}
	dedup := make([]string, n)
	for i := range n {
		users[i] = fmt.Sprintf("u%d", i)
		devices[i] = fmt.Sprintf("d%d", i)
		phones[i] = fmt.Sprintf("1390000%04d", i)
		register1[i] = withAlias(register(users[i], devices[i], "tok"+devices[i], t0), "phone", phones[i])
		settingsEvent := settings(users[i], pushflow.Settings{Timezone: "Asia/Shanghai"})
		register1 = append(register1, settingsEvent)
		// Every device moves to the next user and changes phone: the
		// cleanup needs a second round trip.
		move[i] = withAlias(register(fmt.Sprintf("u%d", (i+1)%n), devices[i], "tok"+devices[i], t1), "phone", phones[i]+"0")
		scores[users[i]] = map[string]float64{"news": float64(i) / n}
		dedup[i] = "r-1/" + devices[i]
	}
	ctx := context.Background()
	tests := []struct {
		name string
		call func(r *redisio.Registry) (int, error) // returns the result size
		want int                                    // round trips
		size int
	}{
		{"Apply", func(r *redisio.Registry) (int, error) { return len(register1), r.Apply(ctx, register1) }, 1, 2 * n},
		{"UserDevices", func(r *redisio.Registry) (int, error) { m, err := r.UserDevices(ctx, app, users); return len(m), err }, 1, n},
		{"Devices", func(r *redisio.Registry) (int, error) { m, err := r.Devices(ctx, app, devices); return len(m), err }, 1, n},
		{"AliasDevices", func(r *redisio.Registry) (int, error) {
			m, err := r.AliasDevices(ctx, app, "phone", phones)
			return len(m), err
		}, 1, n},
		{"Settings", func(r *redisio.Registry) (int, error) { m, err := r.Settings(ctx, app, users); return len(m), err }, 1, n},
		{"IncrFrequency", func(r *redisio.Registry) (int, error) {
			m, err := r.IncrFrequency(ctx, app, "news", "2026-11-22", users)
			return len(m), err
		}, 1, n},
		{"ClaimOwners", func(r *redisio.Registry) (int, error) { b, err := r.ClaimOwners(ctx, dedup, "src"); return len(b), err }, 1, n},
		{"SetInterestScores", func(r *redisio.Registry) (int, error) { return n, r.SetInterestScores(ctx, app, scores) }, 1, n},
		{"InterestScores", func(r *redisio.Registry) (int, error) {
			m, err := r.InterestScores(ctx, app, "news", users)
			return len(m), err
		}, 1, n},
		{"Apply with moves", func(r *redisio.Registry) (int, error) { return len(move), r.Apply(ctx, move) }, 2, n},
		{"UserDevices after moves", func(r *redisio.Registry) (int, error) {
			m, err := r.UserDevices(ctx, app, users)
			for u, ds := range m {
				if len(ds) != 1 || ds[0].UserID != u {
					return 0, fmt.Errorf("devices of %s = %+v, want one device", u, ds)
				}
			}
			return len(m), err
		}, 1, n},
	}
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		// On a single server, count every command and pipeline the client
		// sends. On the cluster, a pipeline fans out concurrently to the
		// nodes owning its keys: count the pipelines each node receives
		// (not single commands: the client reloads the slot map in the
		// background with them).
		h := &countHook{}
		var nodes sync.Map // address → *pipelineHook
		_, isCluster := c.(*redis.ClusterClient)
		if isCluster {
			// A fresh client, so that every node client it makes is hooked.
			cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.addrs})
			defer cc.Close()
			c = cc
			cc.OnNewNode(func(n *redis.Client) {
				nh, _ := nodes.LoadOrStore(n.Options().Addr, &pipelineHook{})
				n.AddHook(nh.(*pipelineHook))
			})
		} else {
			c.AddHook(h)
		}
		r := redisio.New(c)
		// Warm the connection pools up, with pipelines: a new connection
		// runs its handshake (HELLO, CLIENT SETINFO) through the hooks, and
		// go-redis dials one for the first pipeline even when a connection
		// used by a single command is idle.
		for range 2 {
			if _, err := r.UserDevices(ctx, app, []string{"nobody"}); err != nil {
				t.Fatal(err)
			}
		}
		if cc, ok := c.(*redis.ClusterClient); ok {
			for range 2 {
				err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
					_, err := m.Pipelined(ctx, func(p redis.Pipeliner) error { return p.Ping(ctx).Err() })
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, tt := range tests {
			h.n.Store(0)
			nodes.Range(func(_, nh any) bool { nh.(*pipelineHook).n.Store(0); return true })
			size, err := tt.call(r)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !isCluster {
				if got := h.n.Load(); got != int64(tt.want) {
					t.Errorf("%s of %d elements: %d round trips, want %d", tt.name, n, got, tt.want)
				}
			} else {
				reached := 0
				nodes.Range(func(addr, nh any) bool {
					got := nh.(*pipelineHook).n.Load()
					if got > 0 {
						reached++
					}
					if got > int64(tt.want) {
						t.Errorf("%s of %d elements: %d pipelines to node %s, want at most %d", tt.name, n, got, addr, tt.want)
					}
					return true
				})
				if reached == 0 {
					t.Errorf("%s of %d elements: no pipeline reached any node", tt.name, n)
				}
			}
			if size != tt.size {
				t.Errorf("%s: %d results, want %d", tt.name, size, tt.size)
			}
		}
	})
}

func TestScan(t *testing.T) {
	const n = 10000
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c)
		// Seed the sets directly (TestApply shows that Apply maintains them,
		// TestKeys pins their names): 10k registers through Lua would take
		// seconds on miniredis, which starts a Lua VM per script.
		pipe := c.Pipeline()
		for i := range n {
			u := fmt.Sprintf("u%05d", i)
			pipe.HSet(ctx, "pf:u:{"+app+":"+u+"}:devices", "d"+u, `{"token":"tok","platform":"ios","updated_at":"2026-11-22T09:00:00.000000000Z"}`)
			pipe.SAdd(ctx, "pf:users:"+app, u)
			pipe.SAdd(ctx, "pf:tag:"+app+":all", u)
			if i%2 == 0 {
				pipe.SAdd(ctx, "pf:tag:"+app+":even", u)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			page func(cursor uint64) ([]string, uint64, error)
			want int
		}{
			{"ScanUsers", func(cur uint64) ([]string, uint64, error) { return r.ScanUsers(ctx, app, cur, 500) }, n},
			{"ScanTag all", func(cur uint64) ([]string, uint64, error) { return r.ScanTag(ctx, app, "all", cur, 500) }, n},
			{"ScanTag even", func(cur uint64) ([]string, uint64, error) { return r.ScanTag(ctx, app, "even", cur, 500) }, n / 2},
			{"ScanTag unknown", func(cur uint64) ([]string, uint64, error) { return r.ScanTag(ctx, app, "none", cur, 500) }, 0},
		}
		for _, tt := range tests {
			seen := map[string]int{}
			pages, largest := 0, 0
			var cursor uint64
			for {
				users, next, err := tt.page(cursor)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				largest = max(largest, len(users))
				for _, u := range users {
					seen[u]++
				}
				if next == 0 {
					break
				}
				cursor = next
			}
			if len(seen) != tt.want {
				t.Errorf("%s: %d distinct users, want %d", tt.name, len(seen), tt.want)
			}
			for u, k := range seen {
				if k != 1 {
					t.Errorf("%s: %s returned %d times, want once", tt.name, u, k)
				}
			}
			if tt.want > 0 && (pages < tt.want/1000 || largest > 1000) {
				t.Errorf("%s: %d pages, largest %d users: want pages of about 500", tt.name, pages, largest)
			}
		}
		users, devices, err := r.Stats(ctx, app)
		if err != nil || users != n || devices != n {
			t.Errorf("Stats() = %d, %d, %v, want %d, %d, nil", users, devices, err, n, n)
		}
	})
}

func TestNewPanics(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		name string
		opts []redisio.Option
	}{
		{"hash tag in prefix", []redisio.Option{redisio.WithKeyPrefix("{pf}:")}},
		{"zero dedup TTL", []redisio.Option{redisio.WithDedupTTL(0)}},
		{"negative frequency TTL", []redisio.Option{redisio.WithFrequencyTTL(-time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%s) did not panic", tt.name)
				}
			}()
			redisio.New(c, tt.opts...)
		})
	}
}

func TestDispatchState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c redis.UniversalClient) {
		ctx := context.Background()
		r := redisio.New(c)
		if err := r.Apply(ctx, []pushflow.DeviceEvent{
			withTags(register("u1", "d1", "tokA", t0), "sports", "vip"),
			register("u2", "d2", "tokB", t0),
		}); err != nil {
			t.Fatal(err)
		}

		tags, err := r.UserTags(ctx, app, []string{"u1", "u2", "u3"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]map[string]bool{"u1": {"sports": true, "vip": true}}, tags); diff != "" {
			t.Errorf("UserTags (-want +got):\n%s", diff)
		}

		for _, tt := range []struct {
			app  string
			want bool
		}{{app, true}, {"com.example.other", false}} {
			if got, err := r.AppKnown(ctx, tt.app); err != nil || got != tt.want {
				t.Errorf("AppKnown(%s) = %v, %v, want %v, nil", tt.app, got, err, tt.want)
			}
		}

		calls := []struct {
			keys  []string
			owner string
			want  []string
		}{
			{[]string{"r-1/d1", "r-1/d2"}, "push.requests/0/7", []string{"push.requests/0/7", "push.requests/0/7"}},
			// A replay of the same record keeps its claims; another record
			// finds them taken.
			{[]string{"r-1/d1", "r-1/d3"}, "push.requests/0/7", []string{"push.requests/0/7", "push.requests/0/7"}},
			{[]string{"r-1/d1", "r-2/d1"}, "push.requests/1/9", []string{"push.requests/0/7", "push.requests/1/9"}},
		}
		for _, cl := range calls {
			got, err := r.ClaimOwners(ctx, cl.keys, cl.owner)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(cl.want, got); diff != "" {
				t.Errorf("ClaimOwners(%v, %s) (-want +got):\n%s", cl.keys, cl.owner, diff)
			}
		}
	})
}
