package tableio

import (
	stdcmp "cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pushflow/pushflow"

	// Prism's dynamic splits lose elements (see the package).
	_ "github.com/pushflow/pushflow/internal/prismsplit"
)

func TestMain(m *testing.M) {
	log.LogLevel = "warn"
	ptest.Main(m)
}

func beamScope() beam.Scope           { _, s := beam.NewPipelineWithRoot(); return s }
func beamEmpty() beam.PCollection     { return beam.PCollection{} }
func utcMillis(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

// shanghai is UTC+8: 2026-11-23 07:30 there is still 2026-11-22 in UTC.
var shanghai = time.FixedZone("CST", 8*60*60)

// testEvents spans two UTC days, has sub-millisecond times and times in a
// non-UTC zone, and covers every outcome.
func testEvents() []pushflow.DeliveryEvent {
	day1 := time.Date(2026, 11, 22, 9, 59, 58, 123_456_789, time.UTC)
	day2 := time.Date(2026, 11, 23, 0, 0, 0, 1_999_999, time.UTC)
	ev := func(req, user, dev, stage, outcome, reason string, at time.Time) pushflow.DeliveryEvent {
		return pushflow.DeliveryEvent{
			V: 1, RequestID: req, Campaign: "c-7", App: "com.example.news", Category: "news",
			Priority: "normal", UserID: user, DeviceID: dev, Platform: "ios",
			Stage: stage, Outcome: outcome, Reason: reason, Attempts: 1,
			RequestTime: day1.Add(-2 * time.Second), EventTime: at,
			LatencyMs: at.Sub(day1.Add(-2 * time.Second)).Milliseconds(),
		}
	}
	sent := ev("r-1", "u2", "d2", pushflow.StageSend, pushflow.OutcomeSent, "", day1.Add(15*time.Millisecond))
	sent.ProviderID = "apns-0001"
	failed := ev("r-2", "u3", "d3", pushflow.StageSend, pushflow.OutcomeFailed, "Unregistered", day2.Add(time.Hour))
	failed.Attempts = 3
	failed.Platform = "android"
	return []pushflow.DeliveryEvent{
		ev("r-1", "u1", "d1", pushflow.StageFilter, pushflow.OutcomeDropped, pushflow.ReasonQuietHours, day1.Add(3*time.Millisecond)),
		sent,
		ev("r-1", "u4", "", pushflow.StageExpand, pushflow.OutcomeDropped, pushflow.ReasonNoDevice, day1),
		// 07:30 in Shanghai on the 23rd is 23:30 UTC on the 22nd.
		ev("r-2", "u1", "d1", pushflow.StageFilter, pushflow.OutcomeDropped, pushflow.ReasonOptOut,
			time.Date(2026, 11, 23, 7, 30, 0, 500_500_000, shanghai)),
		failed,
		ev("r-3", "", "", pushflow.StageValidate, pushflow.OutcomeDropped, pushflow.ReasonUnknownApp, day2),
	}
}

// wantRows is what reading events back must give: times at millisecond
// precision, in UTC.
func wantRows(events []pushflow.DeliveryEvent) []pushflow.DeliveryEvent {
	want := slices.Clone(events)
	for i := range want {
		want[i].RequestTime = utcMillis(want[i].RequestTime)
		want[i].EventTime = utcMillis(want[i].EventTime)
	}
	return want
}

var anyOrder = cmpopts.SortSlices(func(a, b pushflow.DeliveryEvent) bool {
	if c := stdcmp.Or(
		strings.Compare(a.RequestID, b.RequestID),
		strings.Compare(a.UserID, b.UserID),
		strings.Compare(a.DeviceID, b.DeviceID),
		a.EventTime.Compare(b.EventTime),
		stdcmp.Compare(a.LatencyMs, b.LatencyMs),
	); c != 0 {
		return c < 0
	}
	return fmt.Sprint(a) < fmt.Sprint(b)
})

// tableFiles lists every file under dir, relative to it.
func tableFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func checkLayout(t *testing.T, dir string, wantDays []string) {
	t.Helper()
	days := map[string]bool{}
	for _, f := range tableFiles(t, dir) {
		if strings.HasSuffix(f, ".tmp") || strings.HasPrefix(filepath.Base(f), ".") {
			t.Errorf("temporary file %s left in the table", f)
			continue
		}
		part, name := filepath.Split(f)
		days[strings.TrimSuffix(part, "/")] = true
		if !strings.HasPrefix(name, "part-") || !strings.HasSuffix(name, ".parquet") {
			t.Errorf("file %s is not named part-<nanos>-<random>.parquet", f)
		}
	}
	var got []string
	for d := range days {
		got = append(got, d)
	}
	slices.Sort(got)
	if diff := cmp.Diff(wantDays, got); diff != "" {
		t.Errorf("partition directories mismatch (-want +got):\n%s", diff)
	}
}

func TestWritePipeline(t *testing.T) {
	dir := t.TempDir()
	events := testEvents()

	p, s := beam.NewPipelineWithRoot()
	Write(s, "file://"+dir, beam.CreateList(s, events))
	res, err := ptest.RunWithMetrics(p)
	if err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}

	got, err := ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%s) error = %v", dir, err)
	}
	if diff := cmp.Diff(wantRows(events), got, anyOrder); diff != "" {
		t.Errorf("ReadDir after Write mismatch (-want +got):\n%s", diff)
	}
	checkLayout(t, dir, []string{"day=2026-11-22", "day=2026-11-23"})

	counters := map[string]int64{}
	for _, c := range res.Metrics().AllMetrics().Counters() {
		if c.Namespace() == "tableio" {
			counters[c.Name()] += c.Result()
		}
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"rows_written": int64(len(events)), "files_written": int64(len(files))}
	if diff := cmp.Diff(want, counters); diff != "" {
		t.Errorf("tableio counters mismatch (-want +got):\n%s", diff)
	}
}

