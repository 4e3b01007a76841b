package redisio

import (
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	k := keys{prefix: "pf:"}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"userDevices", k.userDevices("com.example.news", "u1"), "pf:u:{com.example.news:u1}:devices"},
		{"userTags", k.userTags("com.example.news", "u1"), "pf:u:{com.example.news:u1}:tags"},
		{"userSettings", k.userSettings("com.example.news", "u1"), "pf:u:{com.example.news:u1}:settings"},
		{"userInterest", k.userInterest("com.example.news", "u1"), "pf:u:{com.example.news:u1}:interest"},
		{"frequency", k.frequency("com.example.news", "u1", "2026-11-22", "news"), "pf:u:{com.example.news:u1}:freq:2026-11-22:news"},
		{"device", k.device("com.example.news", "d1"), "pf:d:{com.example.news:d1}"},
		{"alias", k.alias("com.example.news", "phone", "139"), "pf:alias:com.example.news:phone:139"},
		{"tag", k.tag("com.example.news", "sports"), "pf:tag:com.example.news:sports"},
		{"users", k.users("com.example.news"), "pf:users:com.example.news"},
		{"dedup", k.dedup("r-1/d1"), "pf:dedup:r-1/d1"},
		{"escaped user", k.userDevices("a", "x:y}{%"), "pf:u:{a:x%3Ay%7D%7B%25}:devices"},
		{"escaped app", k.userDevices("a:b", "c"), "pf:u:{a%3Ab:c}:devices"},
		{"escaped alias", k.alias("a", "t:1", "v:2"), "pf:alias:a:t%3A1:v%3A2"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestKeysUnambiguous checks that identifiers which would collide if joined
// naively build different keys.
func TestKeysUnambiguous(t *testing.T) {
	k := keys{prefix: "pf:"}
	pairs := [][2]string{
		{k.userDevices("a:b", "c"), k.userDevices("a", "b:c")},
		{k.alias("a", "t:u", "v"), k.alias("a", "t", "u:v")},
		{k.frequency("a", "u", "d:x", "c"), k.frequency("a", "u", "d", "x:c")},
		{k.userDevices("a", "u}:tags"), k.userTags("a", "u")},
	}
	for _, p := range pairs {
		if p[0] == p[1] {
			t.Errorf("keys collide: %q", p[0])
		}
	}
}

// TestKeysSameSlot checks the multi-key scripts' precondition on Redis
// Cluster: all keys of one user, whatever its id, hash to one slot.
func TestKeysSameSlot(t *testing.T) {
	// Known answers from the Redis Cluster specification.
	if got := keySlot("123456789"); got != 0x31C3%16384 {
		t.Fatalf("keySlot(%q) = %d, want %d", "123456789", got, 0x31C3%16384)
	}
	if got := keySlot("foo"); got != 12182 {
		t.Fatalf("keySlot(%q) = %d, want 12182", "foo", got)
	}
	k := keys{prefix: "pf:"}
	for _, user := range []string{"u1", "a}b", "{x}", "中文", ""} {
		userKeys := []string{
			k.userDevices("app", user),
			k.userTags("app", user),
			k.userSettings("app", user),
			k.userInterest("app", user),
			k.frequency("app", user, "2026-11-22", "news"),
		}
		want := keySlot(userKeys[0])
		for _, key := range userKeys[1:] {
			if got := keySlot(key); got != want {
				t.Errorf("keySlot(%q) = %d, want %d (the slot of %q)", key, got, want, userKeys[0])
			}
		}
	}
}

// keySlot is Redis Cluster's key → slot function (CRC16 of the hash tag).
func keySlot(key string) int {
	s := key
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			s = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
