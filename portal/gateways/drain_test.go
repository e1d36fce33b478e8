package gateways

import (
	"io"
	"log/slog"
	"testing"
)

// TestMarkDraining: a gateway that refused a session because it drains
// leaves selection at once, so the next session of its segment goes to
// another; it shows as unavailable with the reason.
func TestMarkDraining(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	p := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	p.Set([]Gateway{{ID: "a1", Segment: "gateway-aws", Key: key}, {ID: "a2", Segment: "gateway-aws", Key: key}})
	for _, id := range []string{"a1", "a2"} {
		p.entries[id].health.State = StateAvailable
	}
	p.MarkDraining("a1", "the gateway is restarting")
	p.MarkDraining("nosuch", "ignored")
	for range 50 {
		if g, err := p.Select([]string{"gateway-aws"}); err != nil || g.ID != "a2" {
			t.Fatalf("selected %q (%v) with a1 draining", g.ID, err)
		}
	}
	for _, s := range p.Statuses() {
		if s.ID == "a1" && (s.State != StateUnavailable || s.LastError != "the gateway is restarting") {
			t.Fatalf("a1 shows as %s: %q", s.State, s.LastError)
		}
	}
}
