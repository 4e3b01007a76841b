package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartCluster starts a Redis Cluster of n redis-server masters (no
// replicas) on free 127.0.0.1 ports, splits the 16384 slots evenly between
// them, waits until every node reports cluster_state:ok, and returns the
// nodes' addresses for redis.ClusterOptions.Addrs. The test's cleanup stops
// them. A missing redis-server is handled like Start.
func StartCluster(t testing.TB, n int) (addrs []string) {
	t.Helper()
	addrs, stop, err := StartClusterServers(n)
	if errors.Is(err, ErrNotFound) {
		if os.Getenv(SkipEnv) == "1" {
			t.Skipf("%v (skipping: %s=1)", err, SkipEnv)
		}
		t.Fatalf("%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(stop)
	return addrs
}

// StartClusterServers is StartCluster for callers without a testing.TB.
func StartClusterServers(n int) (addrs []string, stop func(), err error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("redistest: cluster of %d nodes", n)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, nil, ErrNotFound
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, nil, fmt.Errorf("redistest: %w", err)
	}
	var stops []func()
	var buses []int
	stop = func() {
		for _, s := range stops {
			s()
		}
		os.RemoveAll(dir)
	}
	for range n {
		var bus int
		addr, s, err := startRetry(bin, func(port int) ([]string, error) {
			// The cluster bus needs a port of its own; port+10000 may be
			// out of range for an ephemeral port.
			bus, err = freePort()
			if err != nil {
				return nil, err
			}
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
				"--cluster-node-timeout", "5000",
			}, nil
		})
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("redistest: %w", err)
		}
		addrs = append(addrs, addr)
		buses = append(buses, bus)
		stops = append(stops, s)
	}
	if err := formCluster(addrs, buses); err != nil {
		stop()
		return nil, nil, fmt.Errorf("redistest: %w", err)
	}
	return addrs, stop, nil
}

// formCluster assigns slots, introduces the nodes to each other and waits
// until they agree.
func formCluster(addrs []string, buses []int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		clients[i] = redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		defer clients[i].Close()
	}
	const slots = 16384
	for i, c := range clients {
		lo, hi := i*slots/len(clients), (i+1)*slots/len(clients)-1
		if err := c.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("cluster addslotsrange %d %d on %s: %w", lo, hi, addrs[i], err)
		}
	}
	for i, a := range addrs[1:] {
		host, port, _ := strings.Cut(a, ":")
		// CLUSTER MEET ip port cluster-bus-port (Redis 7+).
		if err := clients[0].Do(ctx, "cluster", "meet", host, port, buses[i+1]).Err(); err != nil {
			return fmt.Errorf("cluster meet %s: %w", a, err)
		}
	}
	want := fmt.Sprintf("cluster_known_nodes:%d\r\n", len(addrs))
	for i, c := range clients {
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, want) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("cluster did not form: node %s: %v %s", addrs[i], err, strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " "))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}
