package ledger

import (
	"testing"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/transforms/recipient"
)

func TestInitialUnits(t *testing.T) {
	for _, tt := range []struct {
		target pushflow.Target
		units  int64
		final  bool
	}{
		{pushflow.Target{Users: []string{"u1", "u2", "u1"}}, 2, true},
		{pushflow.Target{Devices: []string{"d1"}}, 1, true},
		{pushflow.Target{Broadcast: true}, 0, false},
		{pushflow.Target{Tags: "a"}, 0, false},
		{pushflow.Target{File: "x"}, 0, false},
		{pushflow.Target{Alias: pushflow.AliasTarget{Type: "phone", Values: []string{"1"}}}, 0, false},
	} {
		units, final := InitialUnits(pushflow.PushRequest{Target: tt.target})
		if units != tt.units || final != tt.final {
			t.Errorf("InitialUnits(%s) = %d, %v; want %d, %v", tt.target.Kind(), units, final, tt.units, tt.final)
		}
	}
}

func TestParseSource(t *testing.T) {
	for _, src := range []recipient.Source{
		{Topic: "push.requests", Partition: 2, Offset: 42},
		{Topic: "a/b/c", Partition: 0, Offset: 0},
	} {
		if got := parseSource(src.String()); got != src {
			t.Errorf("parseSource(%q) = %+v, want %+v", src.String(), got, src)
		}
	}
}
