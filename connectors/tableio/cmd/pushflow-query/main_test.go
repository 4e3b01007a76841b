package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/tableio"
)

var (
	t0 = time.Date(2026, 11, 22, 9, 59, 58, 0, time.UTC)
	t1 = time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
)

// writeTestTable writes a small delivery table over two days and returns its spec.
func writeTestTable(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ev := func(req, user, dev, stage, outcome, reason string, at time.Time) pushflow.DeliveryEvent {
		return pushflow.DeliveryEvent{V: 1, RequestID: req, Campaign: "c-7", App: "com.example.news",
			Category: "news", Priority: "normal", UserID: user, DeviceID: dev, Platform: "ios",
			Stage: stage, Outcome: outcome, Reason: reason, Attempts: 1,
			RequestTime: t0, EventTime: at, LatencyMs: at.Sub(t0).Milliseconds()}
	}
	events := []pushflow.DeliveryEvent{
		// u1 has two devices for r-1: one dropped by quiet hours, one whose
		// token APNs no longer knows.
		ev("r-1", "u1", "d1", "filter", "dropped", "quiet_hours", t0.Add(3*time.Millisecond)),
		ev("r-1", "u1", "d9", "send", "failed", "Unregistered", t0.Add(1234*time.Millisecond)),
		ev("r-1", "u2", "d2", "send", "sent", "", t0.Add(15*time.Millisecond)),
		ev("r-2", "u1", "d1", "send", "sent", "", t1),
		ev("r-2", "u3", "", "expand", "dropped", "no_device", t1),
	}
	if _, err := tableio.WriteBatch(dir, events); err != nil {
		t.Fatal(err)
	}
	return "file://" + dir
}

const whyQuery = `SELECT stage,outcome,reason,device_id,event_time FROM deliveries
	WHERE user_id='u1' AND request_id='r-1' ORDER BY event_time`

func TestWhyQueryRows(t *testing.T) {
	spec := writeTestTable(t)
	cols, rows, err := queryRows(context.Background(), spec, whyQuery)
	if err != nil {
		t.Fatalf("queryRows(why) error = %v", err)
	}
	if diff := cmp.Diff([]string{"stage", "outcome", "reason", "device_id", "event_time"}, cols); diff != "" {
		t.Errorf("columns mismatch (-want +got):\n%s", diff)
	}
	want := [][]any{
		{"filter", "dropped", "quiet_hours", "d1", t0.Add(3 * time.Millisecond)},
		{"send", "failed", "Unregistered", "d9", t0.Add(1234 * time.Millisecond)},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("why rows mismatch (-want +got):\n%s", diff)
	}
}

func TestWhyQueryTableFormat(t *testing.T) {
	spec := writeTestTable(t)
	var out bytes.Buffer
	if err := runQuery(context.Background(), spec, whyQuery, formatTable, &out); err != nil {
		t.Fatal(err)
	}
	want := `stage   outcome  reason        device_id  event_time
------  -------  ------------  ---------  ------------------------
filter  dropped  quiet_hours   d1         2026-11-22T09:59:58.003Z
send    failed   Unregistered  d9         2026-11-22T09:59:59.234Z
(2 rows)
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("table output mismatch (-want +got):\n%s", diff)
	}
}

func TestQueryCSVAndJSON(t *testing.T) {
	spec := writeTestTable(t)
	q := `SELECT day, outcome, count(*) AS n, max(latency_ms) AS max_latency, avg(latency_ms) / 4 AS q
		FROM deliveries GROUP BY ALL ORDER BY day, outcome`

	var out bytes.Buffer
	if err := runQuery(context.Background(), spec, q, formatCSV, &out); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatalf("CSV output does not parse: %v\n%s", err, out.String())
	}
	wantCSV := [][]string{
		{"day", "outcome", "n", "max_latency", "q"},
		{"2026-11-22", "dropped", "1", "3", "0.75"},
		{"2026-11-22", "failed", "1", "1234", "308.5"},
		{"2026-11-22", "sent", "1", "15", "3.75"},
		{"2026-11-23", "dropped", "1", "54002000", "13500500"},
		{"2026-11-23", "sent", "1", "54002000", "13500500"},
	}
	if diff := cmp.Diff(wantCSV, records); diff != "" {
		t.Errorf("CSV mismatch (-want +got):\n%s", diff)
	}

	out.Reset()
	if err := runQuery(context.Background(), spec, whyQuery, formatJSON, &out); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, out.String())
	}
	wantJSON := []map[string]any{
		{"stage": "filter", "outcome": "dropped", "reason": "quiet_hours", "device_id": "d1", "event_time": "2026-11-22T09:59:58.003Z"},
		{"stage": "send", "outcome": "failed", "reason": "Unregistered", "device_id": "d9", "event_time": "2026-11-22T09:59:59.234Z"},
	}
	if diff := cmp.Diff(wantJSON, got); diff != "" {
		t.Errorf("JSON mismatch (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(out.String(), "[\n{\"stage\":") {
		t.Errorf("JSON keys are not in column order:\n%s", out.String())
	}
}

func TestDayPartitionColumn(t *testing.T) {
	spec := writeTestTable(t)
	_, rows, err := queryRows(context.Background(), spec,
		`SELECT typeof(day), count(*) FROM deliveries WHERE day = DATE '2026-11-23' GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]any{{"DATE", int64(2)}}, rows); diff != "" {
		t.Errorf("day partition rows mismatch (-want +got):\n%s", diff)
	}
}

