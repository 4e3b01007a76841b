package pushflow

// Strict decoding of the contract records.
//
// Decoding happens in two phases. First the bytes are parsed as one JSON
// object (a failure here is a *DecodeError). Then the decoder walks the
// fields of the record in contract order and type-checks every known field it
// finds, naming the full path of the first one that has the wrong type
// ("target.users[1]: want string, got number"); presence rules that only the
// JSON can tell (which target keys are present, whether "badge" is present)
// are checked on the way. Finally the record's Validate method applies the
// value rules. Only the first problem is reported, so the reason is
// deterministic: type errors before value rules, and within each phase the
// first field in contract order. Every problem after parsing is a
// *ValidationError.
//
// Conventions shared by every decoder: unknown fields are ignored, field
// names match exactly (case-sensitive), a field whose value is null counts as
// absent, an empty array or object normalises to nil, integers must be JSON
// integers (no fraction or exponent), times are RFC 3339 strings, and every
// string of the record (keys included, known fields or not) is valid UTF-8
// with no lone UTF-16 surrogate escape: that is checked on the raw bytes,
// right after parsing, so it is reported before any type or value rule.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxRecordBytes is the largest record the decoders accept. Bigger records
// are a *DecodeError without being parsed.
const MaxRecordBytes = 1 << 20

// DecodeError reports bytes that are not one JSON object: too large, not
// JSON, truncated, followed by trailing data, or a JSON value that is not an
// object. Such records go to the dead-letter topic with stage "decode".
type DecodeError struct {
	// Problem says what is wrong, e.g. "invalid JSON at offset 7" (byte
	// offsets count from 0).
	Problem string
	// Err is the underlying parser error, if any.
	Err error
}

// Error returns the problem, followed by the parser's error when there is one.
func (e *DecodeError) Error() string {
	if e.Err != nil {
		return e.Problem + ": " + e.Err.Error()
	}
	return e.Problem
}

// Unwrap returns the underlying parser error, or nil.
func (e *DecodeError) Unwrap() error { return e.Err }

// Stage returns StageDecode.
func (e *DecodeError) Stage() string { return StageDecode }

// DecodePushRequest decodes and validates one PushRequest. The error is a
// *DecodeError or a *ValidationError; see PushRequest.Validate for the rules.
//
// Beyond Validate, decoding checks what only the JSON can tell: exactly one
// key of "target" is present (`{"users":[]}` is "target.users: must not be
// empty", `{"broadcast":false}` is "target.broadcast: must be true"),
// "notification" is present, and "badge" sets Notification.HasBadge when
// present. An empty priority becomes PriorityNormal.
func DecodePushRequest(b []byte) (PushRequest, error) {
	m, err := parseObject(b)
	if err != nil {
		return PushRequest{}, err
	}
	var w walker
	o := object{m: m}
	r := PushRequest{V: w.version(o)}
	r.ID = w.str(o, "id")
	r.App = w.str(o, "app")
	r.Campaign = w.str(o, "campaign")
	r.Category = w.str(o, "category")
	r.Priority = w.str(o, "priority")
	r.Target = w.target(o)
	if n, ok := w.object(o, "notification"); ok {
		r.Notification = w.notification(n)
	} else {
		w.fail("notification", "required")
	}
	r.TTLSeconds, _ = w.integer(o, "ttl_seconds", 64)
	r.NotBefore = w.time(o, "not_before")
	r.CreatedAt = w.time(o, "created_at")
	if w.err != nil {
		return PushRequest{}, w.err
	}
	if r.Priority == "" {
		r.Priority = PriorityNormal
	}
	if err := r.Validate(); err != nil {
		return PushRequest{}, err
	}
	return r, nil
}

