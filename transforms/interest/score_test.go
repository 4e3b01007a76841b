package interest

import (
	"math"
	"testing"
)

func TestScore(t *testing.T) {
	tests := []struct {
		name          string
		old           float64
		hasOld        bool
		engaged, sent int
		decay         float64
		want          float64
	}{
		{"first window is the rate", 0, false, 1, 4, 0.8, 0.25},
		{"first window all engaged", 0, false, 2, 2, 0.8, 1},
		{"first window none engaged", 0, false, 0, 3, 0.8, 0},
		{"decays towards the rate", 0.5, true, 0, 1, 0.8, 0.4},
		{"rises towards the rate", 0.5, true, 2, 2, 0.8, 0.6},
		{"steady state", 0.25, true, 1, 4, 0.8, 0.25},
		{"zero decay is the rate", 0.9, true, 1, 2, 0, 0.5},
		{"old score 0 is kept as a score", 0, true, 1, 1, 0.8, 0.2},
		{"no deliveries keeps old", 0.7, true, 0, 0, 0.8, 0.7},
		{"no deliveries and no old", 0, false, 3, 0, 0.8, 0},
		{"engaged clamped to sent", 0, false, 5, 2, 0.8, 1},
		{"negative engaged clamped", 0.5, true, -1, 2, 0.5, 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Score(tt.old, tt.hasOld, tt.engaged, tt.sent, tt.decay)
			if math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("Score(%v, %v, %d, %d, %v) = %v, want %v", tt.old, tt.hasOld, tt.engaged, tt.sent, tt.decay, got, tt.want)
			}
		})
	}
}

func TestEngaged(t *testing.T) {
	for action, want := range map[string]bool{"opened": true, "clicked": true, "received": false, "dismissed": false, "": false} {
		if got := Engaged(action); got != want {
			t.Errorf("Engaged(%q) = %v, want %v", action, got, want)
		}
	}
}
