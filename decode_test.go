package pushflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Valid records of every kind, as in the DESIGN contract.
var (
	iosToken = strings.Repeat("a1", 32)

	basePush = `{"v":1, "id":"r-1", "app":"com.example.news", "campaign":"c-7", "category":"news",
 "priority":"realtime", "target":{"users":["u1","u2"]},
 "notification":{"title":"Hello","body":"World","sound":"default","badge":1,"data":{"k":"v"},
   "collapse_id":"c1","thread_id":"t1","push_type":"alert","mutable_content":false,"content_available":false},
 "ttl_seconds":3600, "not_before":"2026-11-22T10:00:00Z", "created_at":"2026-11-22T09:59:58Z"}`

	baseRegister = `{"v":1, "op":"register", "app":"com.example.news", "user_id":"u1", "device_id":"d1",
 "platform":"ios", "token":"` + iosToken + `", "tags":["sports"], "alias":{"phone":"139"}, "at":"2026-11-22T09:59:58Z"}`
	baseUnregister = `{"v":1, "op":"unregister", "app":"com.example.news", "user_id":"u1", "device_id":"d1", "at":"2026-11-22T09:59:58Z"}`
	baseSettings   = `{"v":1, "op":"settings", "app":"com.example.news", "user_id":"u1",
 "settings":{"timezone":"Asia/Shanghai", "quiet_hours":"22:00-08:00", "opt_out":["marketing"]}, "at":"2026-11-22T09:59:58Z"}`

	baseClick = `{"v":1, "request_id":"r-1", "app":"com.example.news", "user_id":"u1", "device_id":"d1",
 "action":"opened", "at":"2026-11-22T10:00:05Z"}`

	baseDelivery = `{"v":1, "request_id":"r-1", "campaign":"c-7", "app":"com.example.news", "category":"news",
 "priority":"normal", "user_id":"u1", "device_id":"d1", "platform":"ios", "stage":"send", "outcome":"sent",
 "reason":"", "provider_id":"apns-1", "attempts":1, "request_time":"2026-11-22T09:59:58Z",
 "event_time":"2026-11-22T10:00:00.012Z", "latency_ms":12}`
)

