// Package tableio writes and reads the delivery table: one row per
// pushflow.DeliveryEvent, the table analysts query to answer "why did user X
// not get message Y?".
//
// A table is named by a spec string (the --delivery_table flag):
//
//	file:///abs/dir               local Parquet files, partitioned by day
//	bq://project.dataset.table    BigQuery (recognised; not in this build yet)
//
// # Local layout
//
// A local table is a directory of Parquet files in Hive-style day partitions,
// the day being the UTC date of DeliveryEvent.EventTime:
//
//	<dir>/day=2026-11-22/part-<unix-nanos>-<random>.parquet
//
// Each file is written under a hidden temporary name (".part-….parquet.tmp")
// in its partition directory, synced, and renamed into place, so a reader
// never sees half a file. Readers (this package, DuckDB's
// read_parquet('<dir>/**/*.parquet', hive_partitioning=true)) only look at
// names ending in ".parquet" that do not start with "." or "_".
//
// Columns are the `parquet` tags of pushflow.DeliveryEvent; times are
// TIMESTAMP(MILLIS, isAdjustedToUTC=true), so they round-trip at millisecond
// precision in UTC. Pages are zstd-compressed by default.
//
// Delivery is at least once: when a bundle fails after some of its files were
// renamed into place, the runner retries the bundle and those rows are
// written again. Queries that must count exactly should de-duplicate on
// (request_id, device_id, stage, outcome, event_time).
//
// The query command cmd/pushflow-query runs SQL over a local table with
// DuckDB; this package does not link DuckDB, so pipelines stay small.
package tableio

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Kind says where a table lives.
type Kind string

// Table kinds.
const (
	KindParquet  Kind = "parquet"  // local Parquet files: Table.Dir
	KindBigQuery Kind = "bigquery" // BigQuery: Table.Project, Table.Dataset, Table.Name
)

// Table is a parsed table spec.
type Table struct {
	Kind Kind

	// Dir is the absolute, cleaned directory of a KindParquet table.
	Dir string

	// Project, Dataset and Name identify a KindBigQuery table. Project may be
	// domain-scoped ("example.com:my-project").
	Project, Dataset, Name string
}

// String returns the table's spec, as accepted by ParseTable.
func (t Table) String() string {
	switch t.Kind {
	case KindParquet:
		return "file://" + filepath.ToSlash(t.Dir)
	case KindBigQuery:
		return "bq://" + t.Project + "." + t.Dataset + "." + t.Name
	}
	return ""
}

// ErrBigQueryUnsupported is returned (wrapped or as is) for a bq:// table by
// this build, which has no BigQuery writer yet. ParseTable still fills in the
// Table it returns with it.
var ErrBigQueryUnsupported = errors.New("tableio: BigQuery tables need the bigquery build (not in this build yet)")

const (
	fileScheme = "file://"
	bqScheme   = "bq://"
)

// ParseTable parses a table spec: "file:///abs/dir" for local Parquet files,
// or "bq://project.dataset.table" for BigQuery. For a well-formed bq:// spec
// it returns the parsed Table together with ErrBigQueryUnsupported, since this
// build cannot write to BigQuery.
func ParseTable(spec string) (Table, error) {
	switch {
	case strings.HasPrefix(spec, fileScheme):
		return parseFile(spec)
	case strings.HasPrefix(spec, bqScheme):
		return parseBigQuery(spec)
	case spec == "":
		return Table{}, fmt.Errorf("tableio: empty table spec: want file:///abs/dir or bq://project.dataset.table")
	case strings.HasPrefix(spec, "/"):
		return Table{}, fmt.Errorf("tableio: table spec %q has no scheme: did you mean file://%s?", spec, spec)
	}
	if scheme, _, ok := strings.Cut(spec, ":"); ok && !strings.ContainsAny(scheme, "/.") {
		return Table{}, fmt.Errorf("tableio: table spec %q: unsupported scheme %q: want file:///abs/dir or bq://project.dataset.table", spec, scheme)
	}
	return Table{}, fmt.Errorf("tableio: table spec %q has no scheme: want file:///abs/dir or bq://project.dataset.table", spec)
}

func parseFile(spec string) (Table, error) {
	path := strings.TrimPrefix(spec, fileScheme)
	if strings.ContainsAny(path, "?#") {
		return Table{}, fmt.Errorf("tableio: table spec %q: a file:// table takes no query or fragment", spec)
	}
	if !strings.HasPrefix(path, "/") {
		// file://host/dir or file://relative/dir.
		return Table{}, fmt.Errorf("tableio: table spec %q: want an absolute path with three slashes, file:///abs/dir", spec)
	}
	dir := filepath.Clean(filepath.FromSlash(path))
	if dir == string(filepath.Separator) {
		return Table{}, fmt.Errorf("tableio: table spec %q: refusing the root directory as a table", spec)
	}
	return Table{Kind: KindParquet, Dir: dir}, nil
}

func parseBigQuery(spec string) (Table, error) {
	rest := strings.TrimPrefix(spec, bqScheme)
	// Dataset and table names never contain dots; a domain-scoped project
	// ("example.com:proj") does, so split at the last two dots.
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return Table{}, fmt.Errorf("tableio: table spec %q: want bq://project.dataset.table", spec)
	}
	name := rest[i+1:]
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '.')
	if j < 0 {
		return Table{}, fmt.Errorf("tableio: table spec %q: want bq://project.dataset.table", spec)
	}
	t := Table{Kind: KindBigQuery, Project: rest[:j], Dataset: rest[j+1:], Name: name}
	switch {
	case !validProject(t.Project):
		return Table{}, fmt.Errorf("tableio: table spec %q: invalid project %q (lowercase letters, digits, '-', optionally domain-scoped as example.com:project)", spec, t.Project)
	case !validDataset(t.Dataset):
		return Table{}, fmt.Errorf("tableio: table spec %q: invalid dataset %q (letters, digits and '_', at most 1024)", spec, t.Dataset)
	case !validTableName(t.Name):
		return Table{}, fmt.Errorf("tableio: table spec %q: invalid table name %q", spec, t.Name)
	}
	return t, ErrBigQueryUnsupported
}

func validProject(p string) bool {
	if domain, id, ok := strings.Cut(p, ":"); ok {
		if domain == "" || strings.ContainsAny(domain, ":/") {
			return false
		}
		p = id
	}
	if len(p) == 0 || len(p) > 63 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validDataset(d string) bool {
	if len(d) == 0 || len(d) > 1024 {
		return false
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func validTableName(n string) bool {
	// BigQuery allows Unicode letters, marks, numbers, connectors, dashes and
	// spaces; reject only what can never be part of a name.
	return len(n) > 0 && len(n) <= 1024 && !strings.ContainsAny(n, "/.`'\"\\\n\t")
}
