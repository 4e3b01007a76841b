package pushflow

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// quoteJSON renders s as a JSON string.
func quoteJSON(s string) string { return fmt.Sprintf("%q", s) }

// idList renders n ids as a JSON array.
func idList(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf(`"u%d"`, i)
	}
	return "[" + strings.Join(ids, ",") + "]"
}

func TestPushRequestRules(t *testing.T) {
	tests := []struct {
		patch string
		want  string // "" when valid
	}{
		{`{"id":null}`, "id: required"},
		{`{"id":""}`, "id: required"},
		{`{"id":` + quoteJSON(strings.Repeat("i", 256)) + `}`, ""},
		{`{"id":` + quoteJSON(strings.Repeat("i", 257)) + `}`, "id: 257 bytes, want at most 256"},
		{`{"app":null}`, "app: required"},
		{`{"app":"com.example-app_2.News"}`, ""},
		{`{"app":"com example"}`, `app: want letters, digits, '.', '-' and '_', got "com example"`},
		{`{"app":"com/example"}`, `app: want letters, digits, '.', '-' and '_', got "com/example"`},
		{`{"app":"cöm"}`, `app: want letters, digits, '.', '-' and '_', got "cöm"`},
		{`{"app":` + quoteJSON(strings.Repeat("a", 255)) + `}`, ""},
		{`{"app":` + quoteJSON(strings.Repeat("a", 256)) + `}`, "app: 256 bytes, want at most 255"},
		{`{"priority":"urgent"}`, `priority: want realtime, normal or bulk, got "urgent"`},
		{`{"priority":"Realtime"}`, `priority: want realtime, normal or bulk, got "Realtime"`},
		{`{"priority":"normal"}`, ""},
		{`{"target":{"users":` + idList(MaxTargetIDs) + `}}`, ""},
		{`{"target":{"users":` + idList(MaxTargetIDs+1) + `}}`, "target.users: 10001 ids, want at most 10000"},
		{`{"target":{"devices":` + idList(MaxTargetIDs+1) + `}}`, "target.devices: 10001 ids, want at most 10000"},
		{`{"target":{"alias":{"type":"phone","values":` + idList(MaxTargetIDs+1) + `}}}`, "target.alias.values: 10001 ids, want at most 10000"},
		{`{"target":{"users":["a",""]}}`, "target.users[1]: must not be empty"},
		{`{"target":{"devices":[""]}}`, "target.devices[0]: must not be empty"},
		{`{"target":{"alias":{"type":"","values":["1"]}}}`, "target.alias.type: required"},
		{`{"target":{"alias":{"type":"phone","values":["1",""]}}}`, "target.alias.values[1]: must not be empty"},
		{`{"target":{"tags":"sports AND (vip OR NOT churned)"}}`, ""},
		{`{"target":{"tags":"sports AND ()"}}`, `target.tags: unexpected ")" at 12`},
		{`{"target":{"tags":"sports AND"}}`, "target.tags: unexpected end at 10"},
		{`{"target":{"tags":"  "}}`, "target.tags: empty expression at 2"},
		{`{"notification":{}}`, "notification: must have at least one of title, body, data or content_available"},
		{`{"notification":{"sound":"default","badge":1,"data":{}}}`, "notification: must have at least one of title, body, data or content_available"},
		{`{"notification":{"content_available":false,"push_type":"background"}}`, "notification: must have at least one of title, body, data or content_available"},
		{`{"notification":{"body":"b"}}`, ""},
		{`{"notification":{"title":"t","badge":-1}}`, "notification.badge: must not be negative, got -1"},
		{`{"notification":{"title":"t","collapse_id":` + quoteJSON(strings.Repeat("c", 64)) + `}}`, ""},
		{`{"notification":{"title":"t","collapse_id":` + quoteJSON(strings.Repeat("c", 65)) + `}}`, "notification.collapse_id: 65 bytes, want at most 64"},
		{`{"notification":{"title":"t","push_type":"banner"}}`,
			`notification.push_type: want one of alert, background, voip, location, complication, fileprovider, mdm, liveactivity, pushtotalk, got "banner"`},
		{`{"notification":{"title":"t","push_type":""}}`, ""},
		{`{"ttl_seconds":-1}`, "ttl_seconds: want 0 to 2419200 (28 days), got -1"},
		{`{"ttl_seconds":2419201}`, "ttl_seconds: want 0 to 2419200 (28 days), got 2419201"},
		// First broken rule in contract order.
		{`{"id":"","app":"","ttl_seconds":-1}`, "id: required"},
		{`{"app":"a b","notification":{}}`, `app: want letters, digits, '.', '-' and '_', got "a b"`},
		{`{"notification":{"title":"t","badge":-1,"push_type":"x"}}`, "notification.badge: must not be negative, got -1"},
	}
	for _, tt := range tests {
		in := patch(t, basePush, tt.patch)
		_, err := DecodePushRequest([]byte(in))
		if tt.want == "" {
			if err != nil {
				t.Errorf("DecodePushRequest(%.200s) = %v, want nil error", in, err)
			}
			continue
		}
		checkValidationError(t, "DecodePushRequest", fmt.Sprintf("%.200s", in), err, tt.want)
	}
}

