package fcmiotest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Payload limits of FCM, in bytes (see PayloadSize).
const (
	MaxPayloadSize      = 4096
	MaxTopicPayloadSize = 2048
	// MaxTTL is the longest android.ttl FCM accepts: 28 days.
	MaxTTL = 28 * 24 * time.Hour
	// maxRequestSize bounds the request body read; larger ones are "message
	// too big" whatever their content.
	maxRequestSize = 1 << 20
)

// FCM error codes (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode),
// answered in an FcmError detail; the firebase SDK's messaging.IsUnregistered,
// IsInvalidArgument, ... test for them.
const (
	CodeUnregistered        = "UNREGISTERED"           // 404
	CodeInvalidArgument     = "INVALID_ARGUMENT"       // 400
	CodeSenderIDMismatch    = "SENDER_ID_MISMATCH"     // 403
	CodeQuotaExceeded       = "QUOTA_EXCEEDED"         // 429
	CodeUnavailable         = "UNAVAILABLE"            // 503
	CodeInternal            = "INTERNAL"               // 500
	CodeThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR" // 401
)

// Detail types of Google API errors.
const (
	fcmErrorType   = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	badRequestType = "type.googleapis.com/google.rpc.BadRequest"
)

// rpcStatuses are the Google RPC statuses of HTTP statuses
// (google.rpc.Code's HTTP mapping).
var rpcStatuses = map[int]string{
	http.StatusBadRequest:          "INVALID_ARGUMENT",
	http.StatusUnauthorized:        "UNAUTHENTICATED",
	http.StatusForbidden:           "PERMISSION_DENIED",
	http.StatusNotFound:            "NOT_FOUND",
	http.StatusConflict:            "ABORTED",
	http.StatusTooManyRequests:     "RESOURCE_EXHAUSTED",
	499:                            "CANCELLED",
	http.StatusInternalServerError: "INTERNAL",
	http.StatusNotImplemented:      "UNIMPLEMENTED",
	http.StatusServiceUnavailable:  "UNAVAILABLE",
	http.StatusGatewayTimeout:      "DEADLINE_EXCEEDED",
}

// messages are the error messages FCM gives with its codes.
var messages = map[string]string{
	CodeUnregistered:        "Requested entity was not found.",
	CodeInvalidArgument:     "Request contains an invalid argument.",
	CodeSenderIDMismatch:    "SenderId mismatch",
	CodeQuotaExceeded:       "Quota exceeded for quota metric 'Send messages' of service 'fcm.googleapis.com'.",
	CodeUnavailable:         "The service is currently unavailable.",
	CodeInternal:            "Internal error encountered.",
	CodeThirdPartyAuthError: "Auth error from APNS or Web Push Service",
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// answer is the server's response to one send.
type answer struct {
	header  http.Header   // a control's extra headers
	delay   time.Duration // a control's delay
	status  int
	code    string // FcmError code; "" for none
	message string
	field   string // a BadRequest field violation; "" for none
	name    string // of an accepted message
}

// sendRequest is FCM's SendMessageRequest.
type sendRequest struct {
	Message      json.RawMessage `json:"message"`
	ValidateOnly bool            `json:"validate_only"`
}

// wireMessage holds the fields of an FCM Message the server checks.
type wireMessage struct {
	Token        string            `json:"token"`
	Topic        string            `json:"topic"`
	Condition    string            `json:"condition"`
	Data         map[string]string `json:"data"`
	Notification *wireNotification `json:"notification"`
	Android      *struct {
		CollapseKey  string            `json:"collapse_key"`
		Priority     string            `json:"priority"`
		TTL          string            `json:"ttl"`
		Data         map[string]string `json:"data"`
		Notification *wireNotification `json:"notification"`
	} `json:"android"`
}

type wireNotification struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

// ServeHTTP answers FCM HTTP v1 send requests and, for service accounts, the
// OAuth 2 token endpoint. It makes Server an http.Handler; NewServer already
// serves it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == tokenPath {
		s.serveToken(w, r)
		return
	}
	s.requests.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	// Read the body first: only then does net/http notice a client that
	// hangs up (and cancel r.Context()) during the latency.
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	_, readErr := buf.ReadFrom(io.LimitReader(r.Body, maxRequestSize+1))
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	a := s.handle(r, buf.Bytes(), readErr)
	if a.delay > 0 {
		t := time.NewTimer(a.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	h := w.Header()
	for k, v := range a.header {
		h[k] = v
	}
	h["Content-Type"] = []string{"application/json; charset=UTF-8"}
	w.WriteHeader(a.status)
	if a.status == http.StatusOK {
		body := make([]byte, 0, 64)
		body = append(body, `{"name":`...)
		body = strconv.AppendQuote(body, a.name)
		w.Write(append(body, '}'))
		return
	}
	w.Write(errorBody(a))
}

// errorBody is a Google API error:
//
//	{"error":{"code":404,"message":"...","status":"NOT_FOUND","details":[
//	  {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}
func errorBody(a answer) []byte {
	status, ok := rpcStatuses[a.status]
	if !ok {
		status = "UNKNOWN"
	}
	var details []any
	if a.code != "" {
		details = append(details, map[string]string{"@type": fcmErrorType, "errorCode": a.code})
	}
	if a.field != "" {
		details = append(details, map[string]any{
			"@type":           badRequestType,
			"fieldViolations": []map[string]string{{"field": a.field, "description": a.message}},
		})
	}
	type apiError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []any  `json:"details,omitempty"`
	}
	b, _ := json.Marshal(map[string]apiError{"error": {Code: a.status, Message: a.message, Status: status, Details: details}})
	return b
}

