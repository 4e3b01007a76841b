package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/redis/go-redis/v9"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
	"github.com/pushflow/pushflow/connectors/redisio"
	"github.com/pushflow/pushflow/connectors/redisio/redistest"
	"github.com/pushflow/pushflow/internal/devstack"
	"github.com/pushflow/pushflow/internal/options"
)

// The fault tests: each runs dispatch against a real redis-server, the
// Kafka-protocol broker and the APNs-protocol server, injects one fault,
// and checks that every recipient ends with exactly one terminal outcome
// (events deduplicated on event_id, as a consumer of push.deliveries does)
// and that the provider accepted each (request, device) once — or, after a
// crash, within the documented bound of duplicate sends.

const faultApp = "com.example.faults"

// faultRequests returns n bulk requests of per users each (users
// prefix0 … prefix{n·per-1}), with ids id-0 … id-{n-1}.
func faultRequests(id, prefix string, n, per int) [][]byte {
	out := make([][]byte, n)
	for i := range n {
		users := make([]string, per)
		for j := range per {
			users[j] = strconv.Quote(fmt.Sprintf("%s%d", prefix, i*per+j))
		}
		out[i] = fmt.Appendf(nil, `{"v":1,"id":"%s-%d","app":%q,"campaign":"faults","priority":"bulk","category":"news","target":{"users":[%s]},"notification":{"title":"Fault %d"}}`,
			id, i, faultApp, strings.Join(users, ","), i)
	}
	return out
}

// checkOutcomes reads push.deliveries and checks that each of the users
// prefix0 … prefix{users-1} of the requests named id-* has exactly one
// terminal outcome, "sent", once events are deduplicated on event_id; that
// copies of an event_id agree; and that APNs accepted every user's token
// at least once. It returns the sends beyond one per device.
func checkOutcomes(t *testing.T, st *devstack.Stack, id, prefix string, users int) (duplicates int) {
	t.Helper()
	raw, err := devstack.ReadTopic(st.Brokers, pushflow.TopicDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]pushflow.DeliveryEvent{}
	perUser := map[string][]pushflow.DeliveryEvent{}
	copies := 0
	for _, b := range raw {
		var ev pushflow.DeliveryEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("push.deliveries: %v", err)
		}
		if !strings.HasPrefix(ev.RequestID, id+"-") {
			continue
		}
		if ev.EventID == "" {
			t.Fatalf("event without event_id: %+v", ev)
		}
		if first, ok := byID[ev.EventID]; ok {
			copies++
			if first.Outcome != ev.Outcome || first.ProviderID != ev.ProviderID || first.DeviceID != ev.DeviceID {
				t.Errorf("event_id %s twice with different content: %+v and %+v", ev.EventID, first, ev)
			}
			continue
		}
		byID[ev.EventID] = ev
		perUser[ev.UserID] = append(perUser[ev.UserID], ev)
	}
	bad := 0
	for i := range users {
		u := fmt.Sprintf("%s%d", prefix, i)
		evs := perUser[u]
		if len(evs) != 1 || evs[0].Outcome != pushflow.OutcomeSent {
			if bad++; bad <= 5 {
				t.Errorf("user %s: terminal events %+v, want exactly one sent", u, evs)
			}
		}
		switch n := st.APNs.CountByToken(fmt.Sprintf("%064x", i+1)); {
		case n == 0:
			if bad++; bad <= 5 {
				t.Errorf("user %s: APNs never accepted its notification", u)
			}
		case n > 1:
			duplicates += n - 1
		}
	}
	if bad > 5 {
		t.Errorf("... %d users in all without exactly one sent event and one accepted send", bad)
	}
	if len(perUser) != users {
		t.Errorf("events for %d users, want %d", len(perUser), users)
	}
	t.Logf("%d distinct events, %d replayed copies on push.deliveries, %d duplicate sends", len(byID), copies, duplicates)
	return duplicates
}

// checkLedgerEmpty checks that the run settled every ledger entry.
func checkLedgerEmpty(t *testing.T, redisAddr, group string) {
	t.Helper()
	reg := redisio.Open(redisAddr)
	defer reg.Close()
	n, err := reg.LedgerOpen(context.Background(), LedgerName(group))
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("ledger %s still holds %d entries after the run, want 0", LedgerName(group), n)
	}
}

// faultConfig is dispatch's configuration for an in-process bounded run
// against st, consuming as group.
func faultConfig(st *devstack.Stack, redisAddr, group string) Config {
	return Config{
		Common: options.Common{
			KafkaBrokers: st.Brokers[0], RequestsTopic: pushflow.TopicRequests, DevicesTopic: pushflow.TopicDevices, ClicksTopic: pushflow.TopicClicks,
			DeliveriesTopic: pushflow.TopicDeliveries, DeadLetterTopic: pushflow.TopicDeadLetter,
			RedisAddr: redisAddr, Until: "latest", Group: group, Start: "earliest", LogLevel: "warn",
		},
		APNs:                apnsio.Config{Endpoint: st.APNsURL, CAFile: st.APNsCAFile, KeyFile: st.APNsKeyFile, KeyID: st.APNsKeyID, TeamID: st.APNsTeamID},
		BatchSize:           100,
		RealtimeConcurrency: 8,
	}
}