// TestPushPushTypes accepts every documented APNs push type.
func TestPushPushTypes(t *testing.T) {
	for _, pt := range []string{"alert", "background", "voip", "location", "complication", "fileprovider", "mdm", "liveactivity", "pushtotalk"} {
		in := patch(t, basePush, `{"notification":{"title":"t","push_type":"`+pt+`"}}`)
		if _, err := DecodePushRequest([]byte(in)); err != nil {
			t.Errorf("DecodePushRequest(%s) = %v, want nil error", in, err)
		}
	}
}

// TestPushRequestValidate checks Validate on records built in Go, where
// presence is not known and only the values count.
func TestPushRequestValidate(t *testing.T) {
	valid := PushRequest{V: 1, ID: "r", App: "com.a", Target: Target{Broadcast: true}, Notification: Notification{Title: "t"}}
	tests := []struct {
		name string
		edit func(*PushRequest)
		want string
	}{
		{"valid", func(*PushRequest) {}, ""},
		{"empty priority is normal", func(r *PushRequest) { r.Priority = "" }, ""},
		{"zero version", func(r *PushRequest) { r.V = 0 }, "v: required"},
		{"version 2", func(r *PushRequest) { r.V = 2 }, "v: unsupported version 2, want 1"},
		{"no target", func(r *PushRequest) { r.Target = Target{} }, "target: required one of users, devices, alias, tags, broadcast, file"},
		{"empty users is no target", func(r *PushRequest) { r.Target = Target{Users: []string{}} },
			"target: required one of users, devices, alias, tags, broadcast, file"},
		{"two kinds", func(r *PushRequest) { r.Target.File = "f" }, "target: exactly one of users, devices, alias, tags, broadcast, file, got 2"},
		{"alias values without type", func(r *PushRequest) { r.Target = Target{Alias: AliasTarget{Values: []string{"1"}}} }, "target.alias.type: required"},
		{"alias type without values", func(r *PushRequest) { r.Target = Target{Alias: AliasTarget{Type: "phone"}} }, "target.alias.values: must not be empty"},
		{"bad tags", func(r *PushRequest) { r.Target = Target{Tags: "a OR"} }, "target.tags: unexpected end at 4"},
		{"empty notification", func(r *PushRequest) { r.Notification = Notification{} },
			"notification: must have at least one of title, body, data or content_available"},
	}
	for _, tt := range tests {
		r := valid
		tt.edit(&r)
		err := r.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: Validate() = %v, want nil error", tt.name, err)
			}
			continue
		}
		checkValidationError(t, "Validate", tt.name, err, tt.want)
	}
}