// patch returns base with the top-level keys of p replaced (a null value
// deletes the key).
func patch(t *testing.T, base, p string) string {
	t.Helper()
	var b, q map[string]json.RawMessage
	if err := json.Unmarshal([]byte(base), &b); err != nil {
		t.Fatalf("patch: base: %v", err)
	}
	if err := json.Unmarshal([]byte(p), &q); err != nil {
		t.Fatalf("patch: %s: %v", p, err)
	}
	for k, v := range q {
		if string(v) == "null" {
			delete(b, k)
			continue
		}
		b[k] = v
	}
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatalf("patch: %v", err)
	}
	return string(out)
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestDecodePushRequestValid(t *testing.T) {
	got, err := DecodePushRequest([]byte(basePush))
	if err != nil {
		t.Fatalf("DecodePushRequest(basePush) = %v, want nil error", err)
	}
	want := PushRequest{
		V: 1, ID: "r-1", App: "com.example.news", Campaign: "c-7", Category: "news", Priority: PriorityRealtime,
		Target: Target{Users: []string{"u1", "u2"}},
		Notification: Notification{
			Title: "Hello", Body: "World", Sound: "default", Badge: 1, HasBadge: true, Data: map[string]string{"k": "v"},
			CollapseID: "c1", ThreadID: "t1", PushType: "alert",
		},
		TTLSeconds: 3600,
		NotBefore:  mustTime(t, "2026-11-22T10:00:00Z"),
		CreatedAt:  mustTime(t, "2026-11-22T09:59:58Z"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DecodePushRequest(basePush) mismatch (-want +got):\n%s", diff)
	}
}

// TestDecodePushRequestFields checks what decoding adds to the struct: the
// target kinds, defaults, HasBadge, null and unknown fields.
func TestDecodePushRequestFields(t *testing.T) {
	tests := []struct {
		name  string
		patch string
		check func(PushRequest) any // extracts the part under test
		want  any
	}{
		{"users", `{"target":{"users":["a","b"]}}`, func(r PushRequest) any { return r.Target }, Target{Users: []string{"a", "b"}}},
		{"devices", `{"target":{"devices":["d1"]}}`, func(r PushRequest) any { return r.Target }, Target{Devices: []string{"d1"}}},
		{"alias", `{"target":{"alias":{"type":"phone","values":["139","140"]}}}`, func(r PushRequest) any { return r.Target },
			Target{Alias: AliasTarget{Type: "phone", Values: []string{"139", "140"}}}},
		{"tags", `{"target":{"tags":"sports AND (vip OR NOT churned)"}}`, func(r PushRequest) any { return r.Target },
			Target{Tags: "sports AND (vip OR NOT churned)"}},
		{"broadcast", `{"target":{"broadcast":true}}`, func(r PushRequest) any { return r.Target }, Target{Broadcast: true}},
		{"file", `{"target":{"file":"s3://bucket/users.txt"}}`, func(r PushRequest) any { return r.Target }, Target{File: "s3://bucket/users.txt"}},
		{"null kind is absent", `{"target":{"users":null,"broadcast":true}}`, func(r PushRequest) any { return r.Target }, Target{Broadcast: true}},
		{"unknown target key ignored", `{"target":{"segment":"x","broadcast":true}}`, func(r PushRequest) any { return r.Target }, Target{Broadcast: true}},
		{"priority defaults to normal", `{"priority":null}`, func(r PushRequest) any { return r.Priority }, PriorityNormal},
		{"empty priority is normal", `{"priority":""}`, func(r PushRequest) any { return r.Priority }, PriorityNormal},
		{"bulk", `{"priority":"bulk"}`, func(r PushRequest) any { return r.Priority }, PriorityBulk},
		{"badge 0 present", `{"notification":{"title":"t","badge":0}}`, func(r PushRequest) any { return r.Notification },
			Notification{Title: "t", HasBadge: true}},
		{"badge absent", `{"notification":{"title":"t"}}`, func(r PushRequest) any { return r.Notification }, Notification{Title: "t"}},
		{"badge null is absent", `{"notification":{"title":"t","badge":null}}`, func(r PushRequest) any { return r.Notification }, Notification{Title: "t"}},
		{"empty data is nil", `{"notification":{"title":"t","data":{}}}`, func(r PushRequest) any { return r.Notification }, Notification{Title: "t"}},
		{"content_available alone", `{"notification":{"content_available":true,"push_type":"background"}}`, func(r PushRequest) any { return r.Notification },
			Notification{ContentAvailable: true, PushType: "background"}},
		{"data alone", `{"notification":{"data":{"a":"1","b":""}}}`, func(r PushRequest) any { return r.Notification },
			Notification{Data: map[string]string{"a": "1", "b": ""}}},
		{"unknown fields ignored", `{"x-trace":{"a":[1,2]},"notification":{"title":"t","future":5}}`, func(r PushRequest) any { return r.Notification },
			Notification{Title: "t"}},
		{"case-sensitive names", `{"ID":5,"notification":{"title":"t","Badge":"x"}}`, func(r PushRequest) any { return [2]any{r.ID, r.Notification} },
			[2]any{"r-1", Notification{Title: "t"}}},
		{"times with offset", `{"created_at":"2026-11-22T17:59:58.5+08:00","not_before":null}`,
			func(r PushRequest) any { return [2]any{r.CreatedAt.UTC(), r.NotBefore} },
			[2]any{time.Date(2026, 11, 22, 9, 59, 58, 5e8, time.UTC), time.Time{}}},
		{"ttl 28 days", `{"ttl_seconds":2419200}`, func(r PushRequest) any { return r.TTLSeconds }, int64(2419200)},
		{"ttl zero", `{"ttl_seconds":0}`, func(r PushRequest) any { return r.TTLSeconds }, int64(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := patch(t, basePush, tt.patch)
			r, err := DecodePushRequest([]byte(in))
			if err != nil {
				t.Fatalf("DecodePushRequest(%s) = %v, want nil error", in, err)
			}
			if diff := cmp.Diff(tt.want, tt.check(r)); diff != "" {
				t.Errorf("DecodePushRequest(%s) mismatch (-want +got):\n%s", in, diff)
			}
		})
	}
}

// TestDecodePushRequestTypes checks that every wrong type is reported with
// its full path, and the presence rules only the JSON can tell.
func TestDecodePushRequestTypes(t *testing.T) {
	tests := []struct {
		patch string
		want  string
	}{
		{`{"v":null}`, "v: required"},
		{`{"v":"1"}`, "v: want integer, got string"},
		{`{"v":1.0}`, "v: want integer, got 1.0"},
		{`{"v":2}`, "v: unsupported version 2, want 1"},
		{`{"v":0}`, "v: unsupported version 0, want 1"},
		{`{"v":99999999999999999999}`, "v: want a 64-bit integer, got 99999999999999999999"},
		{`{"id":5}`, "id: want string, got number"},
		{`{"app":["a"]}`, "app: want string, got array"},
		{`{"campaign":true}`, "campaign: want string, got boolean"},
		{`{"category":{}}`, "category: want string, got object"},
		{`{"priority":1}`, "priority: want string, got number"},
		{`{"target":null}`, "target: required one of users, devices, alias, tags, broadcast, file"},
		{`{"target":"users"}`, "target: want object, got string"},
		{`{"target":{}}`, "target: required one of users, devices, alias, tags, broadcast, file"},
		{`{"target":{"users":["a"],"broadcast":true}}`, "target: exactly one of users, devices, alias, tags, broadcast, file, got 2"},
		{`{"target":{"users":[],"devices":[],"file":""}}`, "target: exactly one of users, devices, alias, tags, broadcast, file, got 3"},
		{`{"target":{"users":[]}}`, "target.users: must not be empty"},
		{`{"target":{"devices":[]}}`, "target.devices: must not be empty"},
		{`{"target":{"tags":""}}`, "target.tags: must not be empty"},
		{`{"target":{"file":""}}`, "target.file: must not be empty"},
		{`{"target":{"broadcast":false}}`, "target.broadcast: must be true"},
		{`{"target":{"alias":{}}}`, "target.alias.type: required"},
		{`{"target":{"alias":{"type":"phone"}}}`, "target.alias.values: must not be empty"},
		{`{"target":{"alias":{"type":"phone","values":[]}}}`, "target.alias.values: must not be empty"},
		{`{"target":{"users":"u1"}}`, "target.users: want array, got string"},
		{`{"target":{"users":["a",1]}}`, "target.users[1]: want string, got number"},
		{`{"target":{"users":["a",null]}}`, "target.users[1]: want string, got null"},
		{`{"target":{"devices":[["d"]]}}`, "target.devices[0]: want string, got array"},
		{`{"target":{"alias":"phone"}}`, "target.alias: want object, got string"},
		{`{"target":{"alias":{"type":1,"values":["a"]}}}`, "target.alias.type: want string, got number"},
		{`{"target":{"alias":{"type":"p","values":["a",false]}}}`, "target.alias.values[1]: want string, got boolean"},
		{`{"target":{"tags":["a"]}}`, "target.tags: want string, got array"},
		{`{"target":{"broadcast":"true"}}`, "target.broadcast: want boolean, got string"},
		{`{"target":{"file":1}}`, "target.file: want string, got number"},
		{`{"notification":null}`, "notification: required"},
		{`{"notification":"hi"}`, "notification: want object, got string"},
		{`{"notification":{"title":1}}`, "notification.title: want string, got number"},
		{`{"notification":{"title":"t","body":[]}}`, "notification.body: want string, got array"},
		{`{"notification":{"title":"t","sound":{}}}`, "notification.sound: want string, got object"},
		{`{"notification":{"title":"t","badge":"1"}}`, "notification.badge: want integer, got string"},
		{`{"notification":{"title":"t","badge":1.5}}`, "notification.badge: want integer, got 1.5"},
		{`{"notification":{"title":"t","badge":1e2}}`, "notification.badge: want integer, got 1e2"},
		{`{"notification":{"title":"t","data":[]}}`, "notification.data: want object, got array"},
		{`{"notification":{"title":"t","data":{"k":1}}}`, "notification.data.k: want string, got number"},
		{`{"notification":{"title":"t","data":{"b":1,"a":true}}}`, "notification.data.a: want string, got boolean"},
		{`{"notification":{"title":"t","collapse_id":1}}`, "notification.collapse_id: want string, got number"},
		{`{"notification":{"title":"t","thread_id":1}}`, "notification.thread_id: want string, got number"},
		{`{"notification":{"title":"t","push_type":1}}`, "notification.push_type: want string, got number"},
		{`{"notification":{"title":"t","mutable_content":"yes"}}`, "notification.mutable_content: want boolean, got string"},
		{`{"notification":{"title":"t","content_available":1}}`, "notification.content_available: want boolean, got number"},
		{`{"ttl_seconds":"3600"}`, "ttl_seconds: want integer, got string"},
		{`{"ttl_seconds":3600.5}`, "ttl_seconds: want integer, got 3600.5"},
		{`{"not_before":"tomorrow"}`, `not_before: want RFC 3339 time, got "tomorrow"`},
		{`{"created_at":"yesterday"}`, `created_at: want RFC 3339 time, got "yesterday"`},
		{`{"created_at":1700000000}`, "created_at: want RFC 3339 time, got number"},
		{`{"created_at":"2026-11-22 09:59:58Z"}`, `created_at: want RFC 3339 time, got "2026-11-22 09:59:58Z"`},
		{`{"created_at":"2026-11-22"}`, `created_at: want RFC 3339 time, got "2026-11-22"`},
		// The first problem in contract order wins; type errors come before value rules.
		{`{"id":1,"app":2}`, "id: want string, got number"},
		{`{"id":"","ttl_seconds":"x"}`, "ttl_seconds: want integer, got string"},
		{`{"v":3,"id":1}`, "v: unsupported version 3, want 1"},
	}
	for _, tt := range tests {
		in := patch(t, basePush, tt.patch)
		_, err := DecodePushRequest([]byte(in))
		checkValidationError(t, "DecodePushRequest", in, err, tt.want)
	}
}

// checkValidationError checks that err is a *ValidationError reading want.
func checkValidationError(t *testing.T, fn, in string, err error, want string) {
	t.Helper()
	var ve *ValidationError
	switch {
	case err == nil:
		t.Errorf("%s(%s) = nil error, want %q", fn, in, want)
	case !errors.As(err, &ve):
		t.Errorf("%s(%s) = %T %v, want *ValidationError %q", fn, in, err, err, want)
	case err.Error() != want:
		t.Errorf("%s(%s) = %q, want %q", fn, in, err, want)
	case ve.Field == "" || !strings.HasPrefix(want, ve.Field+": ") || ve.Problem != strings.TrimPrefix(want, ve.Field+": "):
		t.Errorf("%s(%s) = {Field: %q, Problem: %q}, want it to split %q", fn, in, ve.Field, ve.Problem, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	big := `{"v":1,"pad":"` + strings.Repeat("x", MaxRecordBytes) + `"}`
	tests := []struct {
		in   string
		want string
	}{
		{"", "empty record"},
		{"   \n", "empty record"},
		{"not json", "invalid JSON at offset 1: invalid character 'o' in literal null (expecting 'u')"},
		{"{,}", "invalid JSON at offset 1: invalid character ',' looking for beginning of object key string"},
		{`{"v":1`, "truncated JSON: unexpected EOF"},
		{`{"v":1}}`, "trailing data after the JSON value at offset 7"},
		{`{"v":1} {"v":1}`, "trailing data after the JSON value at offset 7"},
		{`{"v":1} x`, "trailing data after the JSON value at offset 7"},
		{`[{"v":1}]`, "want a JSON object, got array"},
		{`"v"`, "want a JSON object, got string"},
		{`1`, "want a JSON object, got number"},
		{`null`, "want a JSON object, got null"},
		{`true`, "want a JSON object, got boolean"},
		{big, fmt.Sprintf("record is %d bytes, want at most %d", len(big), MaxRecordBytes)},
	}
	decoders := map[string]func([]byte) error{
		"DecodePushRequest":   func(b []byte) error { _, err := DecodePushRequest(b); return err },
		"DecodeDeviceEvent":   func(b []byte) error { _, err := DecodeDeviceEvent(b); return err },
		"DecodeClickEvent":    func(b []byte) error { _, err := DecodeClickEvent(b); return err },
		"DecodeDeliveryEvent": func(b []byte) error { _, err := DecodeDeliveryEvent(b); return err },
	}
	for name, decode := range decoders {
		for _, tt := range tests {
			err := decode([]byte(tt.in))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("%s(%.40q) = %T %v, want *DecodeError", name, tt.in, err, err)
				continue
			}
			if err.Error() != tt.want {
				t.Errorf("%s(%.40q) = %q, want %q", name, tt.in, err, tt.want)
			}
		}
	}
}

func TestDecodeSizeLimit(t *testing.T) {
	// A record of exactly MaxRecordBytes is decoded; one byte more is not.
	rec := patch(t, basePush, `{"pad":""}`)
	rec = strings.Replace(rec, `"pad":""`, `"pad":"`+strings.Repeat("x", MaxRecordBytes-len(rec))+`"`, 1)
	if len(rec) != MaxRecordBytes {
		t.Fatalf("test record is %d bytes, want %d", len(rec), MaxRecordBytes)
	}
	if _, err := DecodePushRequest([]byte(rec)); err != nil {
		t.Errorf("DecodePushRequest(%d bytes) = %v, want nil error", len(rec), err)
	}
	_, err := DecodePushRequest([]byte(rec + " "))
	if got := ErrorStage(err); got != StageDecode {
		t.Errorf("ErrorStage(DecodePushRequest(%d bytes)) = %q (%v), want %q", len(rec)+1, got, err, StageDecode)
	}
}

func TestErrorStage(t *testing.T) {
	_, decodeErr := DecodePushRequest([]byte("{"))
	_, validateErr := DecodePushRequest([]byte(`{"v":2}`))
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"decode", decodeErr, StageDecode},
		{"validate", validateErr, StageValidate},
		{"wrapped decode", fmt.Errorf("kafka record 7: %w", decodeErr), StageDecode},
		{"wrapped validation", fmt.Errorf("kafka record 7: %w", &ValidationError{Field: "id", Problem: "required"}), StageValidate},
		{"tag expression inside validation", validateTarget(t, `{"tags":"a AND"}`), StageValidate},
		{"other", errors.New("boom"), StageDecode},
	}
	for _, tt := range tests {
		if got := ErrorStage(tt.err); got != tt.want {
			t.Errorf("%s: ErrorStage(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
	if got := (&DecodeError{}).Stage(); got != StageDecode {
		t.Errorf("DecodeError.Stage() = %q, want %q", got, StageDecode)
	}
	if got := (&ValidationError{}).Stage(); got != StageValidate {
		t.Errorf("ValidationError.Stage() = %q, want %q", got, StageValidate)
	}
}

// validateTarget decodes basePush with target replaced, returning the error.
func validateTarget(t *testing.T, target string) error {
	t.Helper()
	_, err := DecodePushRequest([]byte(patch(t, basePush, `{"target":`+target+`}`)))
	return err
}

func TestDecodeDeviceEventValid(t *testing.T) {
	at := mustTime(t, "2026-11-22T09:59:58Z")
	tests := []struct {
		in   string
		want DeviceEvent
	}{
		{baseRegister, DeviceEvent{V: 1, Op: OpRegister, App: "com.example.news", UserID: "u1", DeviceID: "d1", Platform: PlatformIOS,
			Token: iosToken, Tags: []string{"sports"}, Alias: map[string]string{"phone": "139"}, At: at}},
		{baseUnregister, DeviceEvent{V: 1, Op: OpUnregister, App: "com.example.news", UserID: "u1", DeviceID: "d1", At: at}},
		{baseSettings, DeviceEvent{V: 1, Op: OpSettings, App: "com.example.news", UserID: "u1",
			Settings: Settings{Timezone: "Asia/Shanghai", QuietHours: "22:00-08:00", OptOut: []string{"marketing"}}, At: at}},
		{patch(t, baseRegister, `{"platform":"android","token":"fcm:APA91b-x_y","tags":[],"alias":{},"at":null,"extra":1}`),
			DeviceEvent{V: 1, Op: OpRegister, App: "com.example.news", UserID: "u1", DeviceID: "d1", Platform: PlatformAndroid, Token: "fcm:APA91b-x_y"}},
	}
	for _, tt := range tests {
		got, err := DecodeDeviceEvent([]byte(tt.in))
		if err != nil {
			t.Errorf("DecodeDeviceEvent(%s) = %v, want nil error", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("DecodeDeviceEvent(%s) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestDecodeDeviceEventTypes(t *testing.T) {
	tests := []struct {
		base, patch string
		want        string
	}{
		{baseRegister, `{"v":null}`, "v: required"},
		{baseRegister, `{"v":2}`, "v: unsupported version 2, want 1"},
		{baseRegister, `{"op":1}`, "op: want string, got number"},
		{baseRegister, `{"app":1}`, "app: want string, got number"},
		{baseRegister, `{"user_id":1}`, "user_id: want string, got number"},
		{baseRegister, `{"device_id":1}`, "device_id: want string, got number"},
		{baseRegister, `{"platform":1}`, "platform: want string, got number"},
		{baseRegister, `{"token":1}`, "token: want string, got number"},
		{baseRegister, `{"tags":"sports"}`, "tags: want array, got string"},
		{baseRegister, `{"tags":["a",2]}`, "tags[1]: want string, got number"},
		{baseRegister, `{"alias":["phone"]}`, "alias: want object, got array"},
		{baseRegister, `{"alias":{"phone":139}}`, "alias.phone: want string, got number"},
		{baseSettings, `{"settings":"x"}`, "settings: want object, got string"},
		{baseSettings, `{"settings":{"timezone":8}}`, "settings.timezone: want string, got number"},
		{baseSettings, `{"settings":{"quiet_hours":2200}}`, "settings.quiet_hours: want string, got number"},
		{baseSettings, `{"settings":{"opt_out":"marketing"}}`, "settings.opt_out: want array, got string"},
		{baseSettings, `{"settings":{"opt_out":["a",null]}}`, "settings.opt_out[1]: want string, got null"},
		{baseRegister, `{"at":"now"}`, `at: want RFC 3339 time, got "now"`},
	}
	for _, tt := range tests {
		in := patch(t, tt.base, tt.patch)
		_, err := DecodeDeviceEvent([]byte(in))
		checkValidationError(t, "DecodeDeviceEvent", in, err, tt.want)
	}
}

func TestDecodeClickEvent(t *testing.T) {
	got, err := DecodeClickEvent([]byte(baseClick))
	if err != nil {
		t.Fatalf("DecodeClickEvent(baseClick) = %v, want nil error", err)
	}
	want := ClickEvent{V: 1, RequestID: "r-1", App: "com.example.news", UserID: "u1", DeviceID: "d1", Action: ActionOpened,
		At: mustTime(t, "2026-11-22T10:00:05Z")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DecodeClickEvent(baseClick) mismatch (-want +got):\n%s", diff)
	}
	tests := []struct {
		patch string
		want  string
	}{
		{`{"v":null}`, "v: required"},
		{`{"request_id":1}`, "request_id: want string, got number"},
		{`{"app":null}`, "app: required"},
		{`{"user_id":false}`, "user_id: want string, got boolean"},
		{`{"device_id":1}`, "device_id: want string, got number"},
		{`{"action":["opened"]}`, "action: want string, got array"},
		{`{"at":5}`, "at: want RFC 3339 time, got number"},
	}
	for _, tt := range tests {
		in := patch(t, baseClick, tt.patch)
		_, err := DecodeClickEvent([]byte(in))
		checkValidationError(t, "DecodeClickEvent", in, err, tt.want)
	}
}

func TestDecodeDeliveryEvent(t *testing.T) {
	got, err := DecodeDeliveryEvent([]byte(baseDelivery))
	if err != nil {
		t.Fatalf("DecodeDeliveryEvent(baseDelivery) = %v, want nil error", err)
	}
	want := DeliveryEvent{V: 1, RequestID: "r-1", Campaign: "c-7", App: "com.example.news", Category: "news", Priority: "normal",
		UserID: "u1", DeviceID: "d1", Platform: "ios", Stage: StageSend, Outcome: OutcomeSent, ProviderID: "apns-1", Attempts: 1,
		RequestTime: mustTime(t, "2026-11-22T09:59:58Z"), EventTime: mustTime(t, "2026-11-22T10:00:00.012Z"), LatencyMs: 12}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DecodeDeliveryEvent(baseDelivery) mismatch (-want +got):\n%s", diff)
	}
	tests := []struct {
		patch string
		want  string
	}{
		{`{"v":"1"}`, "v: want integer, got string"},
		{`{"request_id":1}`, "request_id: want string, got number"},
		{`{"campaign":1}`, "campaign: want string, got number"},
		{`{"reason":{}}`, "reason: want string, got object"},
		{`{"attempts":"1"}`, "attempts: want integer, got string"},
		{`{"attempts":1.5}`, "attempts: want integer, got 1.5"},
		{`{"latency_ms":"12"}`, "latency_ms: want integer, got string"},
		{`{"event_time":"later"}`, `event_time: want RFC 3339 time, got "later"`},
		{`{"request_time":0}`, "request_time: want RFC 3339 time, got number"},
	}
	for _, tt := range tests {
		in := patch(t, baseDelivery, tt.patch)
		_, err := DecodeDeliveryEvent([]byte(in))
		checkValidationError(t, "DecodeDeliveryEvent", in, err, tt.want)
	}
}

// TestRoundTrip checks decode → json.Marshal → decode gives an equal record.
func TestRoundTrip(t *testing.T) {
	push := []string{
		basePush,
		patch(t, basePush, `{"priority":null,"ttl_seconds":null,"not_before":null,"created_at":null}`),
		patch(t, basePush, `{"notification":{"title":"t","badge":0}}`),
		patch(t, basePush, `{"notification":{"body":"b","data":{"x":"","y":"\u2028<&>"}},"created_at":"2026-11-22T17:59:58.123456789+08:00"}`),
		patch(t, basePush, `{"target":{"devices":["d1"]}}`),
		patch(t, basePush, `{"target":{"alias":{"type":"phone","values":["139"]}}}`),
		patch(t, basePush, `{"target":{"tags":"sports and (vip or not churned)"}}`),
		patch(t, basePush, `{"target":{"broadcast":true}}`),
		patch(t, basePush, `{"target":{"file":"file:///audience.txt"}}`),
		patch(t, basePush, `{"notification":{"title":"t","badge":-0},"created_at":"2026-11-22T09:59:58,5Z","not_before":"2026-11-22T10:00:00.1234567891-00:30"}`),
		patch(t, basePush, "{\"id\":\"r-\\ud83d\\ude00\",\"campaign\":\"\\u0000\"}"), // surrogate pair, NUL (broken text: TestDecodeInvalidText)
		strings.Replace(basePush, `"id":"r-1"`, "\"id\":\"dup\",\"id\":\"r-ü\"", 1),
	}
	for _, in := range push {
		roundTrip(t, in, DecodePushRequest)
	}
	for _, in := range []string{baseRegister, baseUnregister, baseSettings, patch(t, baseRegister, `{"platform":"android","token":"x"}`)} {
		roundTrip(t, in, DecodeDeviceEvent)
	}
	roundTrip(t, baseClick, DecodeClickEvent)
	roundTrip(t, baseDelivery, DecodeDeliveryEvent)
	roundTrip(t, patch(t, baseDelivery, `{"request_time":null,"event_time":null,"campaign":null}`), DecodeDeliveryEvent)
}

func roundTrip[R any](t *testing.T, in string, decode func([]byte) (R, error)) {
	t.Helper()
	first, err := decode([]byte(in))
	if err != nil {
		t.Errorf("decode(%s) = %v, want nil error", in, err)
		return
	}
	b, err := json.Marshal(first)
	if err != nil {
		t.Errorf("json.Marshal(%+v) = %v", first, err)
		return
	}
	second, err := decode(b)
	if err != nil {
		t.Errorf("decode(json.Marshal(decode(%s))) = %v, want nil error; marshalled %s", in, err, b)
		return
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("round trip of %s mismatch (-first +second):\n%s", in, diff)
	}
}

func TestNotificationJSON(t *testing.T) {
	tests := []struct {
		n    Notification
		want string
	}{
		{Notification{Title: "t"}, `{"title":"t"}`},
		{Notification{Title: "t", HasBadge: true}, `{"title":"t","badge":0}`},
		{Notification{Title: "t", Badge: 3}, `{"title":"t","badge":3}`},
		{Notification{Title: "t", Badge: 3, HasBadge: true, Data: map[string]string{"k": "v"}, PushType: "alert", MutableContent: true},
			`{"title":"t","data":{"k":"v"},"push_type":"alert","mutable_content":true,"badge":3}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.n)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) = %v", tt.n, err)
		}
		if string(b) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, want %s", tt.n, b, tt.want)
		}
		var got Notification
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("json.Unmarshal(%s) = %v", b, err)
		}
		want := tt.n
		want.HasBadge = tt.n.HasBadge || tt.n.Badge != 0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("json.Unmarshal(%s) mismatch (-want +got):\n%s", b, diff)
		}
	}

	// Plain json.Unmarshal of a request keeps HasBadge and the strict types.
	var r PushRequest
	if err := json.Unmarshal([]byte(patch(t, basePush, `{"notification":{"title":"t","badge":0}}`)), &r); err != nil {
		t.Fatalf("json.Unmarshal(request with badge 0) = %v", err)
	}
	if want := (Notification{Title: "t", HasBadge: true}); !cmp.Equal(r.Notification, want) {
		t.Errorf("json.Unmarshal(request with badge 0).Notification = %+v, want %+v", r.Notification, want)
	}
	var n Notification
	err := json.Unmarshal([]byte(`{"title":"t","badge":"1"}`), &n)
	checkValidationError(t, "json.Unmarshal", `{"title":"t","badge":"1"}`, err, "badge: want integer, got string")
	n = Notification{Title: "kept"}
	if err := json.Unmarshal([]byte(`null`), &n); err != nil || n.Title != "kept" {
		t.Errorf("json.Unmarshal(null) = %v, %+v; want nil error, value unchanged", err, n)
	}
}
