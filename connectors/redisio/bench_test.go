package redisio_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkUserDevices looks up the devices of 10k users (two devices each)
// on a real redis-server, one pipeline per batch, and reports user keys
// read per second.
func BenchmarkUserDevices(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(b)})
	defer c.Close()
	r := redisio.New(c)
	users := make([]string, n)
	events := make([]pushflow.DeviceEvent, 0, 2*n)
	for i := range n {
		users[i] = fmt.Sprintf("user-%05d", i)
		for d := range 2 {
			events = append(events, register(users[i], fmt.Sprintf("device-%05d-%d", i, d), fmt.Sprintf("token-%064d", i), t0))
		}
	}
	if err := r.Apply(ctx, events); err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{100, 1000, n} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			for b.Loop() {
				for i := 0; i < n; i += batch {
					got, err := r.UserDevices(ctx, app, users[i:min(i+batch, n)])
					if err != nil {
						b.Fatal(err)
					}
					if len(got) != min(batch, n-i) {
						b.Fatalf("UserDevices returned %d users, want %d", len(got), min(batch, n-i))
					}
				}
			}
			b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
