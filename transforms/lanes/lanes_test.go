package lanes

import (
	"testing"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func TestByPriority(t *testing.T) {
	for _, tc := range []struct {
		priority     string
		wantRealtime bool
	}{
		{pushflow.PriorityRealtime, true},
		{pushflow.PriorityNormal, false},
		{pushflow.PriorityBulk, false},
		{"", false}, // decoding defaults it to normal; never realtime by accident
	} {
		var rt, paced int
		byPriority(recipient.Request{Req: pushflow.PushRequest{ID: "r", Priority: tc.priority}},
			func(recipient.Request) { rt++ }, func(recipient.Request) { paced++ })
		if got := rt == 1 && paced == 0; got != tc.wantRealtime || rt+paced != 1 {
			t.Errorf("byPriority(%q): realtime %d, paced %d, want realtime=%v and exactly one output", tc.priority, rt, paced, tc.wantRealtime)
		}
	}
}