// TestHelpDescribesTheView keeps the column list of --help true.
func TestHelpDescribesTheView(t *testing.T) {
	spec := writeTestTable(t)
	_, rows, err := queryRows(context.Background(), spec, `SELECT column_name, column_type FROM (DESCRIBE deliveries)`)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range rows {
		want = append(want, fmt.Sprintf("%s %s", r[0], strings.ReplaceAll(r[1].(string), "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")))
	}
	var got []string
	_, columns, _ := strings.Cut(usage, "  column        type         meaning\n")
	columns, _, _ = strings.Cut(columns, "\n\n")
	for _, line := range strings.Split(columns, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(line, "   ") {
			got = append(got, f[0]+" "+f[1])
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("--help columns differ from DESCRIBE deliveries (-describe +help):\n%s", diff)
	}
}

func TestZeroTimeIsNull(t *testing.T) {
	dir := t.TempDir()
	ev := pushflow.DeliveryEvent{V: 1, RequestID: "r-z", Outcome: "dropped", EventTime: t0} // no request_time
	if _, err := tableio.WriteBatch(dir, []pushflow.DeliveryEvent{ev}); err != nil {
		t.Fatal(err)
	}
	_, rows, err := queryRows(context.Background(), "file://"+dir, `SELECT request_time, event_time FROM deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]any{{nil, t0}}, rows); diff != "" {
		t.Errorf("zero request_time mismatch (-want +got):\n%s", diff)
	}
}

func TestEmptyTable(t *testing.T) {
	dir := t.TempDir()
	_, rows, err := queryRows(context.Background(), "file://"+dir, `SELECT count(*), min(event_time), min(day) FROM deliveries`)
	if err != nil {
		t.Fatalf("query over an empty table: %v", err)
	}
	if diff := cmp.Diff([][]any{{int64(0), nil, nil}}, rows); diff != "" {
		t.Errorf("empty table rows mismatch (-want +got):\n%s", diff)
	}
}

func TestRun(t *testing.T) {
	spec := writeTestTable(t)
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantStatus int
		wantOut    string // substring of stdout
		wantErr    string // substring of stderr
	}{
		{name: "help", args: []string{"--help"}, wantOut: "SELECT stage,outcome,reason,device_id,event_time FROM deliveries WHERE user_id='u1' AND request_id='r-1'"},
		{name: "help is not printed twice", args: []string{"-h"}, wantOut: "-format string"},
		{name: "flags after SQL", args: []string{"SELECT count(*) AS n FROM deliveries", "--table", spec, "--format=csv"}, wantOut: "n\n5\n"},
		{name: "SQL from stdin", args: []string{"--table=" + spec, "--format", "csv", "-"}, stdin: "SELECT count(DISTINCT request_id) AS r FROM deliveries", wantOut: "r\n2\n"},
		{name: "no table", args: []string{"SELECT 1"}, wantStatus: 2, wantErr: "--table is required"},
		{name: "no SQL", args: []string{"--table", spec}, wantStatus: 2, wantErr: "no SQL given"},
		{name: "bad format", args: []string{"--table", spec, "--format=xml", "SELECT 1"}, wantStatus: 2, wantErr: "want table, csv or json"},
		{name: "bad flag", args: []string{"--tabel", spec}, wantStatus: 2, wantErr: "flag provided but not defined"},
		{name: "bigquery", args: []string{"--table", "bq://p.d.t", "SELECT 1"}, wantStatus: 1, wantErr: "need the bigquery build"},
		{name: "missing dir", args: []string{"--table", "file:///nonexistent/pushflow", "SELECT 1"}, wantStatus: 1, wantErr: "no such file or directory"},
		{name: "bad SQL", args: []string{"--table", spec, "SELEC 1"}, wantStatus: 1, wantErr: "syntax error"},
		{name: "unknown column", args: []string{"--table", spec, "SELECT nope FROM deliveries"}, wantStatus: 1, wantErr: "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := run(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if status != tc.wantStatus {
				t.Errorf("run(%q) = %d, want %d; stderr:\n%s", tc.args, status, tc.wantStatus, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantOut) {
				t.Errorf("run(%q) stdout = %q, want it to contain %q", tc.args, stdout.String(), tc.wantOut)
			}
			if tc.wantStatus == 0 && stderr.Len() > 0 {
				t.Errorf("run(%q) wrote to stderr: %q", tc.args, stderr.String())
			}
			if strings.Count(stdout.String(), "Usage:") > 1 {
				t.Errorf("run(%q) printed the usage twice", tc.args)
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("run(%q) stderr = %q, want it to contain %q", tc.args, stderr.String(), tc.wantErr)
			}
		})
	}
}

func TestQuotedTableDir(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "it's here")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	ev := pushflow.DeliveryEvent{V: 1, RequestID: "r-q", EventTime: t0}
	if _, err := tableio.WriteBatch(parent, []pushflow.DeliveryEvent{ev}); err != nil {
		t.Fatal(err)
	}
	_, rows, err := queryRows(context.Background(), "file://"+parent, `SELECT request_id FROM deliveries`)
	if err != nil || len(rows) != 1 || rows[0][0] != "r-q" {
		t.Errorf("query over a dir with a quote = %v, %v, want one row r-q", rows, err)
	}
}
