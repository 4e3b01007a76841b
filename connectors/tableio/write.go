package tableio

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/internal/stageout"
)

func init() {
	register.DoFn3x1[context.Context, pushflow.DeliveryEvent, func(int), error](&writeFn{})
	register.Emitter1[int]()
}

// Defaults of the writer options.
const (
	DefaultMaxBufferedRows = 50_000
	DefaultCompression     = "zstd"
)

var (
	rowsWritten  = beam.NewCounter("tableio", "rows_written")
	filesWritten = beam.NewCounter("tableio", "files_written")
)

// Option configures Write and WriteBatch.
type Option func(*options)

type options struct {
	maxRows     int
	compression string
}

// MaxBufferedRows bounds the rows a writer holds in memory: when a bundle has
// buffered n rows they are written out at once (one file per day) and the
// bundle goes on. The default is DefaultMaxBufferedRows; n must be positive.
func MaxBufferedRows(n int) Option { return func(o *options) { o.maxRows = n } }

// Compression sets the Parquet page codec: "zstd" (the default), "snappy"
// or "none".
func Compression(codec string) Option { return func(o *options) { o.compression = codec } }

func buildOptions(opts []Option) (options, error) {
	o := options{maxRows: DefaultMaxBufferedRows, compression: DefaultCompression}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxRows <= 0 {
		return o, fmt.Errorf("MaxBufferedRows(%d): want a positive row count", o.maxRows)
	}
	if _, err := codecOf(o.compression); err != nil {
		return o, err
	}
	return o, nil
}

func codecOf(name string) (compress.Codec, error) {
	switch name {
	case "zstd":
		return &parquet.Zstd, nil
	case "snappy":
		return &parquet.Snappy, nil
	case "none":
		return &parquet.Uncompressed, nil
	}
	return nil, fmt.Errorf("Compression(%q): want zstd, snappy or none", name)
}

// Write appends events to the delivery table named by spec (see ParseTable).
//
// events is a PCollection<pushflow.DeliveryEvent>, bounded or not, in any
// window. Each bundle writes one Parquet file per UTC day of EventTime when
// it finishes, and earlier when it has buffered MaxBufferedRows rows. An I/O
// error fails the bundle, which the runner retries. Counters
// tableio/rows_written and tableio/files_written count what was committed.
//
// Write panics with a "tableio.Write:" prefix on an invalid spec or option,
// and on a bq:// table, which this build cannot write.
func Write(s beam.Scope, spec string, events beam.PCollection, opts ...Option) {
	s = s.Scope("tableio.Write")
	t, err := ParseTable(spec)
	if err != nil {
		panic(fmt.Sprintf("tableio.Write: %v", err))
	}
	o, err := buildOptions(opts)
	if err != nil {
		panic(fmt.Sprintf("tableio.Write: %v", err))
	}
	// writeFn emits nothing; its output gives the stage a consumed output
	// (see package stageout).
	stageout.Consume(s, beam.ParDo(s, &writeFn{Dir: t.Dir, MaxRows: o.maxRows, Compression: o.compression}, events))
}

// writeFn buffers DeliveryEvents and writes them as day-partitioned Parquet
// files when the bundle finishes or the buffer is full.
type writeFn struct {
	Dir         string // absolute table directory
	MaxRows     int    // flush when this many rows are buffered
	Compression string // zstd, snappy or none

	w   *fileWriter
	buf []pushflow.DeliveryEvent
}

func (fn *writeFn) Setup() error {
	if fn.Compression == "" {
		fn.Compression = DefaultCompression
	}
	codec, err := codecOf(fn.Compression)
	if err != nil {
		return fmt.Errorf("tableio.Write: %w", err)
	}
	if fn.MaxRows <= 0 {
		fn.MaxRows = DefaultMaxBufferedRows
	}
	fn.w = newFileWriter(codec)
	return nil
}

func (fn *writeFn) StartBundle(_ func(int)) {
	fn.buf = fn.buf[:0]
}

func (fn *writeFn) ProcessElement(ctx context.Context, ev pushflow.DeliveryEvent, _ func(int)) error {
	fn.buf = append(fn.buf, ev)
	if len(fn.buf) >= fn.MaxRows {
		return fn.flush(ctx)
	}
	return nil
}

func (fn *writeFn) FinishBundle(ctx context.Context, _ func(int)) error {
	return fn.flush(ctx)
}

func (fn *writeFn) flush(ctx context.Context) error {
	if len(fn.buf) == 0 {
		return nil
	}
	files, rows, err := fn.w.writeDays(fn.Dir, fn.buf)
	// Files already renamed into place stay there and are written again when
	// the bundle is retried (at least once): count what landed.
	filesWritten.Inc(ctx, int64(len(files)))
	rowsWritten.Inc(ctx, int64(rows))
	clear(fn.buf) // drop string references for the GC
	fn.buf = fn.buf[:0]
	return err
}

