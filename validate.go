package pushflow

// Validation rules of the contract records, and the quiet-hours helpers the
// filter shares with validation.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	_ "time/tzdata"
	"unicode"
	"unicode/utf8" // time zones resolve on workers without a zoneinfo database
)

// Limits enforced by validation.
const (
	// MaxTargetIDs is the most user ids, device ids or alias values one
	// request may target; bigger audiences use tags, broadcast or a file.
	MaxTargetIDs = 10000
	// MaxIDBytes is the longest request id.
	MaxIDBytes = 256
	// MaxAppBytes is the longest app (bundle) id.
	MaxAppBytes = 255
	// MaxCollapseIDBytes is the longest collapse id (APNs' limit).
	MaxCollapseIDBytes = 64
	// MaxTTLSeconds is the longest time to live: 28 days (FCM's limit).
	MaxTTLSeconds = 28 * 24 * 60 * 60
	// MinIOSTokenLen and MaxIOSTokenLen bound the length of an APNs device
	// token in hex characters.
	MinIOSTokenLen = 64
	MaxIOSTokenLen = 200
	// MaxAndroidTokenBytes is the longest FCM registration token.
	MaxAndroidTokenBytes = 4096
	// MaxUserIDBytes is the longest user id (see ValidUserID).
	MaxUserIDBytes = 256
)

// ValidUserID checks the one rule every user id follows, wherever it comes
// from (target.users, a device event, a click, a line of an audience file):
// 1 to MaxUserIDBytes bytes of valid UTF-8, with no whitespace, no control
// character, no U+FFFD (the mark of text broken upstream), and none of ':',
// '/', '\\' and ','. Anything else goes ("u1", "user-0042", "用户-1",
// "a@example.com"). The forbidden characters keep lines that are not ids —
// a path, a passwd or CSV line — from ever being taken for one. The error
// says what is wrong and where, and never repeats the id.
func ValidUserID(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > MaxUserIDBytes:
		return fmt.Errorf("%d bytes, want at most %d", len(s), MaxUserIDBytes)
	}
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
			return fmt.Errorf("has U+FFFD at byte %d", i)
		case unicode.IsSpace(r):
			return fmt.Errorf("has whitespace at byte %d", i)
		case unicode.IsControl(r):
			return fmt.Errorf("has control character %U at byte %d", r, i)
		case r == ':' || r == '/' || r == '\\' || r == ',':
			return fmt.Errorf("has %q at byte %d (not allowed in a user id)", r, i)
		}
	}
	return nil
}

// validateUserID checks the user id of field with ValidUserID.
func validateUserID(field, id string) error {
	if id == "" {
		return invalid(field, "required")
	}
	if err := ValidUserID(id); err != nil {
		return invalid(field, err.Error())
	}
	return nil
}

// pushTypes are the APNs push types accepted in Notification.PushType.
// Empty means the sender derives it from the notification.
var pushTypes = []string{"alert", "background", "voip", "location", "complication", "fileprovider", "mdm", "liveactivity", "pushtotalk"}

// ValidationError reports a record that is well-formed JSON but breaks the
// contract: a known field of the wrong type, a missing required field or a
// value out of range. Such records go to the dead-letter topic with stage
// "validate".
//
// A record with several problems reports only the first, deterministically:
// the decoders type-check fields in contract order (the order of the struct
// fields, with the presence rules only the JSON shows, such as which target
// keys are present) before applying the value rules, and Validate checks its rules in
// the order its doc lists them; keys of JSON objects such as
// notification.data are checked in sorted order.
type ValidationError struct {
	// Field is the JSON path of the offending field, e.g. "target.users[1]"
	// or "notification.data.k".
	Field string
	// Problem says what is wrong with it, e.g. "want string, got number".
	Problem string
}

// Error returns "field: problem".
func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// Stage returns StageValidate.
func (e *ValidationError) Stage() string { return StageValidate }

// ErrorStage returns the dead-letter stage of an error returned by a decoder:
// StageValidate when err is (or wraps) a *ValidationError, StageDecode when it
// is a *DecodeError or any other error (the record never became a value), and
// "" when err is nil.
func ErrorStage(err error) string {
	var de *DecodeError
	var ve *ValidationError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &de):
		return StageDecode
	case errors.As(err, &ve):
		return StageValidate
	}
	return StageDecode
}

func invalid(field, problem string) error {
	return &ValidationError{Field: field, Problem: problem}
}