func TestDeviceEventRules(t *testing.T) {
	tests := []struct {
		base, patch string
		want        string
	}{
		{baseRegister, `{}`, ""},
		{baseUnregister, `{}`, ""},
		{baseSettings, `{}`, ""},
		{baseRegister, `{"op":null}`, "op: required"},
		{baseRegister, `{"op":"delete"}`, `op: want register, unregister or settings, got "delete"`},
		{baseRegister, `{"app":""}`, "app: required"},
		{baseRegister, `{"app":"com.example/news"}`, `app: want letters, digits, '.', '-' and '_', got "com.example/news"`},
		{baseRegister, `{"user_id":""}`, "user_id: required"},
		{baseRegister, `{"device_id":null}`, "device_id: required"},
		{baseRegister, `{"platform":null}`, "platform: required"},
		{baseRegister, `{"platform":"web"}`, `platform: want ios or android, got "web"`},
		{baseRegister, `{"token":""}`, "token: required"},
		{baseRegister, `{"token":"` + strings.Repeat("ab", 31) + `"}`, "token: want hex of even length 64 to 200 for ios, got 62 characters"},
		{baseRegister, `{"token":"` + strings.Repeat("a", 65) + `"}`, "token: want hex of even length 64 to 200 for ios, got 65 characters"},
		{baseRegister, `{"token":"` + strings.Repeat("AB", 100) + `"}`, ""},
		{baseRegister, `{"token":"` + strings.Repeat("ab", 101) + `"}`, "token: want hex of even length 64 to 200 for ios, got 202 characters"},
		{baseRegister, `{"token":"` + strings.Repeat("ab", 31) + `zz"}`, "token: want hex for ios, got a non-hex character at 62"},
		{baseRegister, `{"platform":"android","token":"` + strings.Repeat("t", 4096) + `"}`, ""},
		{baseRegister, `{"platform":"android","token":"` + strings.Repeat("t", 4097) + `"}`, "token: 4097 bytes, want at most 4096 for android"},
		{baseRegister, `{"tags":["a",""]}`, "tags[1]: must not be empty"},
		{baseRegister, `{"alias":{"":"139"}}`, "alias: empty alias type"},
		{baseRegister, `{"alias":{"phone":"","email":"a@b"}}`, "alias.phone: must not be empty"},
		{baseUnregister, `{"device_id":""}`, "device_id: required"},
		{baseUnregister, `{"platform":null,"token":null}`, ""},
		{baseSettings, `{"settings":null}`, "settings: required, with at least one of timezone, quiet_hours, opt_out"},
		{baseSettings, `{"settings":{}}`, "settings: required, with at least one of timezone, quiet_hours, opt_out"},
		{baseSettings, `{"settings":{"opt_out":[]}}`, "settings: required, with at least one of timezone, quiet_hours, opt_out"},
		{baseSettings, `{"settings":{"timezone":"UTC"}}`, ""},
		{baseSettings, `{"settings":{"timezone":"America/New_York"}}`, ""},
		{baseSettings, `{"settings":{"timezone":"Mars/Olympus"}}`, `settings.timezone: want an IANA time zone name, got "Mars/Olympus"`},
		{baseSettings, `{"settings":{"timezone":"Local"}}`, `settings.timezone: want an IANA time zone name, got "Local"`},
		{baseSettings, `{"settings":{"timezone":"../etc/passwd"}}`, `settings.timezone: want an IANA time zone name, got "../etc/passwd"`},
		{baseSettings, `{"settings":{"quiet_hours":"22-8"}}`, `settings.quiet_hours: want "HH:MM-HH:MM", got "22-8"`},
		{baseSettings, `{"settings":{"quiet_hours":"08:00-08:00"}}`, `settings.quiet_hours: start equals end in "08:00-08:00"`},
		{baseSettings, `{"settings":{"opt_out":["marketing",""]}}`, "settings.opt_out[1]: must not be empty"},
		{baseRegister, `{"settings":{"timezone":"Nowhere"}}`, `settings.timezone: want an IANA time zone name, got "Nowhere"`},
	}
	for _, tt := range tests {
		in := patch(t, tt.base, tt.patch)
		_, err := DecodeDeviceEvent([]byte(in))
		if tt.want == "" {
			if err != nil {
				t.Errorf("DecodeDeviceEvent(%.200s) = %v, want nil error", in, err)
			}
			continue
		}
		checkValidationError(t, "DecodeDeviceEvent", fmt.Sprintf("%.200s", in), err, tt.want)
		if strings.Contains(err.Error(), iosToken) {
			t.Errorf("DecodeDeviceEvent(%.200s) = %q, which repeats the token", in, err)
		}
	}
}