// DecodeDeviceEvent decodes and validates one DeviceEvent. The error is a
// *DecodeError or a *ValidationError; see DeviceEvent.Validate for the rules.
func DecodeDeviceEvent(b []byte) (DeviceEvent, error) {
	m, err := parseObject(b)
	if err != nil {
		return DeviceEvent{}, err
	}
	var w walker
	o := object{m: m}
	e := DeviceEvent{V: w.version(o)}
	e.Op = w.str(o, "op")
	e.App = w.str(o, "app")
	e.UserID = w.str(o, "user_id")
	e.DeviceID = w.str(o, "device_id")
	e.Platform = w.str(o, "platform")
	e.Token = w.str(o, "token")
	e.Tags = w.strings(o, "tags")
	e.Alias = w.stringMap(o, "alias")
	if s, ok := w.object(o, "settings"); ok {
		e.Settings.Timezone = w.str(s, "timezone")
		e.Settings.QuietHours = w.str(s, "quiet_hours")
		e.Settings.OptOut = w.strings(s, "opt_out")
	}
	e.At = w.time(o, "at")
	if w.err != nil {
		return DeviceEvent{}, w.err
	}
	if err := e.Validate(); err != nil {
		return DeviceEvent{}, err
	}
	return e, nil
}

// DecodeClickEvent decodes and validates one ClickEvent. The error is a
// *DecodeError or a *ValidationError; see ClickEvent.Validate for the rules.
func DecodeClickEvent(b []byte) (ClickEvent, error) {
	m, err := parseObject(b)
	if err != nil {
		return ClickEvent{}, err
	}
	var w walker
	o := object{m: m}
	e := ClickEvent{V: w.version(o)}
	e.RequestID = w.str(o, "request_id")
	e.App = w.str(o, "app")
	e.UserID = w.str(o, "user_id")
	e.DeviceID = w.str(o, "device_id")
	e.Action = w.str(o, "action")
	e.At = w.time(o, "at")
	if w.err != nil {
		return ClickEvent{}, w.err
	}
	if err := e.Validate(); err != nil {
		return ClickEvent{}, err
	}
	return e, nil
}

// DecodeDeliveryEvent decodes and validates one DeliveryEvent. The error is a
// *DecodeError or a *ValidationError; see DeliveryEvent.Validate for the
// rules.
func DecodeDeliveryEvent(b []byte) (DeliveryEvent, error) {
	m, err := parseObject(b)
	if err != nil {
		return DeliveryEvent{}, err
	}
	var w walker
	o := object{m: m}
	e := DeliveryEvent{V: w.version(o)}
	e.RequestID = w.str(o, "request_id")
	e.Campaign = w.str(o, "campaign")
	e.App = w.str(o, "app")
	e.Category = w.str(o, "category")
	e.Priority = w.str(o, "priority")
	e.UserID = w.str(o, "user_id")
	e.DeviceID = w.str(o, "device_id")
	e.Platform = w.str(o, "platform")
	e.Stage = w.str(o, "stage")
	e.Outcome = w.str(o, "outcome")
	e.Reason = w.str(o, "reason")
	e.ProviderID = w.str(o, "provider_id")
	attempts, _ := w.integer(o, "attempts", strconv.IntSize)
	e.Attempts = int(attempts)
	e.RequestTime = w.time(o, "request_time")
	e.EventTime = w.time(o, "event_time")
	e.LatencyMs, _ = w.integer(o, "latency_ms", 64)
	if w.err != nil {
		return DeliveryEvent{}, w.err
	}
	if err := e.Validate(); err != nil {
		return DeliveryEvent{}, err
	}
	return e, nil
}

// MarshalJSON encodes n with "badge" present whenever HasBadge is set (so a
// badge of 0, which clears the badge on the device, survives a round trip)
// or Badge is not 0.
func (n Notification) MarshalJSON() ([]byte, error) {
	type plain Notification // drops the methods, so no recursion
	out := struct {
		plain
		Badge *int `json:"badge,omitempty"` // shadows plain.Badge
	}{plain: plain(n)}
	if n.HasBadge || n.Badge != 0 {
		out.Badge = &n.Badge
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes one notification object with the strict typing of
// the decoders (exact field names, a wrong type is a *ValidationError naming
// the field) and sets HasBadge when "badge" is present. It applies no value
// rules: DecodePushRequest and PushRequest.Validate do.
func (n *Notification) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil // like encoding/json: null leaves the value alone
	}
	m, err := parseObject(b)
	if err != nil {
		return err
	}
	var w walker
	v := w.notification(object{m: m})
	if w.err != nil {
		return w.err
	}
	*n = v
	return nil
}

