// Package graphcheck reads a pipeline as a runner receives it, for tests
// that check what the job graph carries (e.g. that no secret is in it).
package graphcheck

import (
	"encoding/base64"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"
)

// Serialized returns p's pipeline proto as bytes, followed by every ParDo's
// DoFn payload decoded (DoFn configurations are base64-encoded inside the
// proto, where a plain search would not find their strings).
func Serialized(t testing.TB, p *beam.Pipeline) []byte {
	t.Helper()
	edges, _, err := p.Build()
	if err != nil {
		t.Fatal(err)
	}
	pb, err := graphx.Marshal(edges, &graphx.Options{Environment: &pipepb.Environment{Urn: "beam:env:loopback:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range pb.GetComponents().GetTransforms() {
		var pd pipepb.ParDoPayload
		if proto.Unmarshal(tr.GetSpec().GetPayload(), &pd) != nil {
			continue
		}
		if d, err := base64.StdEncoding.DecodeString(string(pd.GetDoFn().GetPayload())); err == nil {
			b = append(b, d...)
		}
	}
	return b
}