// WriteBatch writes events to the local table directory dir outside a
// pipeline (backfills, demos, tests): one Parquet file per UTC day of
// EventTime, committed by rename. It returns the paths of the files it
// committed, also on error.
func WriteBatch(dir string, events []pushflow.DeliveryEvent, opts ...Option) ([]string, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("tableio.WriteBatch: %w", err)
	}
	codec, _ := codecOf(o.compression)
	w := newFileWriter(codec)
	var files []string
	for chunk := range slices.Chunk(slices.Clone(events), o.maxRows) {
		f, _, err := w.writeDays(dir, chunk)
		files = append(files, f...)
		if err != nil {
			return files, err
		}
	}
	return files, nil
}

// fileWriter writes Parquet files, reusing its buffers from file to file. It
// is not safe for concurrent use.
type fileWriter struct {
	bw *bufio.Writer
	pw *parquet.GenericWriter[pushflow.DeliveryEvent]
}

func newFileWriter(codec compress.Codec) *fileWriter {
	bw := bufio.NewWriterSize(nil, 256<<10)
	return &fileWriter{
		bw: bw,
		pw: parquet.NewGenericWriter[pushflow.DeliveryEvent](bw, writerOptions(
			parquet.Compression(codec),
			parquet.CreatedBy("pushflow tableio", "", ""),
		)...),
	}
}

// writeDays sorts rows (in place) by day, request, user and event time, and
// writes one file per day under dir. It returns the committed files' paths
// and how many rows they hold, also on error.
func (w *fileWriter) writeDays(dir string, rows []pushflow.DeliveryEvent) (files []string, committed int, err error) {
	if len(rows) == 0 {
		return nil, 0, nil
	}
	// Sorting clusters each request's rows, which makes the row-group
	// statistics of request_id and user_id selective and compresses better.
	slices.SortFunc(rows, func(a, b pushflow.DeliveryEvent) int {
		return cmp.Or(
			cmp.Compare(dayNumber(a.EventTime), dayNumber(b.EventTime)),
			strings.Compare(a.RequestID, b.RequestID),
			strings.Compare(a.UserID, b.UserID),
			a.EventTime.Compare(b.EventTime),
		)
	})
	for len(rows) > 0 {
		day := dayNumber(rows[0].EventTime)
		n := 1
		for n < len(rows) && dayNumber(rows[n].EventTime) == day {
			n++
		}
		path, err := w.writeFile(filepath.Join(dir, partitionDir(day)), rows[:n])
		if err != nil {
			return files, committed, err
		}
		files = append(files, path)
		committed += n
		rows = rows[n:]
	}
	return files, committed, nil
}

// writeFile writes rows to a new part file in the partition directory pdir,
// through a temporary name that is renamed into place once the file is
// complete and synced.
func (w *fileWriter) writeFile(pdir string, rows []pushflow.DeliveryEvent) (path string, err error) {
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return "", fmt.Errorf("tableio: create partition: %w", err)
	}
	name := fmt.Sprintf("part-%d-%016x.parquet", time.Now().UnixNano(), rand.Uint64())
	final := filepath.Join(pdir, name)
	tmp := filepath.Join(pdir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("tableio: create part file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w.bw.Reset(f)
	w.pw.Reset(w.bw)
	if _, err := w.pw.Write(rows); err != nil {
		return "", fmt.Errorf("tableio: write %s: %w", tmp, err)
	}
	if err := w.pw.Close(); err != nil {
		return "", fmt.Errorf("tableio: write %s: %w", tmp, err)
	}
	if err := w.bw.Flush(); err != nil {
		return "", fmt.Errorf("tableio: write %s: %w", tmp, err)
	}
	w.bw.Reset(nil) // don't keep the file reachable
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("tableio: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("tableio: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("tableio: commit %s: %w", final, err)
	}
	syncDir(pdir)
	return final, nil
}

// syncDir makes a rename in dir durable. Best effort: some file systems
// refuse to sync a directory, and the file itself is already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	d.Close()
}

const secondsPerDay = 24 * 60 * 60

// dayNumber is the UTC day of t, counted from the Unix epoch (floored, so
// days before 1970 are negative).
func dayNumber(t time.Time) int64 {
	s := t.Unix()
	d := s / secondsPerDay
	if s%secondsPerDay < 0 {
		d--
	}
	return d
}

// partitionDir names the partition of a day number: "day=2026-11-22".
func partitionDir(day int64) string {
	return "day=" + time.Unix(day*secondsPerDay, 0).UTC().Format(time.DateOnly)
}