// parseObject parses b as exactly one JSON object, numbers kept as
// json.Number. A string anywhere in it (a key or a value, of a known field
// or not) that is not valid UTF-8 or escapes a lone UTF-16 surrogate is a
// *ValidationError naming the first such string (see checkText): the JSON
// parser would have replaced its bad text with U+FFFD.
func parseObject(b []byte) (map[string]any, error) {
	if len(b) > MaxRecordBytes {
		return nil, &DecodeError{Problem: fmt.Sprintf("record is %d bytes, want at most %d", len(b), MaxRecordBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return nil, &DecodeError{Problem: "empty record"}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, &DecodeError{Problem: "truncated JSON", Err: err}
		case errors.As(err, &syn):
			// Offset counts the bytes read, the bad one included; report
			// the bad byte's index, from 0, like every other position.
			return nil, &DecodeError{Problem: fmt.Sprintf("invalid JSON at offset %d", max(syn.Offset-1, 0)), Err: err}
		}
		return nil, &DecodeError{Problem: "invalid JSON", Err: err}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return nil, &DecodeError{Problem: fmt.Sprintf("trailing data after the JSON value at offset %d", end)}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &DecodeError{Problem: "want a JSON object, got " + jsonKind(v)}
	}
	if err := checkText(b); err != nil {
		return nil, err
	}
	return m, nil
}

// object is a JSON object found at path ("" for the record itself).
type object struct {
	path string
	m    map[string]any
}

// at returns the path of key in o.
func (o object) at(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// get returns the value of key, and false when it is absent or null.
func (o object) get(key string) (any, bool) {
	v, ok := o.m[key]
	return v, ok && v != nil
}

// walker type-checks fields and keeps the first problem. Its methods do
// nothing once a problem is recorded, so decoders read straight down the
// contract and check w.err once.
type walker struct {
	err error
}

func (w *walker) fail(field, problem string) {
	if w.err == nil {
		w.err = &ValidationError{Field: field, Problem: problem}
	}
}

func (w *walker) wrongType(field, want string, got any) {
	w.fail(field, "want "+want+", got "+jsonKind(got))
}

// version reads "v": required, an integer, and equal to Version.
func (w *walker) version(o object) int {
	v, ok := w.integer(o, "v", strconv.IntSize)
	switch {
	case w.err != nil:
	case !ok:
		w.fail("v", "required")
	case v != Version:
		w.fail("v", fmt.Sprintf("unsupported version %d, want %d", v, Version))
	}
	return int(v)
}

func (w *walker) str(o object, key string) string {
	v, ok := o.get(key)
	if !ok || w.err != nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		w.wrongType(o.at(key), "string", v)
	}
	return s
}

func (w *walker) boolean(o object, key string) bool {
	v, ok := o.get(key)
	if !ok || w.err != nil {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		w.wrongType(o.at(key), "boolean", v)
	}
	return b
}

// integer reads a JSON integer that fits in bits, and reports whether key
// was present.
func (w *walker) integer(o object, key string, bits int) (int64, bool) {
	v, ok := o.get(key)
	if !ok || w.err != nil {
		return 0, ok
	}
	num, isNum := v.(json.Number)
	if !isNum {
		w.wrongType(o.at(key), "integer", v)
		return 0, true
	}
	n, err := strconv.ParseInt(string(num), 10, bits)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			w.fail(o.at(key), fmt.Sprintf("want a %d-bit integer, got %s", bits, clip(string(num))))
		} else {
			w.fail(o.at(key), "want integer, got "+clip(string(num)))
		}
		return 0, true
	}
	return n, true
}

func (w *walker) time(o object, key string) time.Time {
	v, ok := o.get(key)
	if !ok || w.err != nil {
		return time.Time{}
	}
	s, isStr := v.(string)
	if !isStr {
		w.wrongType(o.at(key), "RFC 3339 time", v)
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		w.fail(o.at(key), "want RFC 3339 time, got "+quote(s))
		return time.Time{}
	}
	return t
}

// strings reads an array of strings; an empty array reads as nil.
func (w *walker) strings(o object, key string) []string {
	v, ok := o.get(key)
	if !ok || w.err != nil {
		return nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		w.wrongType(o.at(key), "array", v)
		return nil
	}
	if len(arr) == 0 {
		return nil
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		s, isStr := e.(string)
		if !isStr {
			w.wrongType(fmt.Sprintf("%s[%d]", o.at(key), i), "string", e)
			return nil
		}
		out[i] = s
	}
	return out
}

