package decode

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pushflow/pushflow"
	"github.com/pushflow/pushflow/connectors/apnsio"
	"github.com/pushflow/pushflow/connectors/kafkaio"
	"github.com/pushflow/pushflow/transforms/recipient"
)

// requestsOut is everything requestsFn emitted for one record.
type requestsOut struct {
	Reqs   []recipient.Request
	Dead   []pushflow.DeadLetter
	Events []pushflow.DeliveryEvent
}

// runRequests runs requestsFn on rec the way the runner would, with closure
// emitters, and checks that every time it stamped lies within the call.
func runRequests(t *testing.T, rec kafkaio.Record) requestsOut {
	t.Helper()
	fn := &requestsFn{}
	var out requestsOut
	before := time.Now()
	fn.ProcessElement(context.Background(), rec,
		func(r recipient.Request) { out.Reqs = append(out.Reqs, r) },
		func(d pushflow.DeadLetter) { out.Dead = append(out.Dead, d) },
		func(e pushflow.DeliveryEvent) { out.Events = append(out.Events, e) })
	after := time.Now()
	within := func(what string, ts time.Time) {
		t.Helper()
		if ts.Before(before.Truncate(time.Microsecond)) || ts.After(after) {
			t.Errorf("%s = %v, want within the call [%v, %v]", what, ts, before, after)
		}
	}
	for _, r := range out.Reqs {
		within("Request.ReceivedAt", r.ReceivedAt)
	}
	for _, d := range out.Dead {
		within("DeadLetter.At", d.At)
		if d.At.Location() != time.UTC {
			t.Errorf("DeadLetter.At = %v, want UTC", d.At)
		}
	}
	for _, e := range out.Events {
		within("DeliveryEvent.EventTime", e.EventTime)
	}
	return out
}

// ignoreTimes drops the fields stamped with time.Now from comparisons; the
// runners check them separately.
var ignoreTimes = cmp.Options{
	cmpopts.IgnoreFields(recipient.Request{}, "ReceivedAt"),
	cmpopts.IgnoreFields(pushflow.DeadLetter{}, "At"),
	cmpopts.IgnoreFields(pushflow.DeliveryEvent{}, "EventID", "RequestTime", "EventTime", "LatencyMs"),
	cmpopts.EquateEmpty(),
}

func record(offset int64, value string) kafkaio.Record {
	return kafkaio.Record{Topic: pushflow.TopicRequests, Partition: 2, Offset: offset, Key: []byte("k"), Value: []byte(value)}
}

