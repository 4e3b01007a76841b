package recipient

import "testing"

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
