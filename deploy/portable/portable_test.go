package portable

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/devstack"
)

// Packages built by the test, relative to the module root (or a module path).
const (
	registryPkg = "./pipelines/registry"
	dispatchPkg = "./pipelines/dispatch"
	prismPkg    = "github.com/apache/beam/sdks/v2/go/cmd/prism"
	bootPkg     = "github.com/apache/beam/sdks/v2/go/container" // the Go SDK container's entrypoint; builds as "container"
)

// TestPipelinesThroughPrismJobServer builds the registry and dispatch
// binaries, Beam's Prism command and Beam's Go SDK container boot program,
// starts Prism as a standalone job server on loopback, and runs registry
// then dispatch as child processes submitted with
//
//	--runner=universal --endpoint=localhost:<job_port>
//
// once per SDK environment, each on a fresh embedded dev stack
// (Kafka-protocol broker, Redis-protocol store, APNs test server) in this
// process:
//
//   - loopback: --environment_type=LOOPBACK; the workers are the submitting
//     child processes themselves.
//   - worker_pool: --environment_type=EXTERNAL with a worker pool that starts
//     Beam's boot program per worker, and --worker_binary; the job server
//     stages the pipeline binary as an artifact and boot downloads and runs
//     it, as the Go SDK container does on Flink (worker-pool sidecar) and
//     Dataflow.
//
// Each checks that the portable run has the in-process run's outcomes: the
// delivery table, the dead letters, what the APNs server accepted, and that
// both jobs are DONE on the job server. A third subtest, dataflow_dry_run,
// has deploy/dataflow/run-dispatch.sh translate dispatch into the Dataflow
// job it would submit, offline.
func TestPipelinesThroughPrismJobServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four binaries and runs four pipelines through a job server; skipped with -short")
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	work := t.TempDir()
	binDir := filepath.Join(work, "bin")

	// 1. Build. One `go build` for the four mains shares the build cache
	// with `make build` and compiles them in parallel.
	build := exec.CommandContext(ctx, goTool(), "build", "-o", binDir+string(filepath.Separator), registryPkg, dispatchPkg, prismPkg, bootPkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bins := binaries{
		registry: filepath.Join(binDir, "registry"), dispatch: filepath.Join(binDir, "dispatch"),
		prism: filepath.Join(binDir, "prism"), boot: filepath.Join(binDir, "container"),
	}
	t.Logf("go build: %s", time.Since(began).Round(time.Millisecond))

	// 2. The job server, shared by both environments.
	jobPort, webPort := freePort(t), freePort(t)
	prismLog := &syncBuffer{}
	prism := exec.Command(bins.prism,
		"--job_port="+strconv.Itoa(jobPort), "--web_port="+strconv.Itoa(webPort),
		"--log_level=warn", "--log_kind=text")
	prism.Stdout, prism.Stderr = prismLog, prismLog
	prism.SysProcAttr = sysProcAttr()
	if err := prism.Start(); err != nil {
		t.Fatalf("start prism: %v", err)
	}
	t.Cleanup(func() {
		// The job server is ours: kill it by its pid and reap it.
		_ = prism.Process.Kill()
		_ = prism.Wait()
		if t.Failed() {
			t.Logf("prism job server output:\n%s", tail(prismLog.String(), 4000))
		}
	})
	endpoint := "localhost:" + strconv.Itoa(jobPort)
	up := time.Now()
	waitForPort(t, ctx, endpoint, time.Minute)
	t.Logf("job server answering on %s after %s", endpoint, time.Since(up).Round(time.Millisecond))

	t.Run("loopback", func(t *testing.T) {
		env := func(string) []string { return []string{"--environment_type=LOOPBACK"} }
		runScenario(t, ctx, root, bins, endpoint, "loopback", env)
	})
	t.Run("worker_pool", func(t *testing.T) {
		pool := startWorkerPool(t, bins.boot, root, []string{bins.registry, bins.dispatch})
		env := func(bin string) []string {
			return []string{"--environment_type=EXTERNAL", "--environment_config=" + pool, "--worker_binary=" + bin}
		}
		runScenario(t, ctx, root, bins, endpoint, "worker-pool", env)
	})
	t.Run("dataflow_dry_run", func(t *testing.T) {
		dataflowDryRun(t, ctx, root, bins.dispatch)
	})
	t.Logf("whole test: %s", time.Since(began).Round(time.Millisecond))
}