// Validate checks the value rules of a push request and returns the first
// broken one, in this order, as a *ValidationError:
//   - v is Version ("v: required" when 0);
//   - id is set and at most MaxIDBytes bytes;
//   - app is set, at most MaxAppBytes bytes, of ASCII letters, digits, '.',
//     '-' and '_' (a bundle id);
//   - priority is realtime, normal or bulk; empty means normal;
//   - target has exactly one kind set: users hold 1 to MaxTargetIDs ids
//     that pass ValidUserID; devices hold 1 to MaxTargetIDs non-empty ids; alias has a type and 1 to MaxTargetIDs
//     non-empty values; tags parses with ParseTagExpr; broadcast is true;
//     file is not empty;
//   - notification has at least one of title, body, data or
//     content_available; badge is not negative; collapse_id is at most
//     MaxCollapseIDBytes bytes; push_type is empty (the sender derives it)
//     or one of alert, background, voip, location, complication,
//     fileprovider, mdm, liveactivity, pushtotalk;
//   - ttl_seconds is between 0 and MaxTTLSeconds (28 days).
func (r PushRequest) Validate() error {
	if err := validateVersion(r.V); err != nil {
		return err
	}
	switch {
	case r.ID == "":
		return invalid("id", "required")
	case len(r.ID) > MaxIDBytes:
		return invalid("id", fmt.Sprintf("%d bytes, want at most %d", len(r.ID), MaxIDBytes))
	}
	if err := validateApp(r.App); err != nil {
		return err
	}
	if r.Priority != "" {
		if err := oneOf("priority", r.Priority, PriorityRealtime, PriorityNormal, PriorityBulk); err != nil {
			return err
		}
	}
	if err := r.Target.validate(); err != nil {
		return err
	}
	if err := r.Notification.validate("notification"); err != nil {
		return err
	}
	if r.TTLSeconds < 0 || r.TTLSeconds > MaxTTLSeconds {
		return invalid("ttl_seconds", fmt.Sprintf("want 0 to %d (28 days), got %d", MaxTTLSeconds, r.TTLSeconds))
	}
	return nil
}

func (t Target) validate() error {
	var set []string
	if len(t.Users) > 0 {
		set = append(set, TargetUsers)
	}
	if len(t.Devices) > 0 {
		set = append(set, TargetDevices)
	}
	if t.Alias.Type != "" || len(t.Alias.Values) > 0 {
		set = append(set, TargetAlias)
	}
	if t.Tags != "" {
		set = append(set, TargetTags)
	}
	if t.Broadcast {
		set = append(set, TargetBroadcast)
	}
	if t.File != "" {
		set = append(set, TargetFile)
	}
	switch len(set) {
	case 0:
		return invalid("target", "required one of "+targetKindList)
	case 1:
	default:
		return invalid("target", fmt.Sprintf("exactly one of %s, got %d", targetKindList, len(set)))
	}
	switch set[0] {
	case TargetUsers:
		if err := validateIDs("target.users", t.Users); err != nil {
			return err
		}
		for i, u := range t.Users {
			if err := ValidUserID(u); err != nil {
				return invalid(fmt.Sprintf("target.users[%d]", i), err.Error())
			}
		}
	case TargetDevices:
		return validateIDs("target.devices", t.Devices)
	case TargetAlias:
		switch {
		case t.Alias.Type == "":
			return invalid("target.alias.type", "required")
		case len(t.Alias.Values) == 0:
			return invalid("target.alias.values", "must not be empty")
		}
		return validateIDs("target.alias.values", t.Alias.Values)
	case TargetTags:
		if _, err := ParseTagExpr(t.Tags); err != nil {
			var te *TagExprError
			if errors.As(err, &te) {
				return invalid("target.tags", te.problem())
			}
			return invalid("target.tags", err.Error())
		}
	}
	return nil
}

// validateIDs checks a list of 1 to MaxTargetIDs non-empty ids.
func validateIDs(field string, ids []string) error {
	if len(ids) > MaxTargetIDs {
		return invalid(field, fmt.Sprintf("%d ids, want at most %d", len(ids), MaxTargetIDs))
	}
	for i, id := range ids {
		if id == "" {
			return invalid(fmt.Sprintf("%s[%d]", field, i), "must not be empty")
		}
	}
	return nil
}

func (n Notification) validate(field string) error {
	switch {
	case n.Title == "" && n.Body == "" && len(n.Data) == 0 && !n.ContentAvailable:
		return invalid(field, "must have at least one of title, body, data or content_available")
	case n.Badge < 0:
		return invalid(field+".badge", fmt.Sprintf("must not be negative, got %d", n.Badge))
	case len(n.CollapseID) > MaxCollapseIDBytes:
		return invalid(field+".collapse_id", fmt.Sprintf("%d bytes, want at most %d", len(n.CollapseID), MaxCollapseIDBytes))
	case n.PushType != "" && !slices.Contains(pushTypes, n.PushType):
		return invalid(field+".push_type", fmt.Sprintf("want one of %s, got %s", strings.Join(pushTypes, ", "), quote(n.PushType)))
	}
	return nil
}

