package apnsiotest

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sideshow/apns2"
)

// Payload limits of APNs, in bytes.
const (
	MaxPayloadSize     = 4096
	MaxVoIPPayloadSize = 5120
)

// Reasons this double answers that APNs documents no string for.
const (
	// ReasonBadPayload answers a payload that is not a JSON object.
	ReasonBadPayload = "BadPayload"
	// ReasonHTTP2Required answers (with 505) a request that is not HTTP/2;
	// APNs accepts HTTP/2 only.
	ReasonHTTP2Required = "HTTP2Required"
)

// topicSuffixes are the topic suffixes that push types require (Apple's
// "Sending notification requests to APNs").
var topicSuffixes = map[string]string{
	string(apns2.PushTypeVOIP):         ".voip",
	string(apns2.PushTypeComplication): ".complication",
	string(apns2.PushTypeFileProvider): ".pushkit.fileprovider",
	string(apns2.PushTypeLiveActivity): ".push-type.liveactivity",
	string(apns2.PushTypeLocation):     ".location-query",
	string(apns2.PushTypePushToTalk):   ".voip-ptt",
}

var knownPushTypes = map[string]bool{
	string(apns2.PushTypeAlert):        true,
	string(apns2.PushTypeBackground):   true,
	string(apns2.PushTypeLocation):     true,
	string(apns2.PushTypeVOIP):         true,
	string(apns2.PushTypeComplication): true,
	string(apns2.PushTypeFileProvider): true,
	string(apns2.PushTypeMDM):          true,
	string(apns2.PushTypeLiveActivity): true,
	string(apns2.PushTypePushToTalk):   true,
}

// apnsHeaders may each appear once (else 400 DuplicateHeaders).
var apnsHeaders = []string{
	"Authorization", "Apns-Id", "Apns-Topic", "Apns-Push-Type", "Apns-Priority",
	"Apns-Expiration", "Apns-Collapse-Id",
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// answer is the server's response to one request.
type answer struct {
	status    int
	reason    string
	apnsID    string
	timestamp time.Time     // for 410 Unregistered
	header    http.Header   // a control's extra headers
	delay     time.Duration // a control's delay
}

// ServeHTTP answers one APNs provider API request. It makes Server an
// http.Handler; NewServer already serves it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	_, readErr := buf.ReadFrom(io.LimitReader(r.Body, MaxVoIPPayloadSize+1))

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
	h["Apns-Id"] = []string{a.apnsID}
	if a.status == http.StatusOK {
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(a.status)
	body := make([]byte, 0, 64)
	body = append(body, `{"reason":`...)
	body = strconv.AppendQuote(body, a.reason)
	if !a.timestamp.IsZero() {
		body = append(body, `,"timestamp":`...)
		body = strconv.AppendInt(body, a.timestamp.UnixMilli(), 10)
	}
	body = append(body, '}')
	w.Write(body)
}

// handle checks a request in the order APNs is documented to, records it
// when accepted, and returns the answer.
func (s *Server) handle(r *http.Request, payload []byte, readErr error) answer {
	a := answer{apnsID: header(r, "Apns-Id")}
	badID := a.apnsID != "" && !validUUID(a.apnsID)
	if a.apnsID == "" || badID {
		a.apnsID = newUUID()
	}
	fail := func(status int, reason string) answer {
		a.status, a.reason = status, reason
		return a
	}

	if r.ProtoMajor != 2 {
		return fail(http.StatusHTTPVersionNotSupported, ReasonHTTP2Required)
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		return fail(http.StatusNotFound, apns2.ReasonBadPath)
	}
	if r.Method != http.MethodPost {
		return fail(http.StatusMethodNotAllowed, apns2.ReasonMethodNotAllowed)
	}
	if token == "" {
		return fail(http.StatusBadRequest, apns2.ReasonMissingDeviceToken)
	}

	// Authentication: a verified client certificate, else a provider token.
	var id tokenIdentity
	var certTopicName string
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		certTopicName = certTopic(r.TLS.VerifiedChains[0][0])
	} else {
		var reason string
		if id, reason = s.tokens.verify(header(r, "Authorization"), time.Now()); reason != "" {
			return fail(http.StatusForbidden, reason)
		}
	}

	if s.controlled() {
		req := &Request{Token: token, Topic: header(r, "Apns-Topic"), ApnsID: a.apnsID, Header: r.Header, Payload: payload, Received: time.Now()}
		if c, ok := s.control(req); ok {
			a.header, a.delay = c.Header, c.Delay
			if c.Status == 0 {
				c.Status = http.StatusInternalServerError
			}
			return fail(c.Status, c.Reason)
		}
	}

	for _, k := range apnsHeaders {
		if len(r.Header[k]) > 1 {
			return fail(http.StatusBadRequest, apns2.ReasonDuplicateHeaders)
		}
	}
	if !validDeviceToken(token) {
		return fail(http.StatusBadRequest, apns2.ReasonBadDeviceToken)
	}

	topic := header(r, "Apns-Topic")
	if topic == "" {
		if certTopicName == "" {
			return fail(http.StatusBadRequest, apns2.ReasonMissingTopic)
		}
		topic = certTopicName
	}
	if !validTopic(topic) {
		return fail(http.StatusBadRequest, apns2.ReasonBadTopic)
	}
	pushType := header(r, "Apns-Push-Type")
	if pushType != "" && !knownPushTypes[pushType] {
		return fail(http.StatusBadRequest, apns2.ReasonInvalidPushType)
	}
	if suffix := topicSuffixes[pushType]; suffix != "" && !strings.HasSuffix(topic, suffix) {
		return fail(http.StatusBadRequest, apns2.ReasonInvalidPushType)
	}
	base := baseTopic(topic)
	if certTopicName != "" && base != certTopicName {
		return fail(http.StatusBadRequest, apns2.ReasonTopicDisallowed)
	}
	if s.opts.topics != nil && !s.opts.topics[base] {
		return fail(http.StatusBadRequest, apns2.ReasonTopicDisallowed)
	}

	if badID {
		return fail(http.StatusBadRequest, apns2.ReasonBadMessageID)
	}
	priority := header(r, "Apns-Priority")
	switch priority {
	case "", "1", "5", "10":
	default:
		return fail(http.StatusBadRequest, apns2.ReasonBadPriority)
	}
	if pushType == string(apns2.PushTypeBackground) && priority == "10" {
		return fail(http.StatusBadRequest, apns2.ReasonBadPriority)
	}
	expiration := header(r, "Apns-Expiration")
	if expiration != "" {
		if v, err := strconv.ParseInt(expiration, 10, 64); err != nil || v < 0 {
			return fail(http.StatusBadRequest, apns2.ReasonBadExpirationDate)
		}
	}
	collapseID := header(r, "Apns-Collapse-Id")
	if len(collapseID) > 64 {
		return fail(http.StatusBadRequest, apns2.ReasonBadCollapseID)
	}

	limit := MaxPayloadSize
	if pushType == string(apns2.PushTypeVOIP) {
		limit = MaxVoIPPayloadSize
	}
	switch {
	case readErr != nil:
		return fail(http.StatusBadRequest, ReasonBadPayload)
	case len(payload) > limit:
		return fail(http.StatusRequestEntityTooLarge, apns2.ReasonPayloadTooLarge)
	case len(bytes.TrimSpace(payload)) == 0:
		return fail(http.StatusBadRequest, apns2.ReasonPayloadEmpty)
	case !jsonObject(payload):
		return fail(http.StatusBadRequest, ReasonBadPayload)
	}

	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.unregistered[token]; ok {
		a.timestamp = at
		return fail(http.StatusGone, apns2.ReasonUnregistered)
	}
	if s.expired[token] {
		return fail(http.StatusGone, apns2.ReasonExpiredToken)
	}
	if t, ok := s.bound[token]; ok && t != base {
		return fail(http.StatusBadRequest, apns2.ReasonDeviceTokenNotForTopic)
	}
	s.count++
	if _, ok := s.byToken[token]; ok || len(s.byToken) < s.opts.tokenCountLimit {
		s.byToken[token]++
	}
	if len(s.records) < s.opts.recordLimit {
		s.records = append(s.records, Notification{
			Token:      token,
			Topic:      topic,
			PushType:   pushType,
			Priority:   priority,
			Expiration: expiration,
			CollapseID: collapseID,
			ApnsID:     a.apnsID,
			Payload:    bytes.Clone(payload),
			KeyID:      id.keyID,
			TeamID:     id.teamID,
			Received:   now,
		})
	}
	a.status = http.StatusOK
	return a
}

