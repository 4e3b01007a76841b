// Command pushflow-query runs SQL with DuckDB over the local delivery table
// (the Parquet files tableio.Write produces), exposed as the view
// "deliveries". It is the analyst's answer to "why did user X not get
// message Y?":
//
//	pushflow-query --table file:///var/lib/pushflow/deliveries \
//	  "SELECT stage,outcome,reason,device_id,event_time FROM deliveries
//	   WHERE user_id='u1' AND request_id='r-1'"
//
// Run it with --help for the columns and the output formats. DuckDB is linked
// into this command only, never into the pipelines.
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/duckdb/duckdb-go/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/tableio"
)

const usage = `pushflow-query runs SQL over the pushflow delivery table.

Usage:
  pushflow-query --table file:///dir [--format=table|csv|json] "SELECT ..."
  echo "SELECT ..." | pushflow-query --table file:///dir -

The table is the view "deliveries", one row per DeliveryEvent: every
recipient device of every request ends as exactly one row, and a request that
ends before recipients exist (validation, no recipients) as one row too.
Rows are deduplicated on event_id: a replay after a crash may write an
event again, and the view "deliveries_raw" shows every row as written.

  column        type         meaning
  v             BIGINT       record version (1)
  event_id      VARCHAR      deterministic id of this outcome (replays repeat it)
  request_id    VARCHAR      PushRequest.id
  campaign      VARCHAR
  app           VARCHAR
  category      VARCHAR
  priority      VARCHAR      realtime | normal | bulk
  user_id       VARCHAR
  device_id     VARCHAR      empty when the request ended before devices
  platform      VARCHAR      ios | android
  stage         VARCHAR      validate | expand | filter | enrich | send
  outcome       VARCHAR      sent | failed | dropped
  reason        VARCHAR      quiet_hours, opt_out, frequency_cap, duplicate,
                             no_device, ... or the provider's (Unregistered)
  provider_id   VARCHAR      apns-id / FCM message name when sent
  attempts      BIGINT
  request_time  TIMESTAMPTZ  when the request was created
  event_time    TIMESTAMPTZ  when this outcome happened
  latency_ms    BIGINT
  day           DATE         partition: the UTC day of event_time (filter on
                             it to read only that day's files)

Times are printed in UTC, RFC 3339.

Examples:
  # Why did user u1 not get message r-1?
  pushflow-query --table file:///tmp/pushflow/deliveries \
    "SELECT stage,outcome,reason,device_id,event_time FROM deliveries WHERE user_id='u1' AND request_id='r-1'"

  # Outcomes of a campaign, yesterday and today
  pushflow-query --table file:///tmp/pushflow/deliveries --format=csv \
    "SELECT outcome, reason, count(*) AS n FROM deliveries
     WHERE campaign='c-7' AND day >= current_date - 1 GROUP BY ALL ORDER BY n DESC"

Flags may come before or after the SQL; put "--" before SQL that starts
with "-" (a "--" comment). Exit status: 0 ok, 1 query or table error,
2 usage error.

Flags:
`

// Output formats.
const (
	formatTable = "table"
	formatCSV   = "csv"
	formatJSON  = "json"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the command: it parses args, runs the query and returns the exit
// status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pushflow-query", flag.ContinueOnError)
	// The flag package prints the usage itself on --help and on a bad flag:
	// collect it, then send it to stdout or stderr.
	var parseOut strings.Builder
	fs.SetOutput(&parseOut)
	table := fs.String("table", "", "the delivery table, file:///abs/dir (required)")
	format := fs.String("format", formatTable, "output format: table (aligned text), csv (with a header) or json (an array of objects)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}

	// Accept flags on either side of the SQL.
	var parts []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				io.WriteString(stdout, parseOut.String())
				return 0
			}
			io.WriteString(stderr, parseOut.String())
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		parts = append(parts, fs.Arg(0))
		args = fs.Args()[1:]
	}
	query := strings.Join(parts, " ")
	if query == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "pushflow-query: read SQL from stdin: %v\n", err)
			return 1
		}
		query = string(b)
	}
	switch {
	case *table == "":
		fmt.Fprintln(stderr, "pushflow-query: --table is required, e.g. --table file:///tmp/pushflow/deliveries (see --help)")
		return 2
	case strings.TrimSpace(query) == "":
		fmt.Fprintln(stderr, `pushflow-query: no SQL given, e.g. "SELECT * FROM deliveries LIMIT 10" (see --help)`)
		return 2
	case *format != formatTable && *format != formatCSV && *format != formatJSON:
		fmt.Fprintf(stderr, "pushflow-query: --format=%s: want table, csv or json\n", *format)
		return 2
	}
	if err := runQuery(ctx, *table, query, *format, stdout); err != nil {
		fmt.Fprintf(stderr, "pushflow-query: %v\n", err)
		return 1
	}
	return 0
}

