// Command devrun is what `make run` runs: it starts the embedded dev stack
// (Kafka-protocol broker, Redis-protocol store, APNs test server), produces
// testdata/devices.jsonl and testdata/requests.jsonl to their topics, runs
// the registry pipeline and then the dispatch pipeline as separate processes
// against it (exactly the flags a deployment uses, with --until=latest), and
// prints what happened: requests, sent, failed, dropped by reason, dead
// letters, and where the delivery table is.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/tableio"
	"github.com/pushflow/pushflow/internal/devstack"
)

func main() {
	registryBin := flag.String("registry_bin", "bin/registry", "registry pipeline binary")
	dispatchBin := flag.String("dispatch_bin", "bin/dispatch", "dispatch pipeline binary")
	testdata := flag.String("testdata", "testdata", "directory with devices.jsonl, requests.jsonl, apns-unregistered.txt")
	out := flag.String("out", ".pushflow-run", "directory for the run's delivery table and dev stack files (emptied first)")
	logLevel := flag.String("log_level", "warn", "log level passed to the pipelines")
	flag.Parse()
	if err := run(context.Background(), *registryBin, *dispatchBin, *testdata, *out, *logLevel); err != nil {
		fmt.Fprintf(os.Stderr, "devrun: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, registryBin, dispatchBin, testdata, out, logLevel string) error {
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	st, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(out, "stack")})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.UnregisterTokensFile(filepath.Join(testdata, "apns-unregistered.txt")); err != nil {
		return err
	}
	nDev, err := devstack.ProduceFile(ctx, st.Brokers, pushflow.TopicDevices, pushflow.TopicDevices, filepath.Join(testdata, "devices.jsonl"))
	if err != nil {
		return err
	}
	nReq, err := devstack.ProduceFile(ctx, st.Brokers, pushflow.TopicRequests, pushflow.TopicRequests, filepath.Join(testdata, "requests.jsonl"))
	if err != nil {
		return err
	}
	fmt.Printf("dev stack: kafka %s, redis %s, apns %s, fcm %s\n", st.Brokers[0], st.RedisAddr, st.APNsURL, st.FCMURL)
	fmt.Printf("produced %d device events to %s and %d push requests to %s\n\n", nDev, pushflow.TopicDevices, nReq, pushflow.TopicRequests)

	common := []string{"--kafka_brokers=" + strings.Join(st.Brokers, ","), "--redis_addr=" + st.RedisAddr, "--until=latest", "--log_level=" + logLevel}
	if err := child(ctx, "registry", registryBin, common...); err != nil {
		return err
	}
	table := "file://" + filepath.Join(out, "deliveries")
	if err := child(ctx, "dispatch", dispatchBin, append(common,
		"--apns_endpoint="+st.APNsURL, "--apns_ca_file="+st.APNsCAFile,
		"--apns_key_file="+st.APNsKeyFile, "--apns_key_id="+st.APNsKeyID, "--apns_team_id="+st.APNsTeamID,
		"--fcm_endpoint="+st.FCMURL, "--fcm_project_id="+st.FCMProjectID,
		"--delivery_table="+table, "--audience_roots="+testdata)...); err != nil {
		return err
	}

	sum, err := tableio.Summarize(strings.TrimPrefix(table, "file://"))
	if err != nil {
		return err
	}
	deadLetters, err := devstack.ReadTopic(st.Brokers, pushflow.TopicDeadLetter)
	if err != nil {
		return err
	}
	dead := len(deadLetters)
	fmt.Printf("\n== pushflow dev run ==\n")
	fmt.Printf("push requests produced:   %d\n", nReq)
	fmt.Printf("notifications accepted by the APNs test server: %d, by the FCM test server: %d\n", st.APNs.Count(), st.FCM.Count())
	fmt.Printf("dead letters on %s: %d (device events and requests that failed to decode or validate)\n", pushflow.TopicDeadLetter, dead)
	fmt.Printf("delivery table: %s\n%s", table, sum)
	fmt.Printf("\nquery it: go run ./connectors/tableio/cmd/pushflow-query --table %s \"SELECT request_id, user_id, device_id, stage, outcome, reason FROM deliveries ORDER BY request_id, user_id\"\n", table)
	return nil
}

// child runs one pipeline binary, prefixing its output.
func child(ctx context.Context, name, bin string, args ...string) error {
	fmt.Printf("-- running %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = prefixed(os.Stdout, name)
	cmd.Stderr = prefixed(os.Stderr, name)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	slog.Debug("pipeline done", "name", name, "took", time.Since(start))
	return nil
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func prefixed(w io.Writer, name string) io.Writer {
	return &prefixWriter{w: w, prefix: "[" + name + "] "}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			if _, err := io.WriteString(p.w, p.prefix+line); err != nil {
				return 0, err
			}
		}
	}
	return len(b), nil
}