func TestClickEventRules(t *testing.T) {
	tests := []struct {
		patch string
		want  string
	}{
		{`{}`, ""},
		{`{"device_id":null}`, ""},
		{`{"v":2}`, "v: unsupported version 2, want 1"},
		{`{"request_id":""}`, "request_id: required"},
		{`{"app":"a b"}`, `app: want letters, digits, '.', '-' and '_', got "a b"`},
		{`{"user_id":null}`, "user_id: required"},
		{`{"action":null}`, "action: required"},
		{`{"action":"liked"}`, `action: want received, opened, clicked or dismissed, got "liked"`},
		{`{"action":"received"}`, ""},
		{`{"action":"clicked"}`, ""},
		{`{"action":"dismissed"}`, ""},
		{`{"at":null}`, "at: required"},
	}
	for _, tt := range tests {
		in := patch(t, baseClick, tt.patch)
		_, err := DecodeClickEvent([]byte(in))
		if tt.want == "" {
			if err != nil {
				t.Errorf("DecodeClickEvent(%s) = %v, want nil error", in, err)
			}
			continue
		}
		checkValidationError(t, "DecodeClickEvent", in, err, tt.want)
	}
}

func TestDeliveryEventRules(t *testing.T) {
	tests := []struct {
		patch string
		want  string
	}{
		{`{}`, ""},
		{`{"user_id":null,"device_id":null,"reason":"no_user","outcome":"dropped","stage":"expand"}`, ""},
		{`{"outcome":"failed","reason":"Unregistered"}`, ""},
		{`{"v":null}`, "v: required"},
		{`{"request_id":""}`, "request_id: required"},
		{`{"app":null}`, "app: required"},
		{`{"stage":""}`, "stage: required"},
		{`{"outcome":null}`, "outcome: required"},
		{`{"outcome":"delivered"}`, `outcome: want sent, failed or dropped, got "delivered"`},
	}
	for _, tt := range tests {
		in := patch(t, baseDelivery, tt.patch)
		_, err := DecodeDeliveryEvent([]byte(in))
		if tt.want == "" {
			if err != nil {
				t.Errorf("DecodeDeliveryEvent(%s) = %v, want nil error", in, err)
			}
			continue
		}
		checkValidationError(t, "DecodeDeliveryEvent", in, err, tt.want)
	}
}