func TestWritePipelineFailsOnUnwritableDir(t *testing.T) {
	// A directory below a regular file cannot be created, even by root.
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The failure is the point: keep Prism's error logs out of the output.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	defer slog.SetDefault(prev)

	p, s := beam.NewPipelineWithRoot()
	Write(s, "file://"+blocker+"/table", beam.CreateList(s, testEvents()))
	err := ptest.Run(p)
	if err == nil || !strings.Contains(err.Error(), "tableio: create partition") {
		t.Fatalf("pipeline writing below a file: error = %v, want a tableio: create partition error", err)
	}
}

// runFn drives a writeFn through one bundle as a runner would.
func runFn(t testing.TB, fn *writeFn, events []pushflow.DeliveryEvent) error {
	t.Helper()
	if err := fn.Setup(); err != nil {
		return err
	}
	ctx := context.Background()
	fn.StartBundle(mustNotEmit)
	for _, ev := range events {
		if err := fn.ProcessElement(ctx, ev, mustNotEmit); err != nil {
			return err
		}
	}
	return fn.FinishBundle(ctx, mustNotEmit)
}

func TestWriteFnRoundTrip(t *testing.T) {
	for _, codec := range []string{"zstd", "snappy", "none"} {
		t.Run(codec, func(t *testing.T) {
			dir := t.TempDir()
			events := testEvents()
			if err := runFn(t, &writeFn{Dir: dir, Compression: codec}, events); err != nil {
				t.Fatalf("writeFn bundle error = %v", err)
			}
			got, err := ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantRows(events), got, anyOrder); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
			checkLayout(t, dir, []string{"day=2026-11-22", "day=2026-11-23"})
			// One file per (bundle, day).
			if files, _ := Files(dir); len(files) != 2 {
				t.Errorf("Files(%s) = %v, want one file per day", dir, files)
			}
		})
	}
}

