package sessions

import (
	"strings"
	"testing"
)

// TestMetricCode checks that a refusal code from a gateway becomes a
// metric label only when it is a known one.
func TestMetricCode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"no_grant":                 "no_grant",
		"gateway_unavailable":      "gateway_unavailable",
		"target_refused":           "target_refused",
		"host_key_mismatch":        "host_key_mismatch",
		"recording_unavailable":    "recording_unavailable",
		"":                         "other",
		"made_up_by_a_gateway":     "other",
		strings.Repeat("x", 1<<16): "other",
	} {
		if got := metricCode(in); got != want {
			t.Errorf("metricCode(%.20q) = %q, want %q", in, got, want)
		}
	}
}
