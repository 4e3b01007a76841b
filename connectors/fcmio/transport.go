package fcmio

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/pushflow/pushflow/connectors/internal/attempts"
)

// The firebase SDK retries on its own: a 503 answer and any transport
// error, up to 4 times, waiting 0s, 1s, 2s, 4s or the answer's Retry-After
// (firebase.google.com/go/v4/internal: WithDefaultRetryConfig), and offers
// no option to turn that off. The Client retries itself, with its own
// bounds, backoff and jitter, and counts attempts; so attemptTransport, the
// transport under the SDK, makes each SDK call one request:
//
//   - A 503's Retry-After is replaced by sdkNoRetryAfter, more than the
//     SDK's 2-minute cap on a wait, past which it does not retry. The
//     original, read before, still sets the Client's wait.
//   - A transport error (also while reading the body) cancels the attempt's
//     context, which the SDK checks before retrying.
//
// It also records what the Client needs and the SDK hides: the HTTP status,
// the Retry-After and the transport error.

// sdkNoRetryAfter is a Retry-After (1 day) beyond the SDK's 2-minute cap.
const sdkNoRetryAfter = "86400"

// errStopSDKRetry cancels an attempt's context after a transport error.
var errStopSDKRetry = errors.New("fcmio: transport error: no SDK retry")

type attemptKey struct{}

// attemptState is what attemptTransport saw of one Client attempt (one SDK
// Send call). The SDK makes its requests one after another on the calling
// goroutine, so it needs no lock.
type attemptState struct {
	requests     int           // requests made
	status       int           // HTTP status of the last answer; 0 when none
	retryAfter   time.Duration // the last answer's Retry-After; 0 when none
	transportErr error         // the last transport error
	stop         context.CancelCauseFunc
}

func withAttempt(ctx context.Context, st *attemptState) context.Context {
	return context.WithValue(ctx, attemptKey{}, st)
}

// attemptTransport wraps the Client's transport (see above).
type attemptTransport struct {
	base http.RoundTripper
}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(attemptKey{}).(*attemptState)
	if st == nil {
		return t.base.RoundTrip(req)
	}
	st.requests++
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		st.transportErr = err
		st.stop(errStopSDKRetry)
		return nil, err
	}
	st.status = resp.StatusCode
	st.retryAfter = attempts.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if resp.StatusCode == http.StatusServiceUnavailable {
		resp.Header.Set("Retry-After", sdkNoRetryAfter)
	}
	resp.Body = &watchedBody{ReadCloser: resp.Body, st: st}
	return resp, nil
}

// watchedBody stops SDK retries on an error reading the body.
type watchedBody struct {
	io.ReadCloser
	st *attemptState
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.st.transportErr = err
		b.st.stop(errStopSDKRetry)
	}
	return n, err
}
