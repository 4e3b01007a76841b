package apnsiotest

import (
	"strings"
	"testing"
)

func TestValidUUID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"123e4567-e89b-12d3-a456-426614174000", true},
		{"123E4567-E89B-12D3-A456-426614174000", true},
		{"123e4567e89b12d3a456426614174000", false},
		{"123e4567-e89b-12d3-a456-42661417400g", false},
		{"123e4567-e89b-12d3-a456_426614174000", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := validUUID(tt.in); got != tt.want {
			t.Errorf("validUUID(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		u := newUUID()
		if !validUUID(u) || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) {
			t.Fatalf("newUUID() = %q, want a version 4, variant 10 UUID", u)
		}
		if seen[u] {
			t.Fatalf("newUUID() = %q twice", u)
		}
		seen[u] = true
	}
}

func TestBaseTopic(t *testing.T) {
	tests := []struct{ in, want string }{
		{"com.example.app", "com.example.app"},
		{"com.example.app.voip", "com.example.app"},
		{"com.example.app.voip-ptt", "com.example.app"},
		{"com.example.app.complication", "com.example.app"},
		{"com.example.app.pushkit.fileprovider", "com.example.app"},
		{"com.example.app.push-type.liveactivity", "com.example.app"},
		{"com.example.app.location-query", "com.example.app"},
		{".voip", ".voip"},
	}
	for _, tt := range tests {
		if got := baseTopic(tt.in); got != tt.want {
			t.Errorf("baseTopic(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