func TestWriteFnTimesUTCMillis(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 23, 7, 30, 0, 123_999_999, shanghai)
	ev := pushflow.DeliveryEvent{V: 1, RequestID: "r-1", EventTime: at, RequestTime: at.Add(-time.Nanosecond)}
	if err := runFn(t, &writeFn{Dir: dir}, []pushflow.DeliveryEvent{ev}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDir(dir)
	if err != nil || len(got) != 1 {
		t.Fatalf("ReadDir = %v, %v, want one row", got, err)
	}
	wantEvent := time.Date(2026, 11, 22, 23, 30, 0, 123_000_000, time.UTC)
	wantRequest := time.Date(2026, 11, 22, 23, 30, 0, 123_000_000, time.UTC) // truncated, not rounded
	if !got[0].EventTime.Equal(wantEvent) || got[0].EventTime.Location() != time.UTC {
		t.Errorf("EventTime = %v, want %v in UTC", got[0].EventTime, wantEvent)
	}
	if !got[0].RequestTime.Equal(wantRequest) || got[0].RequestTime.Location() != time.UTC {
		t.Errorf("RequestTime = %v, want %v in UTC", got[0].RequestTime, wantRequest)
	}
	checkLayout(t, dir, []string{"day=2026-11-22"})
}

func TestWriteFnZeroTimesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ev := pushflow.DeliveryEvent{V: 1, RequestID: "r-0", Outcome: "dropped"}
	if err := runFn(t, &writeFn{Dir: dir}, []pushflow.DeliveryEvent{ev}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]pushflow.DeliveryEvent{ev}, got); diff != "" {
		t.Errorf("zero-time round trip mismatch (-want +got):\n%s", diff)
	}
	checkLayout(t, dir, []string{"day=0001-01-01"})
}

func TestWriteFnFlushesAtMaxRows(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var events []pushflow.DeliveryEvent
	for i := range 7 {
		events = append(events, pushflow.DeliveryEvent{V: 1, RequestID: "r-1", UserID: fmt.Sprint("u", i), EventTime: base.Add(time.Duration(i) * time.Second)})
	}
	fn := &writeFn{Dir: dir, MaxRows: 3}
	if err := fn.Setup(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fn.StartBundle(mustNotEmit)
	for _, ev := range events {
		if err := fn.ProcessElement(ctx, ev, mustNotEmit); err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := Files(dir); len(files) != 2 {
		t.Errorf("after 7 rows with MaxRows 3: %d files, want 2 (flushed at 3 and 6)", len(files))
	}
	if len(fn.buf) != 1 {
		t.Errorf("after 7 rows with MaxRows 3: %d rows buffered, want 1", len(fn.buf))
	}
	if err := fn.FinishBundle(ctx, mustNotEmit); err != nil {
		t.Fatal(err)
	}
	if files, _ := Files(dir); len(files) != 3 {
		t.Errorf("after FinishBundle: %d files, want 3", len(files))
	}
	got, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events, got, anyOrder); diff != "" {
		t.Errorf("rows mismatch (-want +got):\n%s", diff)
	}
	// The buffer is reused by the next bundle and starts empty.
	fn.StartBundle(mustNotEmit)
	if err := fn.FinishBundle(ctx, mustNotEmit); err != nil {
		t.Fatal(err)
	}
	if files, _ := Files(dir); len(files) != 3 {
		t.Errorf("an empty bundle wrote a file: %d files, want 3", len(files))
	}
}

func TestWriteFnErrorOnUnwritableDir(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := runFn(t, &writeFn{Dir: filepath.Join(blocker, "table")}, testEvents())
	if err == nil || !strings.Contains(err.Error(), "tableio: create partition") {
		t.Fatalf("FinishBundle below a regular file: error = %v, want a create partition error", err)
	}
}

func TestWriteFnErrorOnReadOnlyPartition(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root writes through permission bits; the test above covers the
		// error path for everyone.
		t.Skip("permission bits do not stop root")
	}
	dir := t.TempDir()
	pdir := filepath.Join(dir, "day=2026-11-22")
	if err := os.Mkdir(pdir, 0o555); err != nil {
		t.Fatal(err)
	}
	err := runFn(t, &writeFn{Dir: dir}, testEvents()[:1])
	if err == nil || !strings.Contains(err.Error(), "tableio: create part file") {
		t.Fatalf("FinishBundle into a read-only partition: error = %v, want a create part file error", err)
	}
}