// handle checks a send in the order FCM is documented to, records it when
// accepted, and returns the answer.
func (s *Server) handle(r *http.Request, body []byte, readErr error) answer {
	fail := func(status int, code, message, field string) answer {
		return answer{status: status, code: code, message: message, field: field}
	}
	invalid := func(field, format string, args ...any) answer {
		return fail(http.StatusBadRequest, CodeInvalidArgument, fmt.Sprintf(format, args...), field)
	}

	project, ok := sendPath(r.URL.Path)
	if !ok || r.Method != http.MethodPost {
		return fail(http.StatusNotFound, "", fmt.Sprintf("Method not found: %s %s", r.Method, r.URL.Path), "")
	}
	if s.opts.projects != nil && !s.opts.projects[project] {
		return fail(http.StatusNotFound, "", fmt.Sprintf("Project %s not found.", project), "")
	}
	var clientEmail string
	if s.opts.auth {
		var a *answer
		if clientEmail, a = s.authenticate(r, project); a != nil {
			return *a
		}
	}

	if s.controlled() {
		if c, ok := s.control(controlRequest(r, project, body)); ok {
			if c.Status == 0 {
				c.Status = http.StatusInternalServerError
			}
			a := fail(c.Status, c.Code, c.Message, "")
			if a.message == "" {
				a.message = messages[c.Code]
			}
			if a.message == "" {
				a.message = http.StatusText(a.status)
			}
			a.header, a.delay = c.Header, c.Delay
			if a.status == http.StatusOK {
				a.name = "projects/" + project + "/messages/controlled"
			}
			return a
		}
	}

	if readErr != nil {
		return fail(http.StatusBadRequest, "", "Invalid JSON payload received. Could not read the request body.", "")
	}
	if len(body) > maxRequestSize {
		return invalid("message", "message too big: the request is over %d bytes", maxRequestSize)
	}
	var req sendRequest
	var m wireMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(http.StatusBadRequest, "", "Invalid JSON payload received. "+err.Error(), "")
	}
	if len(req.Message) == 0 || string(req.Message) == "null" {
		return invalid("message", "Request is missing required field: message.")
	}
	if err := json.Unmarshal(req.Message, &m); err != nil {
		return fail(http.StatusBadRequest, "", "Invalid JSON payload received. "+err.Error(), "")
	}
	if a, bad := check(&m); bad {
		return a
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Token != "" {
		if s.unregistered[m.Token] {
			return fail(http.StatusNotFound, CodeUnregistered, messages[CodeUnregistered], "")
		}
		if p, ok := s.bound[m.Token]; ok && p != project {
			return fail(http.StatusForbidden, CodeSenderIDMismatch, messages[CodeSenderIDMismatch], "")
		}
	}
	if req.ValidateOnly {
		return answer{status: http.StatusOK, name: "projects/" + project + "/messages/fake_message_id"}
	}
	name := fmt.Sprintf("projects/%s/messages/0:%d%%%08x", project, s.seq.Add(1), s.serverID)
	s.count++
	if m.Token != "" {
		if _, ok := s.byToken[m.Token]; ok || len(s.byToken) < s.opts.tokenCountLimit {
			s.byToken[m.Token]++
		}
	}
	if len(s.records) < s.opts.recordLimit {
		rec := Message{
			Project:     project,
			Token:       m.Token,
			Topic:       m.Topic,
			Condition:   m.Condition,
			Data:        m.Data,
			Raw:         bytes.Clone(req.Message),
			Name:        name,
			ClientEmail: clientEmail,
			Received:    time.Now(),
		}
		if n := m.Notification; n != nil {
			rec.Title, rec.Body = n.Title, n.Body
		}
		if a := m.Android; a != nil {
			rec.AndroidPriority, rec.TTL, rec.CollapseKey = a.Priority, a.TTL, a.CollapseKey
		}
		s.records = append(s.records, rec)
	}
	return answer{status: http.StatusOK, name: name}
}