// Validate checks the value rules of a device event and returns the first
// broken one, in this order, as a *ValidationError:
//   - v is Version;
//   - op is register, unregister or settings;
//   - app is a bundle id as in PushRequest.Validate (it is half the Kafka
//     key app/user_id), user_id is set and passes ValidUserID;
//   - register: device_id, platform (ios or android) and token are set; an
//     ios token is hex of even length MinIOSTokenLen to MaxIOSTokenLen, an
//     android token at most MaxAndroidTokenBytes bytes;
//   - unregister: device_id is set;
//   - settings: settings sets at least one of timezone, quiet_hours or
//     opt_out (the registry replaces the user's settings with them);
//   - whatever the op: settings.timezone, when set, is an IANA time zone
//     name; settings.quiet_hours, when set, parses with ParseQuietHours;
//     settings.opt_out, tags, and alias types and values are not empty.
//
// Errors never repeat the token.
func (e DeviceEvent) Validate() error {
	if err := validateVersion(e.V); err != nil {
		return err
	}
	if err := oneOf("op", e.Op, OpRegister, OpUnregister, OpSettings); err != nil {
		return err
	}
	if err := validateApp(e.App); err != nil {
		return err
	}
	if err := validateUserID("user_id", e.UserID); err != nil {
		return err
	}
	switch e.Op {
	case OpRegister:
		if e.DeviceID == "" {
			return invalid("device_id", "required")
		}
		if err := oneOf("platform", e.Platform, PlatformIOS, PlatformAndroid); err != nil {
			return err
		}
		if err := validateToken(e.Platform, e.Token); err != nil {
			return err
		}
	case OpUnregister:
		if e.DeviceID == "" {
			return invalid("device_id", "required")
		}
	case OpSettings:
		if e.Settings.Timezone == "" && e.Settings.QuietHours == "" && len(e.Settings.OptOut) == 0 {
			return invalid("settings", "required, with at least one of timezone, quiet_hours, opt_out")
		}
	}
	if e.Settings.Timezone != "" {
		if _, err := loadLocation(e.Settings.Timezone); err != nil {
			return prefixed("settings", err)
		}
	}
	if e.Settings.QuietHours != "" {
		if _, _, err := ParseQuietHours(e.Settings.QuietHours); err != nil {
			return prefixed("settings", err)
		}
	}
	if err := validateNonEmpty("settings.opt_out", e.Settings.OptOut); err != nil {
		return err
	}
	if err := validateNonEmpty("tags", e.Tags); err != nil {
		return err
	}
	types := make([]string, 0, len(e.Alias))
	for k := range e.Alias {
		types = append(types, k)
	}
	slices.Sort(types)
	for _, k := range types {
		switch {
		case k == "":
			return invalid("alias", "empty alias type")
		case e.Alias[k] == "":
			return invalid("alias."+k, "must not be empty")
		}
	}
	return nil
}