func TestParseQuietHours(t *testing.T) {
	tests := []struct {
		in         string
		start, end time.Duration
		wantErr    string
	}{
		{"22:00-08:00", 22 * time.Hour, 8 * time.Hour, ""},
		{"00:00-23:59", 0, 23*time.Hour + 59*time.Minute, ""},
		{"12:30-13:45", 12*time.Hour + 30*time.Minute, 13*time.Hour + 45*time.Minute, ""},
		{"23:59-00:00", 23*time.Hour + 59*time.Minute, 0, ""},
		{"", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got ""`},
		{"22:00", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "22:00"`},
		{"2:00-08:00", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "2:00-08:00"`},
		{"24:00-08:00", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "24:00-08:00"`},
		{"22:60-08:00", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "22:60-08:00"`},
		{"22:00 08:00", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "22:00 08:00"`},
		{"22.00-08.00", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "22.00-08.00"`},
		{"+2:00-08:00", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "+2:00-08:00"`},
		{"aa:bb-cc:dd", 0, 0, `quiet_hours: want "HH:MM-HH:MM", got "aa:bb-cc:dd"`},
		{"10:00-10:00", 0, 0, `quiet_hours: start equals end in "10:00-10:00"`},
	}
	for _, tt := range tests {
		start, end, err := ParseQuietHours(tt.in)
		if tt.wantErr != "" {
			checkValidationError(t, "ParseQuietHours", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil || start != tt.start || end != tt.end {
			t.Errorf("ParseQuietHours(%q) = %v, %v, %v; want %v, %v, nil", tt.in, start, end, err, tt.start, tt.end)
		}
	}
}

func TestInQuietHours(t *testing.T) {
	utc := func(h, m int) time.Time { return time.Date(2026, 11, 22, h, m, 0, 0, time.UTC) }
	tests := []struct {
		s    Settings
		t    time.Time
		want bool
	}{
		{Settings{}, utc(23, 0), false},
		{Settings{Timezone: "Asia/Shanghai"}, utc(23, 0), false},
		// Across midnight, UTC.
		{Settings{QuietHours: "22:00-08:00"}, utc(21, 59), false},
		{Settings{QuietHours: "22:00-08:00"}, utc(22, 0), true},
		{Settings{QuietHours: "22:00-08:00"}, utc(0, 0), true},
		{Settings{QuietHours: "22:00-08:00"}, utc(7, 59), true},
		{Settings{QuietHours: "22:00-08:00"}, utc(8, 0), false},
		{Settings{QuietHours: "22:00-08:00"}, utc(12, 0), false},
		// Within one day.
		{Settings{QuietHours: "12:00-14:00"}, utc(11, 59), false},
		{Settings{QuietHours: "12:00-14:00"}, utc(12, 0), true},
		{Settings{QuietHours: "12:00-14:00"}, time.Date(2026, 11, 22, 13, 59, 59, 999999999, time.UTC), true},
		{Settings{QuietHours: "12:00-14:00"}, utc(14, 0), false},
		// In the user's time zone: 15:00 UTC is 23:00 in Shanghai (UTC+8).
		{Settings{Timezone: "Asia/Shanghai", QuietHours: "22:00-08:00"}, utc(15, 0), true},
		{Settings{Timezone: "Asia/Shanghai", QuietHours: "22:00-08:00"}, utc(23, 0), true},  // 07:00 local
		{Settings{Timezone: "Asia/Shanghai", QuietHours: "22:00-08:00"}, utc(0, 30), false}, // 08:30 local
		// The instant matters, not the zone t carries.
		{Settings{Timezone: "Asia/Shanghai", QuietHours: "22:00-08:00"}, utc(15, 0).In(time.FixedZone("X", -5*3600)), true},
		// New York in winter is UTC-5: 03:30 UTC is 22:30 local.
		{Settings{Timezone: "America/New_York", QuietHours: "22:00-07:00"}, utc(3, 30), true},
		{Settings{Timezone: "America/New_York", QuietHours: "22:00-07:00"}, utc(12, 30), false},
	}
	for _, tt := range tests {
		got, err := InQuietHours(tt.s, tt.t)
		if err != nil || got != tt.want {
			t.Errorf("InQuietHours(%+v, %v) = %v, %v; want %v, nil", tt.s, tt.t, got, err, tt.want)
		}
	}

	errTests := []struct {
		s    Settings
		want string
	}{
		{Settings{QuietHours: "late"}, `quiet_hours: want "HH:MM-HH:MM", got "late"`},
		{Settings{Timezone: "Atlantis", QuietHours: "22:00-08:00"}, `timezone: want an IANA time zone name, got "Atlantis"`},
	}
	for _, tt := range errTests {
		_, err := InQuietHours(tt.s, utc(0, 0))
		checkValidationError(t, "InQuietHours", fmt.Sprintf("%+v", tt.s), err, tt.want)
	}
}
