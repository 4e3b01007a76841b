//go:build !unix

package fcmio

import (
	"testing"
	"time"
)

// cpuTime is not measured here: the benchmark reports 0 CPU per
// notification.
func cpuTime(*testing.B) time.Duration { return 0 }
