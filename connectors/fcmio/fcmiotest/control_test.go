package fcmiotest_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushflow/pushflow/connectors/fcmio/fcmiotest"
)

func TestControl(t *testing.T) {
	srv := newServer(t)
	body := `{"message":{"token":"` + fcmiotest.Token(1) + `"}}`
	var mu sync.Mutex
	var seen []fcmiotest.Request
	remove := srv.Control(func(r *fcmiotest.Request) (fcmiotest.Answer, bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, *r)
		if len(seen) > 1 {
			return fcmiotest.Answer{}, false
		}
		return fcmiotest.Answer{Status: 500, Code: fcmiotest.CodeInternal, Header: http.Header{"X-Fault": {"yes"}}, Delay: 50 * time.Millisecond}, true
	})
	start := time.Now()
	status, h, e := post(t, srv, testProject, body)
	if status != 500 || e.fcmCode() != "INTERNAL" || e.Error.Status != "INTERNAL" || e.Error.Message == "" || h.Get("X-Fault") != "yes" || time.Since(start) < 50*time.Millisecond {
		t.Errorf("controlled send = %d %+v %v after %v, want 500 INTERNAL with X-Fault after 50ms", status, e.Error, h, time.Since(start))
	}
	if status, _, _ := post(t, srv, testProject, body); status != 200 {
		t.Errorf("send the control passes on = %d, want 200", status)
	}
	if len(seen) != 2 || seen[0].Token != fcmiotest.Token(1) || seen[0].Project != testProject || string(seen[0].Body) != body {
		t.Errorf("control saw %+v, want two sends to the token in %s", seen, testProject)
	}
	if srv.Count() != 1 {
		t.Errorf("Count() = %d, want 1 (a controlled answer is not an accepted message)", srv.Count())
	}

	// FailNext first; Reset removes the controls.
	srv.Control(fcmiotest.Unavailable(time.Now().Add(time.Hour)))
	srv.FailNext(1, 429, fcmiotest.CodeQuotaExceeded)
	if status, _, _ := post(t, srv, testProject, body); status != 429 {
		t.Errorf("send under FailNext and a control = %d, want FailNext's 429", status)
	}
	if status, _, e := post(t, srv, testProject, body); status != 503 || e.fcmCode() != "UNAVAILABLE" {
		t.Errorf("send under Unavailable = %d %+v, want 503 UNAVAILABLE", status, e.Error)
	}
	remove()
	srv.Reset()
	if status, _, _ := post(t, srv, testProject, body); status != 200 {
		t.Errorf("send after Reset = %d, want 200", status)
	}
}

func TestUnavailableAndThrottle(t *testing.T) {
	srv := newServer(t)
	client := sdkClient(t, srv, testProject)
	ctx := context.Background()
	m := &messaging.Message{Token: fcmiotest.Token(1), Data: map[string]string{"k": "v"}}
	body := `{"message":{"token":"` + fcmiotest.Token(1) + `"}}`

	until := time.Now().Add(300 * time.Millisecond)
	remove := srv.Control(fcmiotest.Unavailable(until))
	if status, _, e := post(t, srv, testProject, body); status != 503 || e.fcmCode() != "UNAVAILABLE" {
		t.Errorf("send during the outage = %d %+v, want 503 UNAVAILABLE", status, e.Error)
	}
	time.Sleep(time.Until(until))
	if _, err := client.Send(ctx, m); err != nil {
		t.Errorf("Send() after the outage = %v, want nil", err)
	}
	remove()

	until = time.Now().Add(300 * time.Millisecond)
	srv.Control(fcmiotest.Throttle(until, 1500*time.Millisecond))
	status, h, e := post(t, srv, testProject, body)
	if status != 429 || e.fcmCode() != "QUOTA_EXCEEDED" || h.Get("Retry-After") != "2" {
		t.Errorf("send while throttled = %d %+v Retry-After %q, want 429 QUOTA_EXCEEDED, Retry-After 2", status, e.Error, h.Get("Retry-After"))
	}
	if _, err := client.Send(ctx, m); !messaging.IsQuotaExceeded(err) {
		t.Errorf("SDK Send() while throttled = %v, want QUOTA_EXCEEDED", err)
	}
	time.Sleep(time.Until(until))
	if status, h, _ := post(t, srv, testProject, body); status != 200 || h.Get("Retry-After") != "" {
		t.Errorf("send after throttling = %d Retry-After %q, want 200 without", status, h.Get("Retry-After"))
	}
	if n := srv.CountByToken(fcmiotest.Token(1)); n != 2 {
		t.Errorf("CountByToken() = %d, want 2 (the two accepted)", n)
	}
}
