package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRates(t *testing.T) {
	got, err := parseRates("c-7=1000, c-8=250,,")
	if err != nil {
		t.Fatalf("parseRates: %v", err)
	}
	if diff := cmp.Diff(map[string]int{"c-7": 1000, "c-8": 250}, got); diff != "" {
		t.Errorf("parseRates (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"c-7", "c-7=fast", "c-7=-1"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("parseRates(%q) = nil error, want one", bad)
		}
	}
}
