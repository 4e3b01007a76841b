package tableio

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pushflow/pushflow"
)

func writeTestTable(t *testing.T) (string, []pushflow.DeliveryEvent) {
	t.Helper()
	dir := t.TempDir()
	events := testEvents()
	if _, err := WriteBatch(dir, events); err != nil {
		t.Fatal(err)
	}
	return dir, events
}

func TestFilesSkipsWritersInProgress(t *testing.T) {
	dir, events := writeTestTable(t)
	committed, err := Files(dir)
	if err != nil || len(committed) != 2 {
		t.Fatalf("Files = %v, %v, want 2 files", committed, err)
	}
	// A writer in progress, a hidden directory, and unrelated files.
	pdir := filepath.Join(dir, "day=2026-11-22")
	for _, name := range []string{".part-1-00.parquet.tmp", "_SUCCESS", "README.txt", ".hidden.parquet"} {
		if err := os.WriteFile(filepath.Join(pdir, name), []byte("not parquet"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, ".staging"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".staging", "part-9.parquet"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(committed, got); diff != "" {
		t.Errorf("Files with in-progress files mismatch (-want +got):\n%s", diff)
	}
	rows, err := ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir with in-progress files: %v", err)
	}
	if diff := cmp.Diff(wantRows(events), rows, anyOrder); diff != "" {
		t.Errorf("ReadDir mismatch (-want +got):\n%s", diff)
	}
}

func TestReadMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	if _, err := ReadDir(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadDir(missing) error = %v, want fs.ErrNotExist", err)
	}
	if _, err := Summarize(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Summarize(missing) error = %v, want fs.ErrNotExist", err)
	}
}

func TestReadEmptyDir(t *testing.T) {
	rows, err := ReadDir(t.TempDir())
	if err != nil || len(rows) != 0 {
		t.Errorf("ReadDir(empty) = %v, %v, want no rows and no error", rows, err)
	}
}

func TestReadCorruptFile(t *testing.T) {
	dir, _ := writeTestTable(t)
	bad := filepath.Join(dir, "day=2026-11-22", "part-0-bad.parquet")
	if err := os.WriteFile(bad, []byte("this is not a parquet file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadDir(dir)
	if err == nil || !strings.Contains(err.Error(), "part-0-bad.parquet") {
		t.Errorf("ReadDir with a corrupt file: error = %v, want one naming the file", err)
	}
}

func TestScanStopsAtCallbackError(t *testing.T) {
	dir, _ := writeTestTable(t)
	stop := errors.New("enough")
	n := 0
	err := Scan(dir, func(pushflow.DeliveryEvent) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("Scan returned %v after %d rows, want the callback's error after 2", err, n)
	}
}

func TestScanLargeTableInBatches(t *testing.T) {
	// More rows than one read batch (1024), over several files.
	dir := t.TempDir()
	base := testEvents()[0]
	var events []pushflow.DeliveryEvent
	for i := range 3000 {
		ev := base
		ev.UserID = "u" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
		ev.LatencyMs = int64(i)
		events = append(events, ev)
	}
	if _, err := WriteBatch(dir, events, MaxBufferedRows(1100)); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantRows(events), got, anyOrder); diff != "" {
		t.Errorf("ReadDir of 3000 rows mismatch (-want +got):\n%s", diff)
	}
}

func TestSummarize(t *testing.T) {
	dir, _ := writeTestTable(t)
	got, err := Summarize(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{
		Rows:      6,
		Files:     2,
		Requests:  3,
		ByOutcome: map[string]int64{"dropped": 4, "sent": 1, "failed": 1},
		ByReason: map[OutcomeReason]int64{
			{"dropped", "quiet_hours"}: 1,
			{"dropped", "no_device"}:   1,
			{"dropped", "opt_out"}:     1,
			{"dropped", "unknown_app"}: 1,
			{"sent", ""}:               1,
			{"failed", "Unregistered"}: 1,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Summarize mismatch (-want +got):\n%s", diff)
	}
	wantText := `rows      6
requests  3
files     2

outcome  rows
dropped  4
failed   1
sent     1

outcome  reason        rows
dropped  no_device     1
dropped  opt_out       1
dropped  quiet_hours   1
dropped  unknown_app   1
failed   Unregistered  1
sent     -             1
`
	if diff := cmp.Diff(wantText, got.String()); diff != "" {
		t.Errorf("Summary.String mismatch (-want +got):\n%s", diff)
	}
}