// dataflowDryRun runs deploy/dataflow/run-dispatch.sh with DRY_RUN=1 and
// the dispatch binary built above: Beam's Dataflow runner translates the
// pipeline into the Dataflow job it would submit and prints it, offline (no
// credentials: HOME is empty, uploads and submission are skipped). It checks
// that the job is a streaming Runner v2 job with the harness image.
func dataflowDryRun(t *testing.T, ctx context.Context, root, dispatch string) {
	const image = "europe-docker.pkg.dev/p/pushflow/pushflow-beam:t"
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "deploy", "dataflow", "run-dispatch.sh"), "--log_level=info")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir(),
		"PROJECT=p", "REGION=europe-west1", "BUCKET=gs://b/pushflow", "IMAGE=" + image,
		"KAFKA_BROKERS=k:9092", "REDIS_ADDR=r:6379", "APNS_KEY_FILE=/var/run/secrets/pushflow/apns-key.p8",
		"APNS_KEY_ID=KEYID12345", "APNS_TEAM_ID=TEAMID1234",
		"WORKER_BIN=" + dispatch, "SUBMIT_BIN=" + dispatch, "DRY_RUN=1",
	}
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run-dispatch.sh DRY_RUN=1: %v\n%s", err, tail(string(out), 4000))
	}
	// The job is printed as JSON inside a log line: quotes are escaped.
	for _, want := range []string{
		"Dry-run: not submitting job!",
		`\"type\": \"JOB_TYPE_STREAMING\"`,
		`\"containerImage\": \"` + image + `\"`,
		`\"use_runner_v2\"`, `\"enable_streaming_engine\"`,
		`\"tempStoragePrefix\": \"gs://b/pushflow/temp\"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run output lacks %s:\n%s", want, tail(string(out), 3000))
		}
	}
}

type binaries struct{ registry, dispatch, prism, boot string }

// runScenario seeds a fresh dev stack, runs registry then dispatch through
// the job server at endpoint with the SDK environment flags envFlags(binary)
// returns, and checks the outcomes.
func runScenario(t *testing.T, ctx context.Context, root string, bins binaries, endpoint, name string, envFlags func(bin string) []string) {
	began := time.Now()
	work := t.TempDir()
	st, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(work, "stack")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	td := filepath.Join(root, "testdata")
	if err := st.UnregisterTokensFile(filepath.Join(td, "apns-unregistered.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := devstack.ProduceFile(ctx, st.Brokers, pushflow.TopicDevices, pushflow.TopicDevices, filepath.Join(td, "devices.jsonl")); err != nil {
		t.Fatal(err)
	}
	nReq, err := devstack.ProduceFile(ctx, st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, filepath.Join(td, "requests.jsonl"))
	if err != nil {
		t.Fatal(err)
	}

	// registry, then dispatch. cwd is the repo root: the file target in
	// requests.jsonl is the relative path testdata/audience.txt, resolved
	// by the worker (the child itself, or a boot-started worker whose cwd
	// has a testdata link to the repo's).
	childTmp := filepath.Join(work, "tmp") // Beam leaves beamloopbackworker-* files in TMPDIR
	if err := os.MkdirAll(childTmp, 0o755); err != nil {
		t.Fatal(err)
	}
	common := []string{
		"--runner=universal", "--endpoint=" + endpoint,
		"--kafka_brokers=" + strings.Join(st.Brokers, ","), "--redis_addr=" + st.RedisAddr,
		"--until=latest", "--log_level=warn",
	}
	registryJob, dispatchJob := "pushflow-registry-"+name, "pushflow-dispatch-"+name
	runChild(t, ctx, root, childTmp, bins.registry,
		concat(common, envFlags(bins.registry), []string{"--job_name=" + registryJob})...)
	tRegistry := time.Since(began)

	tableDir := filepath.Join(work, "deliveries")
	dispatchOut := runChild(t, ctx, root, childTmp, bins.dispatch,
		concat(common, envFlags(bins.dispatch), []string{"--job_name=" + dispatchJob,
			"--apns_endpoint=" + st.APNsURL, "--apns_ca_file=" + st.APNsCAFile,
			"--apns_key_file=" + st.APNsKeyFile, "--apns_key_id=" + st.APNsKeyID, "--apns_team_id=" + st.APNsTeamID,
			"--audience_roots=testdata", // relative, like the file target: resolved in the worker's cwd
			"--fcm_endpoint=" + st.FCMURL, "--fcm_project_id=" + st.FCMProjectID,
			"--delivery_table=file://" + tableDir})...)
	tDispatch := time.Since(began) - tRegistry

	// Both jobs ran on the job server (not on an in-process runner) and
	// finished DONE.
	checkJobs(t, ctx, endpoint, []string{registryJob, dispatchJob})
	// Counters come back through the JobService (GetJobMetrics). They are
	// not exact: Prism's job server once reported send_sent 14 for a run
	// whose table held 16 sent events (a late bundle's metrics missing at
	// DONE), so only their presence is checked; the table is the record.
	sentCounter := regexp.MustCompile(`(?m)^\s*send_sent\s+(\d+)$`).FindStringSubmatch(dispatchOut)
	if sentCounter == nil {
		t.Errorf("dispatch output has no send_sent counter (metrics over the JobService):\n%s", tail(dispatchOut, 2000))
	}

	events, err := tableio.ReadDir(tableDir)
	if err != nil {
		t.Fatal(err)
	}
	devstack.CheckTestdata(t, st, events)

	var nSent int64
	for _, ev := range events {
		if ev.Outcome == pushflow.OutcomeSent {
			nSent++
		}
	}
	if sentCounter != nil && sentCounter[1] != strconv.FormatInt(nSent, 10) {
		t.Logf("note: job metrics say send_sent %s, the delivery table %d sent events", sentCounter[1], nSent)
	}

	dead, err := devstack.ReadTopic(st.Brokers, pushflow.TopicDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	byTopic := map[string]int{}
	for _, d := range dead {
		var dl pushflow.DeadLetter
		if err := json.Unmarshal(d, &dl); err != nil {
			t.Fatalf("dead letter %s: %v", d, err)
		}
		if dl.Raw == "" {
			t.Errorf("dead letter %+v has no raw bytes", dl)
		}
		byTopic[dl.Topic]++
	}
	// 3 bad device events (registry) + 5 bad or unknown-app requests (dispatch).
	if want := map[string]int{pushflow.TopicDevices: 3, pushflow.TopicRequests: 5}; !cmp.Equal(byTopic, want) {
		t.Errorf("dead letters on %s by source topic = %v, want %v (8 in all)", pushflow.TopicDeadLetter, byTopic, want)
	}
	deliveries, err := devstack.ReadTopic(st.Brokers, pushflow.TopicDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	if len(deliveries) != len(events) {
		t.Errorf("%s has %d events, the delivery table %d", pushflow.TopicDeliveries, len(deliveries), len(events))
	}

	t.Logf("%s: %d requests, %d delivery events, %d sent, %d dead letters; registry %s, dispatch %s",
		name, nReq, len(events), nSent, len(dead), tRegistry.Round(time.Millisecond), tDispatch.Round(time.Millisecond))
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// checkJobs asserts that the job server ran every named job to DONE.
func checkJobs(t *testing.T, ctx context.Context, endpoint string, names []string) {
	t.Helper()
	cc, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := jobpb.NewJobServiceClient(cc).GetJobs(ctx, &jobpb.GetJobsRequest{})
	if err != nil {
		t.Fatalf("job server GetJobs: %v", err)
	}
	seen := map[string]jobpb.JobState_Enum{}
	for _, j := range resp.GetJobInfo() {
		seen[j.GetJobName()] = j.GetState()
	}
	for _, name := range names {
		if s, ok := seen[name]; !ok {
			t.Errorf("job server has no job %q (jobs: %v): did the pipeline run in-process instead?", name, seen)
		} else if s != jobpb.JobState_DONE {
			t.Errorf("job %q state = %v, want DONE", name, s)
		}
	}
}

// runChild runs one pipeline binary to completion in dir and returns its
// output; it fails the test with the output's tail if the binary fails.
func runChild(t *testing.T, ctx context.Context, dir, tmp, bin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 10 * time.Second
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (test budget exhausted: %v)", err, ctx.Err())
		}
		t.Fatalf("%s %s: %v after %s\n%s", filepath.Base(bin), strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond), tail(out.String(), 6000))
	}
	t.Logf("%s finished in %s:\n%s", filepath.Base(bin), time.Since(start).Round(time.Millisecond), tail(out.String(), 2000))
	return out.String()
}

// budget is how long the test may take: its -timeout minus a margin for
// the cleanups, at most 10 minutes.
func budget(t *testing.T) time.Duration {
	b := 10 * time.Minute
	if d, ok := t.Deadline(); ok {
		b = min(b, time.Until(d)-30*time.Second)
	}
	if b <= 0 {
		t.Fatal("no time left before the test deadline; run with -timeout 10m or more")
	}
	return b
}

// goTool is the go command of the toolchain running the test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitForPort waits until addr accepts TCP connections.
func waitForPort(t *testing.T, ctx context.Context, addr string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("job server at %s did not answer within %s: %v", addr, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// syncBuffer is a bytes.Buffer safe for a child's concurrent stdout and
// stderr copies.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

var _ io.Writer = (*syncBuffer)(nil)

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