// check validates a message as FCM does before looking at token state.
func check(m *wireMessage) (answer, bool) {
	invalid := func(field, format string, args ...any) (answer, bool) {
		return answer{status: http.StatusBadRequest, code: CodeInvalidArgument, message: fmt.Sprintf(format, args...), field: field}, true
	}
	targets := 0
	for _, t := range []string{m.Token, m.Topic, m.Condition} {
		if t != "" {
			targets++
		}
	}
	if targets != 1 {
		return invalid("message", "Exactly one of token, topic or condition must be set; %d are.", targets)
	}
	if m.Token != "" && !ValidToken(m.Token) {
		return invalid("message.token", "The registration token is not a valid FCM registration token")
	}
	if m.Topic != "" && !topicPattern.MatchString(m.Topic) {
		return invalid("message.topic", "Invalid topic name %q.", m.Topic)
	}
	for k := range m.Data {
		if ReservedDataKey(k) {
			return invalid("message.data", "Invalid data key %q: it is reserved.", k)
		}
	}
	if a := m.Android; a != nil {
		for k := range a.Data {
			if ReservedDataKey(k) {
				return invalid("message.android.data", "Invalid data key %q: it is reserved.", k)
			}
		}
		switch strings.ToLower(a.Priority) {
		case "", "normal", "high":
		default:
			return invalid("message.android.priority", "Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), %q", a.Priority)
		}
		if a.TTL != "" {
			if ttl, ok := parseTTL(a.TTL); !ok || ttl > MaxTTL {
				return invalid("message.android.ttl", "Invalid TTL %q: want <seconds>s, at most %ds.", a.TTL, int64(MaxTTL/time.Second))
			}
		}
	}
	limit := MaxPayloadSize
	if m.Token == "" {
		limit = MaxTopicPayloadSize
	}
	if size := payloadSize(m); size > limit {
		return invalid("message", "message too big: the payload is %d bytes, more than %d", size, limit)
	}
	return answer{}, false
}

// sendPath returns the project of "/v1/projects/{project}/messages:send".
func sendPath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v1/projects/")
	if !ok {
		return "", false
	}
	project, ok := strings.CutSuffix(rest, "/messages:send")
	if !ok || project == "" || strings.Contains(project, "/") {
		return "", false
	}
	return project, true
}

// PayloadSize is the size FCM limits (MaxPayloadSize) of a message, as this
// server counts it: the keys and values of its data (android.data, when set,
// replaces data) and the title and body of its notification (android's
// override the message's), in bytes.
func PayloadSize(rawMessage []byte) (int, error) {
	var m wireMessage
	if err := json.Unmarshal(rawMessage, &m); err != nil {
		return 0, fmt.Errorf("fcmiotest: payload size: %w", err)
	}
	return payloadSize(&m), nil
}

func payloadSize(m *wireMessage) int {
	data := m.Data
	var title, body string
	if n := m.Notification; n != nil {
		title, body = n.Title, n.Body
	}
	if a := m.Android; a != nil {
		if a.Data != nil {
			data = a.Data
		}
		if n := a.Notification; n != nil {
			if n.Title != "" {
				title = n.Title
			}
			if n.Body != "" {
				body = n.Body
			}
		}
	}
	size := len(title) + len(body)
	for k, v := range data {
		size += len(k) + len(v)
	}
	return size
}

// ReservedDataKey reports whether FCM rejects k as a data key: "from",
// "message_type", and keys starting with "google" or "gcm".
func ReservedDataKey(k string) bool {
	return k == "from" || k == "message_type" || strings.HasPrefix(k, "google") || strings.HasPrefix(k, "gcm")
}

// ValidToken reports whether t looks like an FCM registration token: 32 to
// 4096 characters of letters, digits, '-', '_' and ':'. Real tokens are
// about 150 to 180 characters.
func ValidToken(t string) bool {
	if len(t) < 32 || len(t) > 4096 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

// Token is the i-th test registration token: valid, deterministic, distinct
// for distinct i, and shaped like a real one ("<instance id>:APA91b<...>",
// 163 characters).
func Token(i int) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(i)))
	fill := hex.EncodeToString(sum[:])
	fill = strings.Repeat(fill, 3)
	return fmt.Sprintf("d%021d:APA91b", i) + fill[:134]
}

var topicPattern = regexp.MustCompile(`^[a-zA-Z0-9-_.~%]{1,900}$`)

// ttlPattern is a google.protobuf.Duration in JSON: seconds with up to nine
// fractional digits, and an "s".
var ttlPattern = regexp.MustCompile(`^([0-9]{1,12})(\.[0-9]{1,9})?s$`)

func parseTTL(s string) (time.Duration, bool) {
	g := ttlPattern.FindStringSubmatch(s)
	if g == nil {
		return 0, false
	}
	secs, err := strconv.ParseInt(g[1], 10, 64)
	if err != nil || secs > int64(MaxTTL/time.Second)+1 {
		return 0, false
	}
	d := time.Duration(secs) * time.Second
	if g[2] != "" {
		frac := (g[2][1:] + "000000000")[:9]
		ns, _ := strconv.ParseInt(frac, 10, 64)
		d += time.Duration(ns)
	}
	return d, true
}