func startFaultStack(t *testing.T, redisAddr string, users int) *devstack.Stack {
	t.Helper()
	st, err := devstack.Start(context.Background(), devstack.Options{RedisAddr: redisAddr, APNsOptions: []apnsiotest.Option{apnsiotest.WithRecordLimit(0)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	registerUsers(t, redisAddr, faultApp, "u", users, 0)
	return st
}

func runBounded(t *testing.T, cfg Config) time.Duration {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, s := beam.NewPipelineWithRoot()
	Build(s, cfg)
	start := time.Now()
	if err := ptestRun(context.Background(), p); err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}
	return time.Since(start)
}

// TestFaultProviderUnavailable: APNs answers 503 for 20 s, then 200. The
// devices wait in send's retry lane (their breaker opens) and every one is
// sent once the provider is back, none failed.
func TestFaultProviderUnavailable(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s outage")
	}
	const users = 2000
	st := startFaultStack(t, redistest.Start(t), users)
	if err := devstack.Produce(context.Background(), st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, faultRequests("outage", "u", 4, users/4)); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(20 * time.Second)
	st.APNs.Control(apnsiotest.Unavailable(until))
	took := runBounded(t, faultConfig(st, st.RedisAddr, "faults-503"))
	if time.Now().Before(until) {
		t.Errorf("the run ended %v before the outage did", time.Until(until))
	}
	t.Logf("run took %v; APNs saw %d requests for %d devices", took.Round(time.Millisecond), st.APNs.Requests(), users)
	if d := checkOutcomes(t, st, "outage", "u", users); d != 0 {
		t.Errorf("%d duplicate sends, want 0 (no crash)", d)
	}
	checkLedgerEmpty(t, st.RedisAddr, "faults-503")
}

// TestFaultProviderThrottles: APNs answers 429 with Retry-After: 5 for 10 s.
// The waits follow Retry-After (so the server sees few attempts per device,
// not a hammering) and every device is sent once.
func TestFaultProviderThrottles(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s throttle")
	}
	const users = 2000
	st := startFaultStack(t, redistest.Start(t), users)
	if err := devstack.Produce(context.Background(), st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, faultRequests("throttle", "u", 4, users/4)); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(10 * time.Second)
	st.APNs.Control(apnsiotest.Throttle(until, 5*time.Second))
	took := runBounded(t, faultConfig(st, st.RedisAddr, "faults-429"))
	if time.Now().Before(until) {
		t.Errorf("the run ended %v before the throttling did", time.Until(until))
	}
	reqs := st.APNs.Requests()
	t.Logf("run took %v; APNs saw %d requests for %d devices", took.Round(time.Millisecond), reqs, users)
	// Retry-After: 5 over 10 s allows about three throttled attempts per
	// device, then the one that succeeds.
	if reqs > 5*users {
		t.Errorf("APNs saw %d requests for %d devices, want at most %d: Retry-After not honoured", reqs, users, 5*users)
	}
	if d := checkOutcomes(t, st, "throttle", "u", users); d != 0 {
		t.Errorf("%d duplicate sends, want 0 (no crash)", d)
	}
	checkLedgerEmpty(t, st.RedisAddr, "faults-429")
}

// persistentRedis is a redis-server with an append-only file that can be
// stopped and started again on the same port with its data.
type persistentRedis struct {
	addr, dir string
	cmd       *exec.Cmd
}

func startPersistentRedis(t *testing.T) *persistentRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (make test installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &persistentRedis{addr: addr, dir: t.TempDir()}
	r.start(t)
	t.Cleanup(r.stop)
	return r
}

func (r *persistentRedis) start(t *testing.T) {
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r.dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning")
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c.Ping(context.Background()).Err() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("redis-server on %s did not come up", r.addr)
			return
		}
	}
}

