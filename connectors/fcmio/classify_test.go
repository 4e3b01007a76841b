package fcmio_test

import (
	"testing"

	"github.com/pushflow/pushflow/connectors/fcmio"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		code          string
		wantRetry     bool
		wantPermanent bool
	}{
		{"", false, false},
		{"UNREGISTERED", false, true},
		{"INVALID_ARGUMENT", false, true},
		{"SENDER_ID_MISMATCH", false, true},
		{"THIRD_PARTY_AUTH_ERROR", false, true},
		{"QUOTA_EXCEEDED", true, false},
		{"UNAVAILABLE", true, false},
		{"INTERNAL", true, false},
		{"UNAUTHENTICATED", false, true},
		{"PERMISSION_DENIED", false, true},
		{"NOT_FOUND", false, true},
		{"RESOURCE_EXHAUSTED", true, false},
		{"DEADLINE_EXCEEDED", true, false},
		{"PayloadTooLarge", false, true},
		{fcmio.ReasonTimeout, true, false},
		{fcmio.ReasonTransportError, true, false},
		{fcmio.ReasonCanceled, false, true},
		{"HTTP429", true, false},
		{"HTTP500", true, false},
		{"HTTP502", true, false},
		{"HTTP599", true, false},
		{"HTTP302", false, true},
		{"HTTP413", false, true},
		{"HTTPx", false, true},
		{"UNSPECIFIED_ERROR", false, true},
	}
	for _, tt := range tests {
		retry, permanent := fcmio.Classify(tt.code)
		if retry != tt.wantRetry || permanent != tt.wantPermanent {
			t.Errorf("Classify(%q) = %v, %v, want %v, %v", tt.code, retry, permanent, tt.wantRetry, tt.wantPermanent)
		}
	}
}
