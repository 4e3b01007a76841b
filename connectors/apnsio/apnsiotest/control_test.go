package apnsiotest_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushflow/pushflow/connectors/apnsio/apnsiotest"
)

// post sends f's valid request and returns the status and the headers.
func (f *fixture) post(t *testing.T) (int, http.Header) {
	t.Helper()
	r := f.validRequest(t)
	req, err := http.NewRequest(r.method, f.srv.URL()+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestControl(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var seen []apnsiotest.Request
	remove := f.srv.Control(func(r *apnsiotest.Request) (apnsiotest.Answer, bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, *r)
		if len(seen) > 1 {
			return apnsiotest.Answer{}, false // the second request is handled normally
		}
		return apnsiotest.Answer{Status: 500, Reason: "InternalServerError", Header: http.Header{"X-Fault": {"yes"}}, Delay: 50 * time.Millisecond}, true
	})
	start := time.Now()
	got := f.do(t, f.client, f.validRequest(t))
	if got.status != 500 || got.reason != "InternalServerError" || time.Since(start) < 50*time.Millisecond {
		t.Errorf("controlled POST = %d %q after %v, want 500 InternalServerError after the 50ms delay", got.status, got.reason, time.Since(start))
	}
	if got := f.do(t, f.client, f.validRequest(t)); got.status != 200 {
		t.Errorf("POST the control passes on = %d %q, want 200", got.status, got.reason)
	}
	if len(seen) != 2 || seen[0].Token != devTok || seen[0].Topic != topic || len(seen[0].Payload) == 0 || seen[0].ApnsID == "" {
		t.Errorf("control saw %+v, want two requests for %s on %s with their payload", seen, devTok, topic)
	}
	if c := f.srv.Count(); c != 1 {
		t.Errorf("Count() = %d, want 1 (a controlled answer is not an accepted notification)", c)
	}

	// FailNext answers before the controls; a removed control no longer
	// answers.
	f.srv.Control(apnsiotest.Unavailable(time.Now().Add(time.Hour)))
	f.srv.FailNext(1, 429, "TooManyRequests")
	if got := f.do(t, f.client, f.validRequest(t)); got.status != 429 {
		t.Errorf("POST under FailNext and a control = %d %q, want FailNext's 429", got.status, got.reason)
	}
	if got := f.do(t, f.client, f.validRequest(t)); got.status != 503 {
		t.Errorf("POST under Unavailable = %d %q, want 503", got.status, got.reason)
	}
	remove()
	f.srv.Reset()
	if got := f.do(t, f.client, f.validRequest(t)); got.status != 200 {
		t.Errorf("POST after Reset = %d %q, want 200 (no controls left)", got.status, got.reason)
	}
}

func TestUnavailableAndThrottle(t *testing.T) {
	f := newFixture(t)
	until := time.Now().Add(300 * time.Millisecond)
	remove := f.srv.Control(apnsiotest.Unavailable(until))
	if got := f.do(t, f.client, f.validRequest(t)); got.status != 503 || got.reason != "ServiceUnavailable" {
		t.Errorf("POST during the outage = %d %q, want 503 ServiceUnavailable", got.status, got.reason)
	}
	time.Sleep(time.Until(until))
	if got := f.do(t, f.client, f.validRequest(t)); got.status != 200 {
		t.Errorf("POST after the outage = %d %q, want 200", got.status, got.reason)
	}
	remove()

	until = time.Now().Add(300 * time.Millisecond)
	f.srv.Control(apnsiotest.Throttle(until, 1500*time.Millisecond))
	got := f.do(t, f.client, f.validRequest(t))
	status, h := f.post(t)
	if got.status != 429 || got.reason != "TooManyRequests" || status != 429 || h.Get("Retry-After") != "2" {
		t.Errorf("POST while throttled = %d %q, Retry-After %q; want 429 TooManyRequests, Retry-After 2", got.status, got.reason, h.Get("Retry-After"))
	}
	time.Sleep(time.Until(until))
	if status, h := f.post(t); status != 200 || h.Get("Retry-After") != "" {
		t.Errorf("POST after throttling = %d, Retry-After %q; want 200 without", status, h.Get("Retry-After"))
	}
	if n := f.srv.CountByToken(devTok); n != 2 {
		t.Errorf("CountByToken() = %d, want 2 (the two accepted)", n)
	}
}

func TestConnections(t *testing.T) {
	f := newFixture(t)
	for range 5 {
		f.do(t, f.client, f.validRequest(t))
	}
	if n := f.srv.Connections(); n != 1 {
		t.Errorf("Connections() = %d after 5 sequential requests, want 1 (HTTP/2 reuses it)", n)
	}
}