func TestWriteBatch(t *testing.T) {
	dir := t.TempDir()
	events := testEvents()
	orig := slices.Clone(events)
	files, err := WriteBatch(dir, events, MaxBufferedRows(4))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(orig, events); diff != "" {
		t.Errorf("WriteBatch modified its input (-want +got):\n%s", diff)
	}
	// 6 rows in chunks of 4: chunk 1 spans both days, chunk 2 as well.
	listed, _ := Files(dir)
	slices.Sort(files)
	if diff := cmp.Diff(listed, files); diff != "" {
		t.Errorf("WriteBatch files differ from Files (-listed +returned):\n%s", diff)
	}
	got, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantRows(events), got, anyOrder); diff != "" {
		t.Errorf("WriteBatch round trip mismatch (-want +got):\n%s", diff)
	}
	if _, err := WriteBatch(dir, events, Compression("lz0")); err == nil {
		t.Error("WriteBatch with an unknown codec: nil error")
	}
}

func TestDayNumber(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), "day=2026-11-22"},
		{time.Date(2026, 11, 22, 23, 59, 59, 999_999_999, time.UTC), "day=2026-11-22"},
		{time.Date(2026, 11, 23, 7, 59, 59, 0, shanghai), "day=2026-11-22"},
		{time.Date(2026, 11, 23, 8, 0, 0, 0, shanghai), "day=2026-11-23"},
		{time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), "day=1969-12-31"},
		{time.Time{}, "day=0001-01-01"},
	}
	for _, tc := range tests {
		if got := partitionDir(dayNumber(tc.t)); got != tc.want {
			t.Errorf("partitionDir(dayNumber(%v)) = %q, want %q", tc.t, got, tc.want)
		}
	}
}

// BenchmarkWriteFn writes 1M rows per iteration through the writer DoFn's
// bundle logic (no runner): run with -benchtime=1x.
func BenchmarkWriteFn(b *testing.B) {
	const rows = 1_000_000
	base := time.Date(2026, 11, 22, 20, 0, 0, 0, time.UTC)
	reasons := []string{"", pushflow.ReasonQuietHours, pushflow.ReasonOptOut, pushflow.ReasonFrequencyCap, "Unregistered"}
	outcomes := []string{pushflow.OutcomeSent, pushflow.OutcomeDropped, pushflow.OutcomeDropped, pushflow.OutcomeDropped, pushflow.OutcomeFailed}
	events := make([]pushflow.DeliveryEvent, rows)
	for i := range events {
		k := i % len(reasons)
		events[i] = pushflow.DeliveryEvent{
			V: 1, RequestID: fmt.Sprintf("r-%d", i/10_000), Campaign: "c-7", App: "com.example.news",
			Category: "news", Priority: "bulk", UserID: fmt.Sprintf("u%07d", i), DeviceID: fmt.Sprintf("d%07d", i),
			Platform: "ios", Stage: pushflow.StageSend, Outcome: outcomes[k], Reason: reasons[k],
			ProviderID: fmt.Sprintf("apns-%08x", i), Attempts: 1,
			RequestTime: base, EventTime: base.Add(time.Duration(i) * 30 * time.Millisecond), // spans two days
			LatencyMs: int64(i % 500),
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var bytes int64
	for b.Loop() {
		dir := b.TempDir()
		if err := runFn(b, &writeFn{Dir: dir}, events); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		files, _ := Files(dir)
		for _, f := range files {
			st, _ := os.Stat(f)
			bytes += st.Size()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(bytes)/float64(rows*b.N), "bytes/row")
}

// mustNotEmit is the sink's output emitter: a sink never emits (its output
// only exists for package stageout).
func mustNotEmit(int) { panic("sink emitted an element") }