// validateToken checks a provider token without ever quoting it.
func validateToken(platform, token string) error {
	switch {
	case token == "":
		return invalid("token", "required")
	case platform == PlatformIOS:
		if len(token)%2 != 0 || len(token) < MinIOSTokenLen || len(token) > MaxIOSTokenLen {
			return invalid("token", fmt.Sprintf("want hex of even length %d to %d for ios, got %d characters", MinIOSTokenLen, MaxIOSTokenLen, len(token)))
		}
		for i := 0; i < len(token); i++ {
			if !isHex(token[i]) {
				return invalid("token", fmt.Sprintf("want hex for ios, got a non-hex character at %d", i))
			}
		}
	case len(token) > MaxAndroidTokenBytes:
		return invalid("token", fmt.Sprintf("%d bytes, want at most %d for android", len(token), MaxAndroidTokenBytes))
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func validateNonEmpty(field string, list []string) error {
	for i, s := range list {
		if s == "" {
			return invalid(fmt.Sprintf("%s[%d]", field, i), "must not be empty")
		}
	}
	return nil
}

// Validate checks the value rules of a click event and returns the first
// broken one, in this order, as a *ValidationError: v is Version;
// request_id is set; app is a bundle id as in PushRequest.Validate; user_id
// is set and passes ValidUserID; action is received, opened, clicked or dismissed; at is set.
func (e ClickEvent) Validate() error {
	if err := validateVersion(e.V); err != nil {
		return err
	}
	if e.RequestID == "" {
		return invalid("request_id", "required")
	}
	if err := validateApp(e.App); err != nil {
		return err
	}
	if err := validateUserID("user_id", e.UserID); err != nil {
		return err
	}
	if err := oneOf("action", e.Action, ActionReceived, ActionOpened, ActionClicked, ActionDismissed); err != nil {
		return err
	}
	if e.At.IsZero() {
		return invalid("at", "required")
	}
	return nil
}

// Validate checks the value rules of a delivery event and returns the first
// broken one, in this order, as a *ValidationError: v is Version;
// request_id, app and stage are set; outcome is sent, failed or dropped.
func (e DeliveryEvent) Validate() error {
	if err := validateVersion(e.V); err != nil {
		return err
	}
	switch {
	case e.RequestID == "":
		return invalid("request_id", "required")
	case e.App == "":
		return invalid("app", "required")
	case e.Stage == "":
		return invalid("stage", "required")
	}
	return oneOf("outcome", e.Outcome, OutcomeSent, OutcomeFailed, OutcomeDropped)
}

func validateVersion(v int) error {
	switch v {
	case Version:
		return nil
	case 0:
		return invalid("v", "required")
	}
	return invalid("v", fmt.Sprintf("unsupported version %d, want %d", v, Version))
}

// validateApp checks a bundle-id-like app id.
func validateApp(app string) error {
	switch {
	case app == "":
		return invalid("app", "required")
	case len(app) > MaxAppBytes:
		return invalid("app", fmt.Sprintf("%d bytes, want at most %d", len(app), MaxAppBytes))
	}
	for i := 0; i < len(app); i++ {
		c := app[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return invalid("app", "want letters, digits, '.', '-' and '_', got "+quote(app))
		}
	}
	return nil
}

// oneOf checks that got is set and one of allowed.
func oneOf(field, got string, allowed ...string) error {
	if got == "" {
		return invalid(field, "required")
	}
	if slices.Contains(allowed, got) {
		return nil
	}
	list := strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	return invalid(field, "want "+list+", got "+quote(got))
}

// prefixed moves a *ValidationError under parent ("timezone" becomes
// "settings.timezone").
func prefixed(parent string, err error) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return invalid(parent+"."+ve.Field, ve.Problem)
	}
	return invalid(parent, err.Error())
}

// ParseQuietHours parses a quiet-hours window "HH:MM-HH:MM" (24-hour clock,
// two digits each) into its start and end as offsets from midnight. The
// window is half-open, [start, end); when end is before start it spans
// midnight ("22:00-08:00"). Start equal to end is an error. The error is a
// *ValidationError on field "quiet_hours".
func ParseQuietHours(s string) (start, end time.Duration, err error) {
	bad := invalid("quiet_hours", `want "HH:MM-HH:MM", got `+quote(s))
	if len(s) != len("HH:MM-HH:MM") || s[5] != '-' {
		return 0, 0, bad
	}
	start, ok1 := parseClock(s[:5])
	end, ok2 := parseClock(s[6:])
	if !ok1 || !ok2 {
		return 0, 0, bad
	}
	if start == end {
		return 0, 0, invalid("quiet_hours", "start equals end in "+quote(s))
	}
	return start, end, nil
}

// parseClock parses "HH:MM" with HH 00-23 and MM 00-59.
func parseClock(s string) (time.Duration, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, false
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, true
}

// InQuietHours reports whether t falls in the user's quiet hours, read on the
// wall clock of s.Timezone (UTC when empty). It is false when s has no quiet
// hours. The error is a *ValidationError when the timezone or the window is
// invalid. Time zones are loaded once per process and cached.
func InQuietHours(s Settings, t time.Time) (bool, error) {
	if s.QuietHours == "" {
		return false, nil
	}
	start, end, err := ParseQuietHours(s.QuietHours)
	if err != nil {
		return false, err
	}
	loc, err := loadLocation(s.Timezone)
	if err != nil {
		return false, err
	}
	h, m, sec := t.In(loc).Clock()
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second + time.Duration(t.Nanosecond())
	if start < end {
		return start <= d && d < end, nil
	}
	return d >= start || d < end, nil
}

// LocalDay is t's calendar day ("20060102") on the wall clock of the
// user's time zone s.Timezone (UTC when empty or unknown): the day a
// frequency cap counts in.
func LocalDay(s Settings, t time.Time) string {
	loc, err := loadLocation(s.Timezone)
	if err != nil {
		loc = time.UTC
	}
	return t.In(loc).Format("20060102")
}

// locations caches time zones by name: time.LoadLocation reads the zone
// database on every call.
var locations sync.Map // string → *time.Location

// loadLocation resolves an IANA time zone name, "" meaning UTC. The error is
// a *ValidationError on field "timezone".
func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if loc, ok := locations.Load(name); ok {
		return loc.(*time.Location), nil
	}
	// "Local" is the machine's zone, not a user's.
	loc, err := time.LoadLocation(name)
	if err != nil || name == "Local" {
		return nil, invalid("timezone", "want an IANA time zone name, got "+quote(name))
	}
	locations.Store(name, loc)
	return loc, nil
}
