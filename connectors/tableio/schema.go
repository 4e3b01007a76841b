package tableio

import (
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/pushflow/pushflow"
)

// schemaOptions adjust the Parquet schema that parquet-go derives from the
// `parquet` tags of pushflow.DeliveryEvent. Writers and readers use the same.
//
// Every time.Time column is made optional, so that a zero time (an unknown
// request_time, say) is stored as NULL. As a required column it would be
// stored as year 1, which parquet-go v0.32.0 then reads back wrongly (it
// converts to int64 nanoseconds, which overflow before 1678), and which
// analysts would have to know to filter out.
var schemaOptions = optionalTimeColumns(reflect.TypeFor[pushflow.DeliveryEvent]())

func optionalTimeColumns(t reflect.Type) []parquet.SchemaOption {
	var opts []parquet.SchemaOption
	for f := range t.Fields() {
		tag, ok := f.Tag.Lookup("parquet")
		if !ok || f.Type != reflect.TypeFor[time.Time]() || tag == "-" {
			continue
		}
		if slices.Contains(strings.Split(tag, ","), "optional") {
			continue // records.go already says so
		}
		opts = append(opts, parquet.StructTag(reflect.StructTag(`parquet:"`+tag+`,optional"`), f.Name))
	}
	return opts
}

func writerOptions(opts ...parquet.WriterOption) []parquet.WriterOption {
	for _, o := range schemaOptions {
		opts = append(opts, o)
	}
	return opts
}

func readerOptions() []parquet.ReaderOption {
	var opts []parquet.ReaderOption
	for _, o := range schemaOptions {
		opts = append(opts, o)
	}
	return opts
}
