package pushflow

import (
	"errors"
	"strings"
	"testing"
)

// TestDecodeInvalidText checks that a string with invalid UTF-8 or a lone
// surrogate escape, anywhere in a record, is a *ValidationError naming it:
// encoding/json alone would push U+FFFD.
func TestDecodeInvalidText(t *testing.T) {
	push := func(p string) string { return patch(t, basePush, p) }
	tests := []struct {
		name, in, want string
	}{
		{"title", push("{\"notification\":{\"title\":\"Gr\xfc\xdfe\"}}"), "notification.title: invalid UTF-8 at byte "},
		{"data value", push("{\"notification\":{\"title\":\"t\",\"data\":{\"a\":\"ok\",\"k\":\"v\xc3\"}}}"), "notification.data.k: invalid UTF-8 at byte "},
		{"data key", push("{\"notification\":{\"title\":\"t\",\"data\":{\"k\xff\":\"v\"}}}"), "notification.data.k\uFFFD: key: invalid UTF-8 at byte "},
		{"users element", push("{\"target\":{\"users\":[\"u1\",\"u\xed\xa0\x80\"]}}"), "target.users[1]: invalid UTF-8 at byte "}, // CESU-encoded surrogate
		{"tags", push("{\"target\":{\"tags\":\"sports AND \xe2\x82\"}}"), "target.tags: invalid UTF-8 at byte "},
		{"file", push("{\"target\":{\"file\":\"/srv/a\xff.txt\"}}"), "target.file: invalid UTF-8 at byte "},
		{"unknown field", push("{\"extra\":{\"deep\":[1,{\"x\":\"\xff\"}]}}"), "extra.deep[1].x: invalid UTF-8 at byte "},
		{"lone high surrogate", push(`{"notification":{"title":"a\ud800b"}}`), `notification.title: lone UTF-16 surrogate escape \ud800 at byte `},
		{"high surrogate at end", push(`{"notification":{"body":"\uD83D"}}`), `notification.body: lone UTF-16 surrogate escape \uD83D at byte `},
		{"two highs", push(`{"notification":{"body":"\ud83d\ud83d"}}`), `notification.body: lone UTF-16 surrogate escape \ud83d at byte `},
		{"lone low surrogate", push(`{"campaign":"\udc00"}`), `campaign: lone UTF-16 surrogate escape \udc00 at byte `},
		{"escaped backslash is not an escape", push(`{"campaign":"\\ud800\u00e9"}`), ""},
		{"surrogate pair", push(`{"notification":{"title":"\ud83d\ude00 \u00e9 é"}}`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodePushRequest([]byte(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("DecodePushRequest(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("DecodePushRequest(%q) = %T %v, want a *ValidationError starting %q", tt.in, err, err, tt.want)
			}
		})
	}
}

// TestDecodeInvalidTextByteOffset checks the offset names the bad byte.
func TestDecodeInvalidTextByteOffset(t *testing.T) {
	in := "{\"v\":1,\"id\":\"r\xff\"}"
	_, err := DecodePushRequest([]byte(in))
	if want := "id: invalid UTF-8 at byte 14"; err == nil || err.Error() != want {
		t.Fatalf("DecodePushRequest(%q) = %v, want %s", in, err, want)
	}
	if in[14] != 0xff {
		t.Fatalf("test input: byte 14 is %q", in[14])
	}
}

// TestDecodeEventsInvalidText checks the device and click decoders too.
func TestDecodeEventsInvalidText(t *testing.T) {
	for _, tt := range []struct {
		name   string
		decode func([]byte) error
		in     string
		want   string
	}{
		{"device tag", func(b []byte) error { _, err := DecodeDeviceEvent(b); return err }, patch(t, baseRegister, "{\"tags\":[\"sp\xffrts\"]}"), "tags[0]: invalid UTF-8 at byte "},
		{"device alias", func(b []byte) error { _, err := DecodeDeviceEvent(b); return err }, patch(t, baseRegister, `{"alias":{"phone":"1\udfff"}}`), `alias.phone: lone UTF-16 surrogate escape \udfff at byte `},
		{"device user", func(b []byte) error { _, err := DecodeDeviceEvent(b); return err }, patch(t, baseSettings, "{\"user_id\":\"u\x80\"}"), "user_id: invalid UTF-8 at byte "},
		{"click user", func(b []byte) error { _, err := DecodeClickEvent(b); return err }, patch(t, baseClick, "{\"user_id\":\"u\xc0\xaf\"}"), "user_id: invalid UTF-8 at byte "},
		{"delivery reason", func(b []byte) error { _, err := DecodeDeliveryEvent(b); return err }, patch(t, baseDelivery, "{\"reason\":\"\xff\"}"), "reason: invalid UTF-8 at byte "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode([]byte(tt.in))
			var ve *ValidationError
			if !errors.As(err, &ve) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("decode(%q) = %v, want a *ValidationError starting %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestValidUserID(t *testing.T) {
	for _, tt := range []struct {
		id, want string
	}{
		{"u1", ""}, {"user-0042", ""}, {"night-owl", ""}, {"用户-1", ""}, {"a@example.com", ""}, {"u_1.x+y", ""},
		{strings.Repeat("a", MaxUserIDBytes), ""},
		{"", "must not be empty"},
		{strings.Repeat("a", MaxUserIDBytes+1), "257 bytes, want at most 256"},
		{"u\xff", "invalid UTF-8 at byte 1"},
		{"u\uFFFD", "has U+FFFD at byte 1"},
		{"u 1", "has whitespace at byte 1"},
		{"u\u00a01", "has whitespace at byte 1"},
		{"u\x00", "has control character U+0000 at byte 1"},
		{"u\x1b[31m", "has control character U+001B at byte 1"},
		{"root:x:0:0:root:/root:/bin/bash", `has ':' at byte 4 (not allowed in a user id)`},
		{"/etc/passwd", `has '/' at byte 0 (not allowed in a user id)`},
		{`a\b`, `has '\\' at byte 1 (not allowed in a user id)`},
		{"u1,John", `has ',' at byte 2 (not allowed in a user id)`},
	} {
		err := ValidUserID(tt.id)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("ValidUserID(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

// TestUserIDRuleInRecords checks ValidUserID applies to target.users and
// to the user ids of device and click events.
func TestUserIDRuleInRecords(t *testing.T) {
	_, err := DecodePushRequest([]byte(patch(t, basePush, `{"target":{"users":["u1","u 2"]}}`)))
	if want := "target.users[1]: has whitespace at byte 1"; err == nil || err.Error() != want {
		t.Errorf("DecodePushRequest(users u1, \"u 2\") = %v, want %s", err, want)
	}
	_, err = DecodeDeviceEvent([]byte(patch(t, baseRegister, `{"user_id":"a/b"}`)))
	if want := `user_id: has '/' at byte 1 (not allowed in a user id)`; err == nil || err.Error() != want {
		t.Errorf("DecodeDeviceEvent(user_id a/b) = %v, want %s", err, want)
	}
	_, err = DecodeClickEvent([]byte(patch(t, baseClick, `{"user_id":"a\tb"}`)))
	if want := "user_id: has whitespace at byte 1"; err == nil || err.Error() != want {
		t.Errorf("DecodeClickEvent(user_id a\\tb) = %v, want %s", err, want)
	}
}