// requestJSON renders a push request whose notification has the given title,
// body and push type.
func requestJSON(id, body, pushType string) string {
	n := map[string]any{"title": "big", "body": body}
	if pushType != "" {
		n["push_type"] = pushType
	}
	b, err := json.Marshal(map[string]any{
		"v": 1, "id": id, "app": "com.example.news", "campaign": "demo", "category": "news",
		"target": map[string]any{"users": []string{"u1"}}, "notification": n,
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// payloadSize is the APNs payload size of a request built by requestJSON.
func payloadSize(t *testing.T, body, pushType string) int {
	t.Helper()
	b, err := apnsio.BuildPayload(pushflow.Notification{Title: "big", Body: body, PushType: pushType})
	if err != nil {
		t.Fatalf("BuildPayload: %v", err)
	}
	return len(b)
}

func TestRequestsFnValid(t *testing.T) {
	created := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	rec := record(41, `{"v":1,"id":"r-1","app":"com.example.news","campaign":"demo","category":"news",`+
		`"target":{"users":["u1","u2"]},"notification":{"title":"Match starts","body":"Kick-off","badge":0,"data":{"k":"v"}},`+
		`"ttl_seconds":600,"created_at":"2026-11-22T09:00:00Z","unknown_field":true}`)
	got := runRequests(t, rec)
	want := requestsOut{Reqs: []recipient.Request{{
		Req: pushflow.PushRequest{
			V: 1, ID: "r-1", App: "com.example.news", Campaign: "demo", Category: "news",
			Priority: pushflow.PriorityNormal, // the default
			Target:   pushflow.Target{Users: []string{"u1", "u2"}},
			Notification: pushflow.Notification{
				Title: "Match starts", Body: "Kick-off", HasBadge: true, Data: map[string]string{"k": "v"},
			},
			TTLSeconds: 600,
			CreatedAt:  created,
		},
		Source: recipient.Source{Topic: pushflow.TopicRequests, Partition: 2, Offset: 41},
	}}}
	if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
		t.Errorf("requestsFn(valid) mismatch (-want +got):\n%s", diff)
	}
	if len(got.Reqs) == 1 {
		if s, want := got.Reqs[0].Source.String(), "push.requests/2/41"; s != want {
			t.Errorf("Source.String() = %q, want %q", s, want)
		}
		if rt := got.Reqs[0].RequestTime(); !rt.Equal(created) {
			t.Errorf("RequestTime() = %v, want created_at %v", rt, created)
		}
	}
}

func TestRequestsFnRejects(t *testing.T) {
	bigBody := strings.Repeat("x", 4200)
	bigSize := payloadSize(t, bigBody, "")
	if bigSize <= apnsio.MaxPayloadSize {
		t.Fatalf("test setup: payload of %d bytes is not over the %d limit", bigSize, apnsio.MaxPayloadSize)
	}
	hugeBody := strings.Repeat("x", 5200)
	hugeSize := payloadSize(t, hugeBody, "voip")
	nonUTF8 := []byte{'{', 0xff, 0xfe, '"', 0x80, '}'}
	badTitle := "{\"v\":1,\"id\":\"bad-5\",\"app\":\"com.example.news\",\"target\":{\"users\":[\"u1\"]},\"notification\":{\"title\":\"Gr\xfc\xdfe\"}}"
	badID := "{\"v\":1,\"id\":\"bad-\xff\",\"app\":\"com.example.news\",\"target\":{\"users\":[\"u1\"]},\"notification\":{\"title\":\"t\"}}"
	loneSurrogate := `{"v":1,"id":"bad-6","app":"com.example.news","target":{"users":["u1"]},"notification":{"title":"t","data":{"k":"\ud800"}}}`
	passwdUser := `{"v":1,"id":"bad-7","app":"com.example.news","target":{"users":["root:x:0:0:root:/root:/bin/bash"]},"notification":{"title":"t"}}`

	for _, tt := range []struct {
		name      string
		value     string
		stage     string
		reason    string // exact, or a prefix when prefix is set
		prefix    bool
		raw       string
		rawEnc    string
		eventID   string // request id of the expected DeliveryEvent; "" for none
		eventMeta pushflow.DeliveryEvent
	}{
		{
			name:   "malformed JSON",
			value:  "this is not json",
			stage:  pushflow.StageDecode,
			reason: "invalid JSON at offset 1: invalid character 'h' in literal true (expecting 'r')",
			raw:    "this is not json",
		},
		{
			name:   "truncated JSON",
			value:  `{"v":1,"id":"r-9"`,
			stage:  pushflow.StageDecode,
			reason: "truncated JSON: unexpected EOF",
			raw:    `{"v":1,"id":"r-9"`,
		},
		{
			name:   "empty record",
			value:  "",
			stage:  pushflow.StageDecode,
			reason: "empty record",
			raw:    "",
		},
		{
			name:   "not UTF-8",
			value:  string(nonUTF8),
			stage:  pushflow.StageDecode,
			reason: "invalid JSON at offset 1",
			prefix: true,
			raw:    base64.StdEncoding.EncodeToString(nonUTF8),
			rawEnc: "base64",
		},
		{
			name:    "wrong type field",
			value:   `{"v":1,"id":"bad-1","app":"com.example.news","campaign":"c","category":"news","priority":"bulk","target":{"users":[42]},"notification":{"title":"x"}}`,
			stage:   pushflow.StageValidate,
			reason:  "target.users[0]: want string, got number",
			raw:     `{"v":1,"id":"bad-1","app":"com.example.news","campaign":"c","category":"news","priority":"bulk","target":{"users":[42]},"notification":{"title":"x"}}`,
			eventID: "bad-1",
			eventMeta: pushflow.DeliveryEvent{
				App: "com.example.news", Campaign: "c", Category: "news", Priority: "bulk",
			},
		},
		{
			name:    "two target kinds",
			value:   `{"v":1,"id":"bad-2","app":"com.example.news","target":{"users":["u1"],"broadcast":true},"notification":{"title":"x"}}`,
			stage:   pushflow.StageValidate,
			reason:  "target: exactly one of",
			prefix:  true,
			raw:     `{"v":1,"id":"bad-2","app":"com.example.news","target":{"users":["u1"],"broadcast":true},"notification":{"title":"x"}}`,
			eventID: "bad-2",
			eventMeta: pushflow.DeliveryEvent{
				App:      "com.example.news",
				Priority: pushflow.PriorityNormal, // defaulted as for a valid request
			},
		},
		{
			name:   "invalid without a readable id",
			value:  `{"v":1,"id":7,"app":"com.example.news","target":{"users":["u1"]},"notification":{"title":"x"}}`,
			stage:  pushflow.StageValidate,
			reason: "id: want string, got number",
			raw:    `{"v":1,"id":7,"app":"com.example.news","target":{"users":["u1"]},"notification":{"title":"x"}}`,
		},
		{
			name:    "invalid UTF-8 in the title",
			value:   badTitle,
			stage:   pushflow.StageValidate,
			reason:  fmt.Sprintf("notification.title: invalid UTF-8 at byte %d", strings.IndexByte(badTitle, 0xfc)),
			raw:     base64.StdEncoding.EncodeToString([]byte(badTitle)),
			rawEnc:  "base64",
			eventID: "bad-5",
			eventMeta: pushflow.DeliveryEvent{
				App: "com.example.news", Priority: pushflow.PriorityNormal,
			},
		},
		{
			// The id is broken text itself: no event, whose request_id
			// would carry U+FFFD, only the dead letter.
			name:   "invalid UTF-8 in the id",
			value:  badID,
			stage:  pushflow.StageValidate,
			reason: fmt.Sprintf("id: invalid UTF-8 at byte %d", strings.IndexByte(badID, 0xff)),
			raw:    base64.StdEncoding.EncodeToString([]byte(badID)),
			rawEnc: "base64",
		},
		{
			name:    "lone surrogate escape in data",
			value:   loneSurrogate,
			stage:   pushflow.StageValidate,
			reason:  fmt.Sprintf(`notification.data.k: lone UTF-16 surrogate escape \ud800 at byte %d`, strings.Index(loneSurrogate, `\ud800`)),
			raw:     loneSurrogate,
			eventID: "bad-6",
			eventMeta: pushflow.DeliveryEvent{
				App: "com.example.news", Priority: pushflow.PriorityNormal,
			},
		},
		{
			name:    "a passwd line as a user id",
			value:   passwdUser,
			stage:   pushflow.StageValidate,
			reason:  "target.users[0]: has ':' at byte 4 (not allowed in a user id)",
			raw:     passwdUser,
			eventID: "bad-7",
			eventMeta: pushflow.DeliveryEvent{
				App: "com.example.news", Priority: pushflow.PriorityNormal,
			},
		},
		{
			name:    "APNs payload too large",
			value:   requestJSON("bad-3", bigBody, ""),
			stage:   pushflow.StageValidate,
			reason:  fmt.Sprintf("notification: APNs payload is %d bytes, the limit is %d", bigSize, apnsio.MaxPayloadSize),
			raw:     requestJSON("bad-3", bigBody, ""),
			eventID: "bad-3",
			eventMeta: pushflow.DeliveryEvent{
				App: "com.example.news", Campaign: "demo", Category: "news", Priority: pushflow.PriorityNormal,
			},
		},
		{
			name:    "voip payload over the voip limit",
			value:   requestJSON("bad-4", hugeBody, "voip"),
			stage:   pushflow.StageValidate,
			reason:  fmt.Sprintf("notification: APNs payload is %d bytes, the limit is %d", hugeSize, apnsio.MaxVoIPPayloadSize),
			raw:     requestJSON("bad-4", hugeBody, "voip"),
			eventID: "bad-4",
			eventMeta: pushflow.DeliveryEvent{
				App: "com.example.news", Campaign: "demo", Category: "news", Priority: pushflow.PriorityNormal,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := runRequests(t, record(7, tt.value))
			if len(got.Dead) == 1 && tt.prefix {
				if !strings.HasPrefix(got.Dead[0].Reason, tt.reason) {
					t.Errorf("DeadLetter.Reason = %q, want prefix %q", got.Dead[0].Reason, tt.reason)
				}
				tt.reason = got.Dead[0].Reason
			}
			want := requestsOut{Dead: []pushflow.DeadLetter{{
				V: 1, Stage: tt.stage, Reason: tt.reason, Raw: tt.raw, RawEncoding: tt.rawEnc,
				Topic: pushflow.TopicRequests, Partition: 2, Offset: 7,
			}}}
			if tt.eventID != "" {
				ev := tt.eventMeta
				ev.V, ev.RequestID = 1, tt.eventID
				ev.Stage, ev.Outcome, ev.Reason = tt.stage, pushflow.OutcomeDropped, tt.reason
				want.Events = []pushflow.DeliveryEvent{ev}
			}
			if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
				t.Errorf("requestsFn(%.60q) mismatch (-want +got):\n%s", tt.value, diff)
			}
			if tt.rawEnc == "base64" && len(got.Dead) == 1 {
				raw, err := base64.StdEncoding.DecodeString(got.Dead[0].Raw)
				if err != nil || string(raw) != tt.value {
					t.Errorf("base64 raw decodes to %q, %v, want the original bytes %q", raw, err, tt.value)
				}
			}
		})
	}
}

// TestRequestsFnVoIPLimit checks the voip payload limit (5120) applies to
// voip pushes only: the same body is accepted as voip and rejected as alert.
func TestRequestsFnVoIPLimit(t *testing.T) {
	body := strings.Repeat("v", 4500)
	if n := payloadSize(t, body, "voip"); n <= apnsio.MaxPayloadSize || n > apnsio.MaxVoIPPayloadSize {
		t.Fatalf("test setup: voip payload of %d bytes, want in (%d, %d]", n, apnsio.MaxPayloadSize, apnsio.MaxVoIPPayloadSize)
	}
	for _, tt := range []struct {
		pushType string
		wantOK   bool
	}{
		{"voip", true},
		{"alert", false},
		{"", false},
	} {
		got := runRequests(t, record(1, requestJSON("r-voip", body, tt.pushType)))
		if ok := len(got.Reqs) == 1 && len(got.Dead) == 0 && len(got.Events) == 0; ok != tt.wantOK {
			t.Errorf("requestsFn(push_type %q, %d-byte body) = %d requests, %d dead letters %v; want accepted=%v",
				tt.pushType, len(body), len(got.Reqs), len(got.Dead), got.Dead, tt.wantOK)
		}
	}
}

// TestRequestsFnInvalidEventTimes checks the DeliveryEvent of an invalid
// request measures latency from its created_at when it can be read.
func TestRequestsFnInvalidEventTimes(t *testing.T) {
	created := time.Now().Add(-2 * time.Second).UTC().Truncate(time.Second)
	got := runRequests(t, record(3, fmt.Sprintf(
		`{"v":1,"id":"bad-t","app":"com.example.news","created_at":%q,"target":{"users":[1]},"notification":{"title":"x"}}`,
		created.Format(time.RFC3339))))
	if len(got.Events) != 1 {
		t.Fatalf("requestsFn(invalid with created_at) = %d events, want 1", len(got.Events))
	}
	ev := got.Events[0]
	if !ev.RequestTime.Equal(created) {
		t.Errorf("RequestTime = %v, want created_at %v", ev.RequestTime, created)
	}
	if ev.LatencyMs < 2000 || ev.LatencyMs > 60000 {
		t.Errorf("LatencyMs = %d, want about 2000 (since created_at)", ev.LatencyMs)
	}
}

func TestDeviceEventsFn(t *testing.T) {
	const token = "8b53639f152c8fc6ef30802fde462ba0be9cf085f7580dc69efd72e002abbb35"
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	type out struct {
		Events []pushflow.DeviceEvent
		Dead   []pushflow.DeadLetter
	}
	dead := func(stage, reason, raw, enc string) out {
		return out{Dead: []pushflow.DeadLetter{{V: 1, Stage: stage, Reason: reason, Raw: raw, RawEncoding: enc, Topic: pushflow.TopicDevices, Partition: 1, Offset: 9}}}
	}
	for _, tt := range []struct {
		name  string
		value string
		want  out
	}{
		{
			name:  "register",
			value: `{"v":1,"op":"register","app":"com.example.news","user_id":"u1","device_id":"d1","platform":"ios","token":"` + token + `","at":"2026-11-22T09:00:00Z","tags":["sports","vip"],"alias":{"phone":"139"}}`,
			want: out{Events: []pushflow.DeviceEvent{{
				V: 1, Op: pushflow.OpRegister, App: "com.example.news", UserID: "u1", DeviceID: "d1", Platform: "ios",
				Token: token, Tags: []string{"sports", "vip"}, Alias: map[string]string{"phone": "139"}, At: at,
			}}},
		},
		{
			name:  "settings",
			value: `{"v":1,"op":"settings","app":"com.example.news","user_id":"u2","settings":{"timezone":"Europe/Berlin","quiet_hours":"22:00-08:00","opt_out":["marketing"]}}`,
			want: out{Events: []pushflow.DeviceEvent{{
				V: 1, Op: pushflow.OpSettings, App: "com.example.news", UserID: "u2",
				Settings: pushflow.Settings{Timezone: "Europe/Berlin", QuietHours: "22:00-08:00", OptOut: []string{"marketing"}},
			}}},
		},
		{
			name:  "not json",
			value: "not json at all",
			want:  dead(pushflow.StageDecode, "invalid JSON at offset 1: invalid character 'o' in literal null (expecting 'u')", "not json at all", ""),
		},
		{
			name:  "unknown op",
			value: `{"v":1,"op":"explode","app":"com.example.news","user_id":"u10"}`,
			want:  dead(pushflow.StageValidate, `op: want register, unregister or settings, got "explode"`, `{"v":1,"op":"explode","app":"com.example.news","user_id":"u10"}`, ""),
		},
		{
			name:  "bad ios token is not repeated",
			value: `{"v":1,"op":"register","app":"com.example.news","user_id":"u10","device_id":"d10","platform":"ios","token":"not-hex!"}`,
			want:  dead(pushflow.StageValidate, "token: want hex of even length 64 to 200 for ios, got 8 characters", `{"v":1,"op":"register","app":"com.example.news","user_id":"u10","device_id":"d10","platform":"ios","token":"not-hex!"}`, ""),
		},
		{
			name:  "not UTF-8",
			value: "\xff\xfe",
			want:  dead(pushflow.StageDecode, "invalid JSON at offset 0: invalid character 'ÿ' looking for beginning of value", base64.StdEncoding.EncodeToString([]byte("\xff\xfe")), "base64"),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fn := &deviceEventsFn{}
			var got out
			fn.ProcessElement(context.Background(),
				kafkaio.Record{Topic: pushflow.TopicDevices, Partition: 1, Offset: 9, Value: []byte(tt.value)},
				func(e pushflow.DeviceEvent) { got.Events = append(got.Events, e) },
				func(d pushflow.DeadLetter) { got.Dead = append(got.Dead, d) })
			if diff := cmp.Diff(tt.want, got, ignoreTimes); diff != "" {
				t.Errorf("deviceEventsFn(%.60q) mismatch (-want +got):\n%s", tt.value, diff)
			}
		})
	}
}