// stringMap reads an object whose values are strings; an empty object reads
// as nil. Keys are checked in sorted order so the reported field is
// deterministic.
func (w *walker) stringMap(o object, key string) map[string]string {
	obj, ok := w.object(o, key)
	if !ok || len(obj.m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(obj.m))
	for k := range obj.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		s, isStr := obj.m[k].(string)
		if !isStr {
			w.wrongType(obj.at(k), "string", obj.m[k])
			return nil
		}
		out[k] = s
	}
	return out
}

// object reads a nested object and reports whether it is present.
func (w *walker) object(o object, key string) (object, bool) {
	v, ok := o.get(key)
	if !ok || w.err != nil {
		return object{}, false
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		w.wrongType(o.at(key), "object", v)
		return object{}, false
	}
	return object{path: o.at(key), m: m}, true
}

// targetKinds lists the keys of a target in contract order.
var targetKinds = []string{TargetUsers, TargetDevices, TargetAlias, TargetTags, TargetBroadcast, TargetFile}

const targetKindList = "users, devices, alias, tags, broadcast, file"

// target reads "target", counting the kinds present in the JSON (not the
// non-empty ones), so that an empty kind is reported as empty rather than as
// missing.
func (w *walker) target(o object) Target {
	t, ok := w.object(o, "target")
	if !ok {
		w.fail("target", "required one of "+targetKindList)
		return Target{}
	}
	var tg Target
	tg.Users = w.strings(t, TargetUsers)
	tg.Devices = w.strings(t, TargetDevices)
	if a, ok := w.object(t, TargetAlias); ok {
		tg.Alias.Type = w.str(a, "type")
		tg.Alias.Values = w.strings(a, "values")
	}
	tg.Tags = w.str(t, TargetTags)
	tg.Broadcast = w.boolean(t, TargetBroadcast)
	tg.File = w.str(t, TargetFile)
	if w.err != nil {
		return Target{}
	}
	var present []string
	for _, k := range targetKinds {
		if _, ok := t.get(k); ok {
			present = append(present, k)
		}
	}
	switch len(present) {
	case 0:
		w.fail("target", "required one of "+targetKindList)
		return Target{}
	case 1:
	default:
		w.fail("target", fmt.Sprintf("exactly one of %s, got %d", targetKindList, len(present)))
		return Target{}
	}
	switch k := present[0]; {
	case k == TargetUsers && len(tg.Users) == 0,
		k == TargetDevices && len(tg.Devices) == 0,
		k == TargetTags && tg.Tags == "",
		k == TargetFile && tg.File == "":
		w.fail(t.at(k), "must not be empty")
	case k == TargetBroadcast && !tg.Broadcast:
		w.fail(t.at(k), "must be true")
	case k == TargetAlias && tg.Alias.Type == "":
		w.fail(t.at(k)+".type", "required")
	case k == TargetAlias && len(tg.Alias.Values) == 0:
		w.fail(t.at(k)+".values", "must not be empty")
	}
	return tg
}

// notification reads the fields of a notification object.
func (w *walker) notification(o object) Notification {
	var n Notification
	n.Title = w.str(o, "title")
	n.Body = w.str(o, "body")
	n.Sound = w.str(o, "sound")
	badge, ok := w.integer(o, "badge", strconv.IntSize)
	n.Badge, n.HasBadge = int(badge), ok
	n.Data = w.stringMap(o, "data")
	n.CollapseID = w.str(o, "collapse_id")
	n.ThreadID = w.str(o, "thread_id")
	n.PushType = w.str(o, "push_type")
	n.MutableContent = w.boolean(o, "mutable_content")
	n.ContentAvailable = w.boolean(o, "content_available")
	return n
}

// jsonKind names the JSON type of a value parsed with UseNumber.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// maxQuoted bounds how much of a bad value an error message repeats, so a
// dead letter's reason stays short whatever the input.
const maxQuoted = 64

// clip shortens s to maxQuoted bytes (on a rune boundary), marking the cut.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// quote clips and quotes s for an error message.
func quote(s string) string { return strconv.Quote(clip(s)) }
