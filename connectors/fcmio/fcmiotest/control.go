package fcmiotest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Request is what a control function (see Server.Control) sees of a send
// that passed authentication.
type Request struct {
	Project  string      // the project in the URL
	Token    string      // message.token; "" for a topic, or a body that is not JSON
	Header   http.Header // the request's headers; do not modify
	Body     []byte      // the SendMessageRequest JSON; do not modify
	Received time.Time   // when the server began to handle the send
}

// Answer is a control function's answer to a send, in Google's error format:
// {"error":{"code":Status,"message":Message,"status":<Status's RPC status>,
// "details":[{"@type":"...FcmError","errorCode":Code}]}}.
type Answer struct {
	// Status is the HTTP status (0 is 500). 200 answers as an accepted
	// message would, without recording or counting it.
	Status int
	// Code is the FcmError detail's error code (CodeUnavailable, ...); ""
	// for no detail.
	Code string
	// Message is the error message; "" takes FCM's for Code, else the
	// status text.
	Message string
	// Header holds extra response headers, such as Retry-After.
	Header http.Header
	// Delay postpones the answer (the request's context ending cuts it
	// short, without an answer).
	Delay time.Duration
}

// ControlFunc answers a send itself (true) or lets the server handle it
// normally (false). It is called concurrently, from the handler's
// goroutines.
type ControlFunc func(*Request) (Answer, bool)

// controls is an immutable list, replaced whole, so that the handler reads
// it without a lock.
type controls struct {
	fns []control
}

type control struct {
	id uint64
	fn ControlFunc
}

var controlIDs atomic.Uint64

// Control adds fn to the functions that may answer sends in place of the
// server's checks, after authentication and before everything else
// (FailNext's answers first, then the control functions in the order they
// were added; the first that returns true answers). fn stays until the
// returned remove is called, or until Reset. Controls answer in the style of
// franz-go's kfake ControlKey: programmable faults, such as Unavailable and
// Throttle.
func (s *Server) Control(fn ControlFunc) (remove func()) {
	id := controlIDs.Add(1)
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	old := s.ctl.Load()
	s.ctl.Store(&controls{fns: append(append([]control(nil), old.fns...), control{id, fn})})
	return func() {
		s.ctlMu.Lock()
		defer s.ctlMu.Unlock()
		cur := s.ctl.Load()
		kept := make([]control, 0, len(cur.fns))
		for _, c := range cur.fns {
			if c.id != id {
				kept = append(kept, c)
			}
		}
		s.ctl.Store(&controls{fns: kept})
	}
}

func (s *Server) controlled() bool {
	return s.failNext.Load() != nil || len(s.ctl.Load().fns) > 0
}

// control asks FailNext's and the control functions for an answer to req.
func (s *Server) control(req *Request) (Answer, bool) {
	if f := s.failNext.Load(); f != nil {
		if a, ok := (*f)(req); ok {
			return a, true
		}
	}
	for _, c := range s.ctl.Load().fns {
		if a, ok := c.fn(req); ok {
			return a, true
		}
	}
	return Answer{}, false
}

// controlRequest is the Request of a send.
func controlRequest(r *http.Request, project string, body []byte) *Request {
	var req struct {
		Message struct {
			Token string `json:"token"`
		} `json:"message"`
	}
	json.Unmarshal(body, &req) // a bad body has no token
	return &Request{Project: project, Token: req.Message.Token, Header: r.Header, Body: body, Received: time.Now()}
}

// failNextFunc answers the next n sends with status and code, and a
// Retry-After of retryAfter() for 429 and 503.
func failNextFunc(n int, status int, code string, retryAfter func() time.Duration) ControlFunc {
	var left atomic.Int64
	left.Store(int64(n))
	return func(*Request) (Answer, bool) {
		for {
			l := left.Load()
			if l <= 0 {
				return Answer{}, false
			}
			if left.CompareAndSwap(l, l-1) {
				break
			}
		}
		a := Answer{Status: status, Code: code}
		if d := retryAfter(); d > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
			a.Header = http.Header{"Retry-After": {RetryAfterSeconds(d)}}
		}
		return a, true
	}
}

// Unavailable is a control function that answers every send 503 with an
// FcmError UNAVAILABLE until until, as FCM in an outage:
//
//	srv.Control(fcmiotest.Unavailable(time.Now().Add(20 * time.Second)))
func Unavailable(until time.Time) ControlFunc {
	return func(r *Request) (Answer, bool) {
		if !r.Received.Before(until) {
			return Answer{}, false
		}
		return Answer{Status: http.StatusServiceUnavailable, Code: CodeUnavailable}, true
	}
}

// Throttle is a control function that answers every send 429 with an
// FcmError QUOTA_EXCEEDED and a Retry-After header of retryAfter (in whole
// seconds, rounded up; none when 0) until until.
func Throttle(until time.Time, retryAfter time.Duration) ControlFunc {
	var h http.Header
	if retryAfter > 0 {
		h = http.Header{"Retry-After": {RetryAfterSeconds(retryAfter)}}
	}
	return func(r *Request) (Answer, bool) {
		if !r.Received.Before(until) {
			return Answer{}, false
		}
		return Answer{Status: http.StatusTooManyRequests, Code: CodeQuotaExceeded, Header: h}, true
	}
}

// RetryAfterSeconds is d as a Retry-After header value: whole seconds,
// rounded up.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
