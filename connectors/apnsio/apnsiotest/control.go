package apnsiotest

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sideshow/apns2"
)

// Request is what a control function (see Server.Control) sees of an
// authenticated request.
type Request struct {
	Token    string      // the device token in the path
	Topic    string      // apns-topic, "" when absent
	ApnsID   string      // the apns-id the answer will carry
	Header   http.Header // the request's headers; do not modify
	Payload  []byte      // the body; do not modify
	Received time.Time   // when the server began to handle the request
}

// Answer is a control function's answer to a request.
type Answer struct {
	// Status is the HTTP status (0 is 500); 200 answers as an accepted
	// notification would, without recording or counting it.
	Status int
	// Reason is the body's APNs reason ("ServiceUnavailable", ...); "" for
	// none.
	Reason string
	// Header holds extra response headers, such as Retry-After.
	Header http.Header
	// Delay postpones the answer (the request's context ending cuts it
	// short, without an answer).
	Delay time.Duration
}

// ControlFunc answers a request itself (true) or lets the server handle it
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

// Control adds fn to the functions that may answer authenticated requests
// in place of the server's checks, after authentication and before
// everything else (FailNext's answers first, then the control functions in
// the order they were added; the first that returns true answers). fn stays
// until the returned remove is called, or until Reset. Controls answer in
// the style of franz-go's kfake ControlKey: programmable faults, such as
// Unavailable and Throttle.
func (s *Server) Control(fn ControlFunc) (remove func()) {
	id := controlIDs.Add(1)
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	old := s.ctl.Load()
	next := &controls{fns: append(append([]control(nil), old.fns...), control{id, fn})}
	s.ctl.Store(next)
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

// controlled reports whether any control may answer.
func (s *Server) controlled() bool {
	return s.failNext.Load() != nil || len(s.ctl.Load().fns) > 0
}

// failNextFunc answers the next n requests with status and reason.
func failNextFunc(n int, status int, reason string) ControlFunc {
	var left atomic.Int64
	left.Store(int64(n))
	return func(*Request) (Answer, bool) {
		for {
			l := left.Load()
			if l <= 0 {
				return Answer{}, false
			}
			if left.CompareAndSwap(l, l-1) {
				return Answer{Status: status, Reason: reason}, true
			}
		}
	}
}

// Unavailable is a control function that answers every request 503
// ServiceUnavailable until until, as APNs in an outage:
//
//	srv.Control(apnsiotest.Unavailable(time.Now().Add(20 * time.Second)))
func Unavailable(until time.Time) ControlFunc {
	return func(r *Request) (Answer, bool) {
		if !r.Received.Before(until) {
			return Answer{}, false
		}
		return Answer{Status: http.StatusServiceUnavailable, Reason: apns2.ReasonServiceUnavailable}, true
	}
}

// Throttle is a control function that answers every request 429
// TooManyRequests with a Retry-After header of retryAfter (in whole
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
		return Answer{Status: http.StatusTooManyRequests, Reason: apns2.ReasonTooManyRequests, Header: h}, true
	}
}

// RetryAfterSeconds is d as a Retry-After header value: whole seconds,
// rounded up.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
