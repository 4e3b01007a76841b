package fcmio

import (
	"strconv"
	"strings"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
)

// FCM error codes (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode),
// recorded verbatim as Result.Reason.
const (
	// ReasonUnregistered (404): the token is no longer valid (app
	// uninstalled, token expired or rotated). Result.Unregistered is set.
	ReasonUnregistered = "UNREGISTERED"
	// ReasonInvalidArgument (400): a malformed token or message, also
	// rejected before sending by BuildMessage's checks.
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	// ReasonSenderIDMismatch (403): the token belongs to another project.
	ReasonSenderIDMismatch = "SENDER_ID_MISMATCH"
	// ReasonQuotaExceeded (429): a sending rate limit; retried.
	ReasonQuotaExceeded = "QUOTA_EXCEEDED"
	// ReasonUnavailable (503): FCM is overloaded; retried.
	ReasonUnavailable = "UNAVAILABLE"
	// ReasonInternal (500): an FCM server error; retried.
	ReasonInternal = "INTERNAL"
	// ReasonThirdPartyAuthError (401): FCM could not authenticate to APNs or
	// a web push service with the project's credentials.
	ReasonThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR"
)

// Reasons the Client records when FCM gives no FCM error code.
const (
	// ReasonUnauthenticated: the credentials were refused, by FCM (a 401
	// without an FCM code) or by the token endpoint when fetching an access
	// token.
	ReasonUnauthenticated = "UNAUTHENTICATED"
	// ReasonTimeout: an attempt outlived Config.Timeout (or ctx's deadline).
	ReasonTimeout = "Timeout"
	// ReasonTransportError: no HTTP response (connection refused or reset,
	// TLS failure, a token endpoint unreachable). Result.Error says which.
	ReasonTransportError = "TransportError"
	// ReasonCanceled: ctx was canceled before an answer came.
	ReasonCanceled = "Canceled"
)

// fcmCodes are the FCM error codes the firebase SDK recognises in an
// answer's FcmError detail, tested in this order.
var fcmCodes = []struct {
	code string
	is   func(error) bool
}{
	{ReasonUnregistered, messaging.IsUnregistered},
	{ReasonInvalidArgument, messaging.IsInvalidArgument},
	{ReasonSenderIDMismatch, messaging.IsSenderIDMismatch},
	{ReasonQuotaExceeded, messaging.IsQuotaExceeded},
	{ReasonUnavailable, messaging.IsUnavailable},
	{ReasonInternal, messaging.IsInternal},
	{ReasonThirdPartyAuthError, messaging.IsThirdPartyAuthError}, // or APNS_AUTH_ERROR
}

// platformCodes are the Google RPC statuses of answers without an FCM code
// (the "status" of the error body, else the HTTP status's).
var platformCodes = []struct {
	code string
	is   func(error) bool
}{
	{"INVALID_ARGUMENT", errorutils.IsInvalidArgument},
	{"FAILED_PRECONDITION", errorutils.IsFailedPrecondition},
	{"OUT_OF_RANGE", errorutils.IsOutOfRange},
	{ReasonUnauthenticated, errorutils.IsUnauthenticated},
	{"PERMISSION_DENIED", errorutils.IsPermissionDenied},
	{"NOT_FOUND", errorutils.IsNotFound},
	{"CONFLICT", errorutils.IsConflict},
	{"ABORTED", errorutils.IsAborted},
	{"ALREADY_EXISTS", errorutils.IsAlreadyExists},
	{"RESOURCE_EXHAUSTED", errorutils.IsResourceExhausted},
	{"CANCELLED", errorutils.IsCancelled},
	{"DATA_LOSS", errorutils.IsDataLoss},
	{"INTERNAL", errorutils.IsInternal},
	{"UNAVAILABLE", errorutils.IsUnavailable},
	{"DEADLINE_EXCEEDED", errorutils.IsDeadlineExceeded},
}

// reasonOf is the Result.Reason of an error answer from the firebase SDK:
// its FCM error code, else its Google RPC status, else "HTTP<status>".
func reasonOf(err error, status int) string {
	for _, c := range fcmCodes {
		if c.is(err) {
			return c.code
		}
	}
	for _, c := range platformCodes {
		if c.is(err) {
			return c.code
		}
	}
	return "HTTP" + strconv.Itoa(status)
}

// retryCodes are transient.
var retryCodes = map[string]bool{
	ReasonQuotaExceeded:  true,
	ReasonUnavailable:    true,
	ReasonInternal:       true,
	"RESOURCE_EXHAUSTED": true, // 429 without an FCM code
	"DEADLINE_EXCEEDED":  true, // FCM's own deadline
	ReasonTimeout:        true,
	ReasonTransportError: true,
}

// Classify says what to do with a message whose last answer had reason
// code (a Result.Reason). retry: try again after a backoff
// (QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, RESOURCE_EXHAUSTED,
// DEADLINE_EXCEEDED, Timeout, TransportError, and "HTTP429" and "HTTP5xx"
// from answers that are not Google API errors). permanent: the message
// failed for good (UNREGISTERED, INVALID_ARGUMENT, SENDER_ID_MISMATCH,
// THIRD_PARTY_AUTH_ERROR, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND,
// PayloadTooLarge, every other code; and Canceled: nobody waits for the
// answer any more). Both are false for "", a message sent.
func Classify(code string) (retry, permanent bool) {
	switch {
	case code == "":
		return false, false
	case retryCodes[code]:
		return true, false
	}
	if s, ok := strings.CutPrefix(code, "HTTP"); ok {
		if status, err := strconv.Atoi(s); err == nil && (status == 429 || status >= 500 && status <= 599) {
			return true, false
		}
	}
	return false, true
}