func TestNewDeadLetter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	for _, tt := range []struct {
		raw     []byte
		wantRaw string
		wantEnc string
	}{
		{[]byte(`{"a":"é"}`), `{"a":"é"}`, ""},
		{[]byte{0xc3, 0x28}, "wyg=", "base64"},
		{nil, "", ""},
	} {
		got := NewDeadLetter("t", 3, 4, tt.raw, pushflow.StageDecode, "why", now)
		want := pushflow.DeadLetter{V: 1, Stage: "decode", Reason: "why", Raw: tt.wantRaw, RawEncoding: tt.wantEnc, Topic: "t", Partition: 3, Offset: 4, At: now.UTC()}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("NewDeadLetter(%q) mismatch (-want +got):\n%s", tt.raw, diff)
		}
	}
}

func TestNewDeadLetterTruncates(t *testing.T) {
	// A multi-byte character straddles the cut: the cut moves back to its start.
	raw := append(bytes.Repeat([]byte("a"), pushflow.MaxDeadLetterRaw-1), []byte("é and more")...)
	dl := NewDeadLetter("push.requests", 1, 7, raw, pushflow.StageDecode, "too big", time.Now())
	if !dl.RawTruncated || dl.RawBytes != len(raw) {
		t.Errorf("RawTruncated, RawBytes = %v, %d, want true, %d", dl.RawTruncated, dl.RawBytes, len(raw))
	}
	if dl.RawEncoding != "" || len(dl.Raw) != pushflow.MaxDeadLetterRaw-1 || !utf8.ValidString(dl.Raw) {
		t.Errorf("Raw is %d bytes (encoding %q, valid UTF-8 %v), want %d verbatim bytes", len(dl.Raw), dl.RawEncoding, utf8.ValidString(dl.Raw), pushflow.MaxDeadLetterRaw-1)
	}
	small := NewDeadLetter("push.requests", 1, 8, []byte("{}"), pushflow.StageDecode, "x", time.Now())
	if small.RawTruncated || small.RawBytes != 0 || small.Raw != "{}" {
		t.Errorf("small dead letter = %+v, want Raw {} untruncated", small)
	}
}
