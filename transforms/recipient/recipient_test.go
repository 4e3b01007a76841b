package recipient

import (
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
)

func TestRequestIDs(t *testing.T) {
	for _, tc := range []struct {
		ids  []string
		want string
	}{
		{nil, ""},
		{[]string{"r-1"}, "r-1"},
		{[]string{"r-1", "r-1", "r-2"}, "r-1, r-2"},
		{[]string{"a", "b", "c"}, "a, b, c"},
		{[]string{"a", "b", "c", "d", "e", "a", "f", "g"}, "a, b, c and 4 more requests"},
	} {
		if got := RequestIDs(tc.ids); got != tc.want {
			t.Errorf("RequestIDs(%q) = %q, want %q", tc.ids, got, tc.want)
		}
	}
}

func TestFlushAt(t *testing.T) {
	for n, want := range map[int]int{0: DefaultFlushRecipients, -5: 1, 1: 1, 3: 3, 5000: 5000} {
		if got := FlushAt(n); got != want {
			t.Errorf("FlushAt(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestBuffer(t *testing.T) {
	batch := func(n int) Batch { return Batch{Recipients: make([]Recipient, n)} }
	var buf Buffer
	for i, step := range []struct {
		n, at int
		due   bool
	}{
		{2, 5, false}, // 2 of 5
		{2, 5, false}, // 4 of 5
		{1, 5, true},  // 5 of 5
		{0, 1, true},  // every batch, even an empty one
		{0, 0, true},
	} {
		if due := buf.Add(beam.EventTime(i), batch(step.n), step.at); due != step.due {
			t.Errorf("step %d: Add(%d recipients, at %d) due %v, want %v", i, step.n, step.at, due, step.due)
		}
	}
	if len(buf.Items) != 5 || buf.Recipients != 5 || buf.Items[2].TS != 2 || len(buf.Items[2].Batch.Recipients) != 1 {
		t.Errorf("buffer holds %d items, %d recipients (item 2: %+v); want 5 in order with their timestamps, 5 recipients", len(buf.Items), buf.Recipients, buf.Items[2])
	}
	items := buf.Items
	buf.Reset()
	if len(buf.Items) != 0 || buf.Recipients != 0 || items[:1][0].Batch.Recipients != nil {
		t.Errorf("after Reset: %d items, %d recipients, first slot %+v; want empty and the batches let go", len(buf.Items), buf.Recipients, items[:1][0])
	}
}
