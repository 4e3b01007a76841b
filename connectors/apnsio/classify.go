package apnsio

import (
	"net/http"

	"github.com/sideshow/apns2"
)

// Reasons the Client records when APNs gives none.
const (
	// ReasonTimeout: an attempt outlived Config.Timeout (or ctx's deadline).
	ReasonTimeout = "Timeout"
	// ReasonTransportError: no HTTP response (connection refused or reset,
	// TLS failure, malformed response). Result.Error says which.
	ReasonTransportError = "TransportError"
	// ReasonCanceled: ctx was canceled before an answer came.
	ReasonCanceled = "Canceled"
)

// retryReasons are transient whatever the status they come with.
var retryReasons = map[string]bool{
	apns2.ReasonTooManyRequests:             true,
	apns2.ReasonTooManyProviderTokenUpdates: true,
	apns2.ReasonInternalServerError:         true,
	apns2.ReasonServiceUnavailable:          true,
	apns2.ReasonShutdown:                    true,
	apns2.ReasonIdleTimeout:                 true,
	ReasonTimeout:                           true,
	ReasonTransportError:                    true,
}

// Classify says what to do with an APNs answer: status is the HTTP status
// (0 when there was no response) and reason the APNs reason. retry: try
// again after a backoff (429, 5xx, no response, and the transient reasons
// TooManyRequests, InternalServerError, ServiceUnavailable, Shutdown,
// IdleTimeout, Timeout, TransportError). permanent: the notification failed
// for good (400, 403, 404, 405, 410, 413 and every other status but 200;
// status 0 with a reason of BuildNotification's checks, such as
// PayloadTooLarge; and Canceled: nobody waits for the answer any more). Both
// are false for 200.
func Classify(status int, reason string) (retry, permanent bool) {
	switch {
	case status == http.StatusOK:
		return false, false
	case reason == ReasonCanceled:
		return false, true
	case retryReasons[reason]:
		return true, false
	case status == 0: // no answer: transient, unless rejected before sending
		return reason == "", reason != ""
	case status == http.StatusTooManyRequests, status >= 500 && status <= 599:
		return true, false
	}
	return false, true
}
