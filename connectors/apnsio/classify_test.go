package apnsio_test

import (
	"testing"

	"github.com/pushflow/pushflow/connectors/apnsio"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		status        int
		reason        string
		wantRetry     bool
		wantPermanent bool
	}{
		{200, "", false, false},
		{400, "BadDeviceToken", false, true},
		{400, "BadCollapseId", false, true},
		{400, "TopicDisallowed", false, true},
		{403, "InvalidProviderToken", false, true},
		{403, "ExpiredProviderToken", false, true},
		{404, "BadPath", false, true},
		{405, "MethodNotAllowed", false, true},
		{410, "Unregistered", false, true},
		{410, "ExpiredToken", false, true},
		{413, "PayloadTooLarge", false, true},
		{429, "TooManyRequests", true, false},
		{429, "TooManyProviderTokenUpdates", true, false},
		{500, "InternalServerError", true, false},
		{502, "", true, false},
		{503, "ServiceUnavailable", true, false},
		{503, "Shutdown", true, false},
		{0, apnsio.ReasonTimeout, true, false},
		{0, apnsio.ReasonTransportError, true, false},
		{0, "", true, false},
		{0, apnsio.ReasonCanceled, false, true},
		{400, "IdleTimeout", true, false},
		{0, "PayloadTooLarge", false, true},
		{302, "", false, true},
	}
	for _, tt := range tests {
		retry, permanent := apnsio.Classify(tt.status, tt.reason)
		if retry != tt.wantRetry || permanent != tt.wantPermanent {
			t.Errorf("Classify(%d, %q) = %v, %v, want %v, %v", tt.status, tt.reason, retry, permanent, tt.wantRetry, tt.wantPermanent)
		}
	}
}