// runQuery runs query over the table named by spec and writes the result to
// w in format.
func runQuery(ctx context.Context, spec, query, format string, w io.Writer) error {
	db, closeDB, err := openTable(spec)
	if err != nil {
		return err
	}
	defer closeDB()
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	switch format {
	case formatCSV:
		return writeCSV(w, rows)
	case formatJSON:
		return writeJSON(w, rows)
	}
	return writeTable(w, rows)
}

// openTable opens an in-memory DuckDB database whose view "deliveries" reads
// the local table named by spec. Sessions use the UTC time zone.
func openTable(spec string) (db *sql.DB, closeDB func(), err error) {
	t, err := tableio.ParseTable(spec)
	if err != nil {
		return nil, nil, err
	}
	files, err := tableio.Files(t.Dir)
	if err != nil {
		return nil, nil, err
	}
	connector, err := duckdb.NewConnector("", func(execer driver.ExecerContext) error {
		_, err := execer.ExecContext(context.Background(), "SET TimeZone = 'UTC'", nil)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("open duckdb: %w", err)
	}
	db = sql.OpenDB(connector)
	var tmp string
	closeDB = func() {
		db.Close()
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}
	defer func() {
		if err != nil {
			closeDB()
		}
	}()

	var view string
	if len(files) > 0 {
		view = fmt.Sprintf("SELECT * FROM read_parquet(%s, hive_partitioning = true, hive_types = {'day': DATE}, union_by_name = true)",
			sqlString(filepath.ToSlash(t.Dir)+"/**/*.parquet"))
	} else {
		// read_parquet fails on a glob that matches nothing; an empty table
		// is a table with no rows, read from a file with only the schema.
		tmp, err = os.MkdirTemp("", "pushflow-query-")
		if err != nil {
			return nil, nil, err
		}
		empty := filepath.Join(tmp, "empty.parquet")
		if err := writeEmptyParquet(empty); err != nil {
			return nil, nil, err
		}
		view = fmt.Sprintf("SELECT *, NULL::DATE AS day FROM read_parquet(%s)", sqlString(filepath.ToSlash(empty)))
	}
	// deliveries_raw is every row written; deliveries keeps one row per
	// event_id (a replay after a crash writes the same event again), and
	// every row of files written before event_id existed.
	for _, v := range []string{
		"CREATE VIEW deliveries_raw AS " + view,
		`CREATE VIEW deliveries AS
		   SELECT * FROM deliveries_raw WHERE coalesce(event_id, '') = ''
		   UNION ALL
		   SELECT * FROM deliveries_raw WHERE event_id <> ''
		   QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY event_time) = 1`,
	} {
		if _, err := db.Exec(v); err != nil {
			return nil, nil, fmt.Errorf("create view over %s: %w", t, err)
		}
	}
	return db, closeDB, nil
}

func writeEmptyParquet(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := parquet.NewGenericWriter[pushflow.DeliveryEvent](f).Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// column is a result column.
type column struct {
	name    string
	dbType  string // DuckDB type name: VARCHAR, BIGINT, TIMESTAMPTZ, ...
	numeric bool
}

func columnsOf(rows *sql.Rows) ([]column, error) {
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	cols := make([]column, len(types))
	for i, ct := range types {
		t := strings.ToUpper(ct.DatabaseTypeName())
		cols[i] = column{name: ct.Name(), dbType: t, numeric: isNumeric(t)}
	}
	return cols, nil
}

func isNumeric(dbType string) bool {
	for _, p := range []string{"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL"} {
		if strings.HasPrefix(dbType, p) {
			return true
		}
	}
	return false
}

// scanRows calls fn with each row's values.
func scanRows(rows *sql.Rows, n int, fn func([]any) error) error {
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
	return rows.Err()
}

// queryRows runs query over the table and returns the column names and the
// rows as the driver returns them.
func queryRows(ctx context.Context, spec, query string) ([]string, [][]any, error) {
	db, closeDB, err := openTable(spec)
	if err != nil {
		return nil, nil, err
	}
	defer closeDB()
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols, err := columnsOf(rows)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	var out [][]any
	err = scanRows(rows, len(cols), func(vals []any) error {
		out = append(out, append([]any(nil), vals...))
		return nil
	})
	return names, out, err
}

// text renders a value for the table and CSV formats; NULL is "" there.
func text(v any, c column) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return fmt.Sprintf("\\x%x", v)
	case time.Time:
		switch {
		case c.dbType == "DATE":
			return v.Format(time.DateOnly)
		case strings.HasPrefix(c.dbType, "TIME") && !strings.HasPrefix(c.dbType, "TIMESTAMP"):
			return v.Format("15:04:05.999999")
		case v.Nanosecond()%int(time.Millisecond) == 0:
			return v.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
		return v.UTC().Format(time.RFC3339Nano)
	case float32:
		return formatFloat(float64(v), 32)
	case float64:
		return formatFloat(v, 64)
	case *big.Int:
		return v.String()
	case []any, map[string]any:
		b, err := json.Marshal(jsonValue(v, c))
		if err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}

// formatFloat writes plain decimals (93600000, 0.25), and exponents only
// for very large or very small magnitudes.
func formatFloat(f float64, bits int) string {
	if a := math.Abs(f); a == 0 || (a >= 1e-4 && a < 1e15) {
		return strconv.FormatFloat(f, 'f', -1, bits)
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// jsonValue converts a driver value to one encoding/json renders well.
func jsonValue(v any, c column) any {
	switch v := v.(type) {
	case nil, bool, string, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, json.Number:
		return v
	case *big.Int:
		return json.Number(v.String())
	case time.Time, []byte:
		return text(v, c)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonValue(e, column{})
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = jsonValue(e, column{})
		}
		return out
	case json.Marshaler:
		return v
	case fmt.Stringer:
		return v.String()
	}
	return v
}

func writeTable(w io.Writer, rows *sql.Rows) error {
	cols, err := columnsOf(rows)
	if err != nil {
		return err
	}
	widths := make([]int, len(cols))
	for i, c := range cols {
		widths[i] = utf8.RuneCountInString(c.name)
	}
	var cells [][]string
	err = scanRows(rows, len(cols), func(vals []any) error {
		row := make([]string, len(vals))
		for i, v := range vals {
			if v == nil {
				row[i] = "NULL"
			} else {
				row[i] = strings.NewReplacer("\n", `\n`, "\t", `\t`, "\r", `\r`).Replace(text(v, cols[i]))
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(row[i]))
		}
		cells = append(cells, row)
		return nil
	})
	if err != nil {
		return err
	}
	var b strings.Builder
	line := func(row []string, fill func(i int, s string) string) {
		for i, s := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(fill(i, s))
		}
		b.WriteString("\n")
	}
	pad := func(i int, s string) string {
		gap := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(s))
		if cols[i].numeric {
			return gap + s
		}
		if i == len(cols)-1 {
			return s // no trailing blanks
		}
		return s + gap
	}
	header := make([]string, len(cols))
	rule := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c.name
		rule[i] = strings.Repeat("-", widths[i])
	}
	line(header, pad)
	line(rule, func(_ int, s string) string { return s })
	for _, row := range cells {
		line(row, pad)
	}
	if len(cells) == 1 {
		b.WriteString("(1 row)\n")
	} else {
		fmt.Fprintf(&b, "(%d rows)\n", len(cells))
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func writeCSV(w io.Writer, rows *sql.Rows) error {
	cols, err := columnsOf(rows)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c.name
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	record := make([]string, len(cols))
	err = scanRows(rows, len(cols), func(vals []any) error {
		for i, v := range vals {
			record[i] = text(v, cols[i])
		}
		return cw.Write(record)
	})
	cw.Flush()
	return errors.Join(err, cw.Error())
}

// writeJSON writes the rows as a JSON array of objects whose keys are in
// column order, one object per line.
func writeJSON(w io.Writer, rows *sql.Rows) error {
	cols, err := columnsOf(rows)
	if err != nil {
		return err
	}
	keys := make([][]byte, len(cols))
	for i, c := range cols {
		keys[i], _ = json.Marshal(c.name)
	}
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	n := 0
	var buf []byte
	err = scanRows(rows, len(cols), func(vals []any) error {
		buf = buf[:0]
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, "\n{"...)
		for i, v := range vals {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, keys[i]...)
			buf = append(buf, ':')
			b, err := json.Marshal(jsonValue(v, cols[i]))
			if err != nil {
				return fmt.Errorf("column %s: %w", cols[i].name, err)
			}
			buf = append(buf, b...)
		}
		buf = append(buf, '}')
		n++
		_, err := w.Write(buf)
		return err
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n]\n")
	return err
}