func (r *persistentRedis) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// TestFaultRedisRestart: redis-server goes away for 5 s in the middle of a
// run and comes back with its data (append-only file). The pipeline stalls
// instead of failing and ends with every recipient sent once.
func TestFaultRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("a 5 s Redis outage")
	}
	const users = 10_000
	rs := startPersistentRedis(t)
	st := startFaultStack(t, rs.addr, users)
	st.APNs.SetLatency(2 * time.Millisecond)
	if err := devstack.Produce(context.Background(), st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, faultRequests("redis", "u", 20, users/20)); err != nil {
		t.Fatal(err)
	}
	cfg := faultConfig(st, rs.addr, "faults-redis")
	cfg.APNs.Concurrency = 8
	var wg sync.WaitGroup
	var stoppedAt int64
	wg.Go(func() {
		for deadline := time.Now().Add(2 * time.Minute); st.APNs.Count() < 2000; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				return
			}
		}
		stoppedAt = st.APNs.Count()
		rs.stop()
		time.Sleep(5 * time.Second)
		rs.start(t)
	})
	took := runBounded(t, cfg)
	wg.Wait()
	if stoppedAt == 0 || stoppedAt >= users {
		t.Fatalf("Redis was stopped after %d of %d sends, want mid-run", stoppedAt, users)
	}
	t.Logf("Redis stopped after %d sends for 5 s; run took %v; %d Redis commands stalled", stoppedAt, took.Round(time.Millisecond), redisio.Stalls())
	if d := checkOutcomes(t, st, "redis", "u", users); d != 0 {
		t.Errorf("%d duplicate sends, want 0 (no crash)", d)
	}
	checkLedgerEmpty(t, rs.addr, "faults-redis")
}

var (
	dispatchBinOnce sync.Once
	dispatchBin     string
	dispatchBinErr  error
)

// buildDispatch builds this package's command once per test binary.
func buildDispatch(t *testing.T) string {
	t.Helper()
	dispatchBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pushflow-dispatch-bin-")
		if err != nil {
			dispatchBinErr = err
			return
		}
		dispatchBin = filepath.Join(dir, "dispatch")
		out, err := exec.Command("go", "build", "-o", dispatchBin, ".").CombinedOutput()
		if err != nil {
			dispatchBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if dispatchBinErr != nil {
		t.Fatal(dispatchBinErr)
	}
	return dispatchBin
}

// TestFaultKilledMidSendThenRestarted is the held-out fault run of the
// reliability issue: 40 requests × 500 users; dispatch, run as an operator
// runs it (its own process, unbounded), is SIGKILLed once APNs has accepted
// 5,000 notifications, then started again on the same consumer group,
// bounded. The ledger replays what the killed run left open: every
// recipient is sent and has one terminal event; the only duplicates are
// sends whose outcome the crash kept from being recorded, at most one
// flush (--flush_recipients) per send stage in flight.
func TestFaultKilledMidSendThenRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the dispatch command twice")
	}
	const users, flush = 20_000, 200
	bin := buildDispatch(t)
	st := startFaultStack(t, redistest.Start(t), users)
	st.APNs.SetLatency(2 * time.Millisecond)
	if err := devstack.Produce(context.Background(), st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, faultRequests("kill", "u", 40, users/40)); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--kafka_brokers=" + st.Brokers[0], "--redis_addr=" + st.RedisAddr, "--kafka_group=faults-kill", "--kafka_start=earliest",
		"--apns_endpoint=" + st.APNsURL, "--apns_ca_file=" + st.APNsCAFile, "--apns_key_file=" + st.APNsKeyFile,
		"--apns_key_id=" + st.APNsKeyID, "--apns_team_id=" + st.APNsTeamID, "--apns_concurrency=8",
		"--delivery_table=file://" + t.TempDir(), "--batch_size=100", fmt.Sprintf("--flush_recipients=%d", flush), "--log_level=warn",
	}
	logs := filepath.Join(t.TempDir(), "dispatch.log")
	logf, err := os.Create(logs)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	first := exec.Command(bin, args...)
	first.Stdout, first.Stderr = logf, logf
	first.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(4 * time.Minute); st.APNs.Count() < 5000; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(-first.Process.Pid, syscall.SIGKILL)
			first.Wait()
			b, _ := os.ReadFile(logs)
			t.Fatalf("dispatch sent %d of %d in 4 minutes; its log:\n%s", st.APNs.Count(), users, b)
		}
	}
	syscall.Kill(-first.Process.Pid, syscall.SIGKILL)
	first.Wait()
	killedAt := st.APNs.Count()
	if killedAt >= users {
		t.Fatalf("dispatch had sent all %d before the kill: the test measures nothing", users)
	}

	second := exec.Command(bin, append(args, "--until=latest")...)
	second.Stdout, second.Stderr = logf, logf
	done := make(chan error, 1)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- second.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			b, _ := os.ReadFile(logs)
			t.Fatalf("restarted dispatch: %v; log:\n%s", err, b)
		}
	case <-time.After(5 * time.Minute):
		second.Process.Kill()
		t.Fatalf("restarted dispatch did not finish in 5 minutes")
	}
	t.Logf("killed after %d of %d sends; after the restart APNs accepted %d in all", killedAt, users, st.APNs.Count())
	dups := checkOutcomes(t, st, "kill", "u", users)
	// In flight at the kill: the flush of each send stage (the paced lane's
	// send runs as one stage; Prism may run two of its bundles at once).
	if bound := 2 * flush; dups > bound {
		t.Errorf("%d duplicate sends after the crash, want at most %d (two flushes of --flush_recipients=%d)", dups, bound, flush)
	}
	checkLedgerEmpty(t, st.RedisAddr, "faults-kill")
}
