package tableio

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTable(t *testing.T) {
	tests := []struct {
		spec    string
		want    Table
		wantErr string // substring; "" means no error
	}{
		{spec: "file:///tmp/deliveries", want: Table{Kind: KindParquet, Dir: "/tmp/deliveries"}},
		{spec: "file:///tmp/a/../deliveries/", want: Table{Kind: KindParquet, Dir: "/tmp/deliveries"}},
		{spec: "file:///data/with space", want: Table{Kind: KindParquet, Dir: "/data/with space"}},
		{spec: "file://relative/dir", wantErr: "want an absolute path with three slashes"},
		{spec: "file://", wantErr: "want an absolute path with three slashes"},
		{spec: "file:///", wantErr: "refusing the root directory"},
		{spec: "file:///tmp/x?compression=zstd", wantErr: "no query or fragment"},
		{
			spec:    "bq://my-proj.push.deliveries",
			want:    Table{Kind: KindBigQuery, Project: "my-proj", Dataset: "push", Name: "deliveries"},
			wantErr: "tableio: BigQuery tables need the bigquery build (not in this build yet)",
		},
		{
			spec:    "bq://example.com:my-proj.push.deliveries",
			want:    Table{Kind: KindBigQuery, Project: "example.com:my-proj", Dataset: "push", Name: "deliveries"},
			wantErr: "need the bigquery build",
		},
		{spec: "bq://proj.dataset", wantErr: `want bq://project.dataset.table`},
		{spec: "bq://deliveries", wantErr: `want bq://project.dataset.table`},
		{spec: "bq://Proj.push.deliveries", wantErr: `invalid project "Proj"`},
		{spec: "bq://proj.push-x.deliveries", wantErr: `invalid dataset "push-x"`},
		{spec: "bq://proj.push.", wantErr: `invalid table name ""`},
		{spec: "", wantErr: "empty table spec"},
		{spec: "/tmp/deliveries", wantErr: "did you mean file:///tmp/deliveries?"},
		{spec: "s3://bucket/deliveries", wantErr: `unsupported scheme "s3"`},
		{spec: "deliveries", wantErr: "has no scheme"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseTable(tc.spec)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseTable(%q) error = %v, want nil", tc.spec, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseTable(%q) error = %v, want one containing %q", tc.spec, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseTable(%q) table mismatch (-want +got):\n%s", tc.spec, diff)
			}
			if got.Kind != "" {
				if back, _ := ParseTable(got.String()); back != got {
					t.Errorf("ParseTable(%q).String() = %q, does not parse back to the same table", tc.spec, got.String())
				}
			}
		})
	}
}

func TestParseTableBigQuerySentinel(t *testing.T) {
	_, err := ParseTable("bq://p-1.d.t")
	if !errors.Is(err, ErrBigQueryUnsupported) {
		t.Fatalf("ParseTable(bq://p-1.d.t) error = %v, want ErrBigQueryUnsupported", err)
	}
}

func TestWritePanicsOnInvalidSpec(t *testing.T) {
	for _, spec := range []string{"bq://p.d.t", "/tmp/x", "file://rel"} {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.HasPrefix(r.(string), "tableio.Write: ") {
					t.Errorf("Write(%q) panic = %v, want a tableio.Write: panic", spec, r)
				}
			}()
			Write(beamScope(), spec, beamEmpty())
		}()
	}
}

func TestBuildOptions(t *testing.T) {
	if _, err := buildOptions([]Option{MaxBufferedRows(0)}); err == nil {
		t.Error("buildOptions(MaxBufferedRows(0)) = nil error, want one")
	}
	if _, err := buildOptions([]Option{Compression("lzo")}); err == nil || !strings.Contains(err.Error(), "zstd, snappy or none") {
		t.Errorf("buildOptions(Compression(lzo)) error = %v, want one naming the valid codecs", err)
	}
	o, err := buildOptions([]Option{Compression("snappy"), MaxBufferedRows(7)})
	if err != nil || o.compression != "snappy" || o.maxRows != 7 {
		t.Errorf("buildOptions(snappy, 7) = %+v, %v", o, err)
	}
}