// header is r's first value of the canonical header key k; unlike
// Header.Get it does not canonicalize k on every call.
func header(r *http.Request, k string) string {
	if v := r.Header[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// validDeviceToken accepts what APNs issues: an even number of hex digits,
// 64 for today's tokens and up to 200 for longer future ones.
func validDeviceToken(t string) bool {
	if len(t) < 64 || len(t) > 200 || len(t)%2 != 0 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !isHex(t[i]) {
			return false
		}
	}
	return true
}

// validTopic accepts a bundle ID with optional push-type suffix: dot
// separated, non-empty labels of letters, digits and hyphens.
func validTopic(t string) bool {
	if len(t) > 255 {
		return false
	}
	for _, label := range strings.Split(t, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// baseTopic strips a push-type suffix: "com.example.app.voip" is
// "com.example.app".
func baseTopic(t string) string {
	for _, suffix := range topicSuffixes {
		if b, ok := strings.CutSuffix(t, suffix); ok && b != "" {
			return b
		}
	}
	return t
}

func jsonObject(p []byte) bool {
	p = bytes.TrimSpace(p)
	return len(p) > 0 && p[0] == '{' && json.Valid(p)
}

// validUUID accepts the 8-4-4-4-12 hex form APNs requires of apns-id.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// newUUID makes a random (version 4) UUID. It needs to be unique, not
// unpredictable, so it uses the fast math/rand generator.
func newUUID() string {
	const hexDigits = "0123456789abcdef"
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // variant 10
	var b [36]byte
	j := 0
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b[j] = '-'
			j++
		}
		var nibble uint64
		if i < 16 {
			nibble = hi >> (60 - 4*i) & 0xf
		} else {
			nibble = lo >> (60 - 4*(i-16)) & 0xf
		}
		b[j] = hexDigits[nibble]
		j++
	}
	return string(b[:])
}
