package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/transforms/pace"
)

// currentRSS is the process's resident set size in bytes (VmRSS), or 0.
func currentRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkSoakMixedTraffic runs dispatch unbounded, with the ledger, the
// paced lane and the retry lane, under steady mixed traffic for
// PUSHFLOW_SOAK_MINUTES (default 30): every second 20 realtime one-user
// requests and one bulk request of 200 users, and every 5 minutes a 20 s APNs
// outage (503) that the retry lane rides out. It samples RSS and goroutines
// every 10 s and reports the last quarter's mean over the first quarter's
// (flat ≈ 1.0), and checks every recipient was sent.
func BenchmarkSoakMixedTraffic(b *testing.B) {
	minutes := envInt("PUSHFLOW_SOAK_MINUTES", 30)
	const users = 20_000
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Options{RedisAddr: redistest.Start(b), APNsOptions: []apnsiotest.Option{apnsiotest.WithRecordLimit(0)}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	registerUsers(b, st.RedisAddr, faultApp, "u", users, 0)
	cfg := faultConfig(st, st.RedisAddr, "soak")
	cfg.Until = ""
	cfg.Pace = pace.Config{GlobalQPS: 2000, Shards: 2}
	cfg.PaceMaxPending = 10_000
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		runCtx, cancel := context.WithCancel(ctx)
		p, s := beam.NewPipelineWithRoot()
		Build(s, cfg)
		done := make(chan error, 1)
		go func() { done <- ptestRun(runCtx, p) }()

		type sample struct {
			rss        int64
			goroutines int
		}
		var mu sync.Mutex
		var samples []sample
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Second):
				}
				mu.Lock()
				samples = append(samples, sample{currentRSS(), runtime.NumGoroutine()})
				mu.Unlock()
			}
		})

		start := time.Now()
		end := start.Add(time.Duration(minutes) * time.Minute)
		var want int64
		for sec := 0; time.Now().Before(end); sec++ {
			var reqs [][]byte
			for j := range 20 {
				u := (sec*20 + j) % users
				reqs = append(reqs, fmt.Appendf(nil, `{"v":1,"id":"soak-rt-%d-%d","app":%q,"priority":"realtime","target":{"users":["u%d"]},"notification":{"title":"Live"}}`, sec, j, faultApp, u))
			}
			var bulk []string
			for j := range 200 {
				bulk = append(bulk, fmt.Sprintf("%q", fmt.Sprintf("u%d", (sec*200+j)%users)))
			}
			reqs = append(reqs, fmt.Appendf(nil, `{"v":1,"id":"soak-bulk-%d","app":%q,"campaign":"soak","priority":"bulk","target":{"users":[%s]},"notification":{"title":"Digest"}}`, sec, faultApp, strings.Join(bulk, ",")))
			if err := devstack.Produce(ctx, st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, reqs); err != nil {
				b.Fatal(err)
			}
			want += 220
			if sec > 0 && sec%300 == 0 {
				st.APNs.Control(apnsiotest.Unavailable(time.Now().Add(20 * time.Second)))
			}
			time.Sleep(time.Until(start.Add(time.Duration(sec+1) * time.Second)))
		}
		for deadline := time.Now().Add(5 * time.Minute); st.APNs.Count() < want && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		}
		close(stop)
		wg.Wait()
		cancel()
		<-done
		if got := st.APNs.Count(); got < want {
			b.Errorf("APNs accepted %d of %d notifications", got, want)
		}
		q := max(len(samples)/4, 1)
		if len(samples) < 2 {
			b.Fatalf("only %d samples: run longer", len(samples))
		}
		mean := func(xs []sample) (rss float64, g float64) {
			for _, x := range xs {
				rss += float64(x.rss)
				g += float64(x.goroutines)
			}
			return rss / float64(len(xs)), g / float64(len(xs))
		}
		r0, g0 := mean(samples[:q])
		r1, g1 := mean(samples[len(samples)-q:])
		b.ReportMetric(r1/r0, "rss_last_vs_first")
		b.ReportMetric(g1/g0, "goroutines_last_vs_first")
		b.ReportMetric(r1/(1<<20), "rss_last_MiB")
		b.Logf("soak %d min, %d notifications: RSS %.0f → %.0f MiB (%.2f×), goroutines %.0f → %.0f (%.2f×), %d samples",
			minutes, want, r0/(1<<20), r1/(1<<20), r1/r0, g0, g1, g1/g0, len(samples))
	}
}
