package tableio

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/parquet-go/parquet-go"

	"github.com/pushflow/pushflow"
)

// Files lists the committed part files of the local table in dir, sorted by
// path (so by day first). Temporary files of writers in progress, and any
// name starting with "." or "_", are left out. A missing dir is an error.
func Files(dir string) ([]string, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("tableio: table directory: %w", err)
	}
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != dir && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(name, ".parquet") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tableio: list %s: %w", dir, err)
	}
	slices.Sort(files)
	return files, nil
}

// Scan calls fn with every row of the local table in dir, file by file,
// holding one batch of rows in memory at a time. Times are in UTC. It stops
// at the first error, from reading or from fn, and returns it.
func Scan(dir string, fn func(pushflow.DeliveryEvent) error) error {
	files, err := Files(dir)
	if err != nil {
		return err
	}
	batch := make([]pushflow.DeliveryEvent, 1024)
	for _, path := range files {
		if err := scanFile(path, batch, fn); err != nil {
			return err
		}
	}
	return nil
}

func scanFile(path string, batch []pushflow.DeliveryEvent, fn func(pushflow.DeliveryEvent) error) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("tableio: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("tableio: %w", err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("tableio: open %s: %w", path, err)
	}
	// parquet-go panics when a file's schema cannot be converted to the row
	// type; a foreign file in the table directory must not crash the reader.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("tableio: read %s: %v", path, r)
		}
	}()
	r := parquet.NewGenericReader[pushflow.DeliveryEvent](pf, readerOptions()...)
	defer r.Close()
	for {
		n, rerr := r.Read(batch)
		for i := range batch[:n] {
			ev := batch[i]
			ev.RequestTime = ev.RequestTime.UTC()
			ev.EventTime = ev.EventTime.UTC()
			if err := fn(ev); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("tableio: read %s: %w", path, rerr)
		}
	}
}

// ReadDir returns every row of the local table in dir, in file order (see
// Files). Use Scan for tables that do not fit in memory.
func ReadDir(dir string) ([]pushflow.DeliveryEvent, error) {
	var rows []pushflow.DeliveryEvent
	err := Scan(dir, func(ev pushflow.DeliveryEvent) error {
		rows = append(rows, ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// OutcomeReason is a (outcome, reason) pair, as counted by Summary.
type OutcomeReason struct {
	Outcome, Reason string
}

// Summary counts the rows of a delivery table.
type Summary struct {
	Rows      int64                   // rows in the table, one per event_id
	Replayed  int64                   // further copies of an event_id (written again by a replay), not in Rows
	Files     int                     // committed part files
	Requests  int                     // distinct request_id values
	ByOutcome map[string]int64        // rows per outcome
	ByReason  map[OutcomeReason]int64 // rows per (outcome, reason); reason "" for sent rows
}

// Summarize scans the local table in dir and counts its rows by outcome, by
// (outcome, reason), and its distinct requests, counting each event_id once
// (rows without one, written before it existed, each count). Memory grows
// with the number of distinct requests and event ids.
func Summarize(dir string) (Summary, error) {
	files, err := Files(dir)
	if err != nil {
		return Summary{}, err
	}
	s := Summary{
		Files:     len(files),
		ByOutcome: map[string]int64{},
		ByReason:  map[OutcomeReason]int64{},
	}
	requests := map[string]struct{}{}
	seen := map[string]struct{}{}
	batch := make([]pushflow.DeliveryEvent, 1024)
	for _, path := range files {
		err := scanFile(path, batch, func(ev pushflow.DeliveryEvent) error {
			if ev.EventID != "" {
				if _, dup := seen[ev.EventID]; dup {
					s.Replayed++
					return nil
				}
				seen[ev.EventID] = struct{}{}
			}
			s.Rows++
			s.ByOutcome[ev.Outcome]++
			s.ByReason[OutcomeReason{ev.Outcome, ev.Reason}]++
			if _, ok := requests[ev.RequestID]; !ok {
				requests[ev.RequestID] = struct{}{}
			}
			return nil
		})
		if err != nil {
			return Summary{}, err
		}
	}
	s.Requests = len(requests)
	return s, nil
}

// String renders the summary as aligned text: totals, then outcomes, then
// (outcome, reason) pairs, each by descending count.
func (s Summary) String() string {
	var b strings.Builder
	s.WriteTo(&b)
	return b.String()
}

// WriteTo writes the summary as String renders it.
func (s Summary) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tabwriter.NewWriter(cw, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "rows\t%d\n", s.Rows)
	fmt.Fprintf(tw, "requests\t%d\n", s.Requests)
	fmt.Fprintf(tw, "files\t%d\n", s.Files)
	if s.Replayed > 0 {
		fmt.Fprintf(tw, "replayed copies (not counted)\t%d\n", s.Replayed)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(cw, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "\noutcome\trows\n")
	for _, k := range sortedByCount(s.ByOutcome, strings.Compare) {
		fmt.Fprintf(tw, "%s\t%d\n", k, s.ByOutcome[k])
	}
	fmt.Fprintf(tw, "\noutcome\treason\trows\n")
	for _, k := range sortedByCount(s.ByReason, func(a, b OutcomeReason) int {
		return cmp.Or(strings.Compare(a.Outcome, b.Outcome), strings.Compare(a.Reason, b.Reason))
	}) {
		reason := k.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", k.Outcome, reason, s.ByReason[k])
	}
	err := tw.Flush()
	if err == nil {
		err = cw.err
	}
	return cw.n, err
}

// sortedByCount returns m's keys by descending count, ties by key.
func sortedByCount[K comparable](m map[K]int64, compareKeys func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), compareKeys(a, b))
	})
	return keys
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}
