package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/redis/go-redis/v9"
)

func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	return c.Ping(context.Background()).Err()
}

func TestStart(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start func(testing.TB) string
	}{{"Start", redistest.Start}, {"StartMini", redistest.StartMini}} {
		t.Run(tt.name, func(t *testing.T) {
			if err := ping(tt.start(t)); err != nil {
				t.Errorf("PING = %v, want PONG", err)
			}
		})
	}
}

func TestStartServer(t *testing.T) {
	addr, stop, err := redistest.StartServer()
	if err != nil {
		if errors.Is(err, redistest.ErrNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	if err := ping(addr); err != nil {
		t.Errorf("PING = %v, want PONG", err)
	}
	stop()
	stop() // idempotent
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("dial %s after stop succeeded, want the server gone", addr)
	}
}

func TestStartServerNotFound(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, _, err := redistest.StartServer(); !errors.Is(err, redistest.ErrNotFound) {
		t.Errorf("StartServer() without redis-server = %v, want %v", err, redistest.ErrNotFound)
	}
}

func TestStartCluster(t *testing.T) {
	start := time.Now()
	addrs := redistest.StartCluster(t, 3)
	t.Logf("3-node cluster formed in %v", time.Since(start))
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	ctx := context.Background()
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil || len(shards) != 3 {
		t.Fatalf("CLUSTER SHARDS = %d shards, %v, want 3", len(shards), err)
	}
	// Keys of different slots land on different nodes and still work.
	for i := range 100 {
		key := fmt.Sprintf("k%d", i)
		if err := c.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s = %v", key, err)
		}
	}
	var total int64
	err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if n == 0 {
			t.Errorf("master %s holds no key", m.Options().Addr)
		}
		atomic.AddInt64(&total, n)
		return err
	})
	if err != nil || total != 100 {
		t.Errorf("keys over all masters = %d, %v, want 100", total, err)
	}
}
