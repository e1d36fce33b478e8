package shutdown

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseDrainTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{{"", DefaultDrainTimeout, false}, {"30m", 30 * time.Minute, false}, {"0", 0, false}, {"90s", 90 * time.Second, false},
		{"24h", 24 * time.Hour, false}, {"-1s", 0, true}, {"soon", 0, true}, {"25h", 0, true}, {"30", 0, true}} {
		got, err := ParseDrainTimeout(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseDrainTimeout(%q) = %s, %v", tc.in, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--drain-timeout") {
			t.Errorf("the error does not name the flag: %v", err)
		}
	}
}

// TestStopNow: the second signal's context travels in the first's; a
// context without one never cuts a drain short.
func TestStopNow(t *testing.T) {
	t.Parallel()
	if StopNow(context.Background()).Done() != nil {
		t.Fatal("a context without a stop-now context cuts drains short")
	}
	now, cancel := context.WithCancel(context.Background())
	ctx := WithStopNow(context.Background(), now)
	if StopNow(ctx).Err() != nil {
		t.Fatal("stop-now ended early")
	}
	cancel()
	if StopNow(ctx).Err() == nil {
		t.Fatal("stop-now did not follow its context")
	}
}
