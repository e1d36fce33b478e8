package gateways

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/gateway/wire"
)

func TestSelect(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	p := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	p.Set([]Gateway{
		{ID: "d1", Segment: DefaultSegment, Key: key},
		{ID: "a1", Segment: "gateway-aws", Key: key},
		{ID: "a2", Segment: "gateway-aws", Key: key},
		{ID: "a3", Segment: "gateway-aws"}, // pending: no key yet
		{ID: "o1", Segment: "gateway-office1"},
	})
	for _, id := range []string{"d1", "a1", "a2"} {
		p.entries[id].health.State = StateAvailable
	}
	seen := map[string]int{}
	for range 200 {
		g, err := p.Select([]string{"web", "gateway-aws"})
		if err != nil {
			t.Fatal(err)
		}
		seen[g.ID]++
	}
	if seen["a1"] == 0 || seen["a2"] == 0 || len(seen) != 2 {
		t.Fatalf("tagged selection spread %v, want a1 and a2 only", seen)
	}
	if _, err := p.Select([]string{"gateway-office1"}); !errors.Is(err, ErrNoGateway) || err.Error() != "no gateway available in segment gateway-office1" {
		t.Fatalf("segment with only pending gateways: %v", err)
	}
	p.entries["a2"].health.State = StateUnavailable
	for range 20 {
		if g, _ := p.Select([]string{"gateway-aws"}); g.ID != "a1" {
			t.Fatalf("unavailable gateway a2 selected")
		}
	}
	p.entries["a2"].health.State = StateAvailable
	seen = map[string]int{}
	for range 300 {
		g, _ := p.Select(nil)
		seen[g.ID]++
	}
	if len(seen) != 3 || seen["a3"] != 0 || seen["o1"] != 0 {
		t.Fatalf("untagged selection spread %v, want all three available", seen)
	}
	p.Set(nil)
	if _, err := p.Select(nil); !errors.Is(err, ErrNoGateway) {
		t.Fatalf("no gateways: %v", err)
	}
}

// TestSelectStaysInSegment: a resource tagged with a segment an admin
// created never goes to another segment's gateway, even when its own
// segment has none left; a segment that does not serve untagged
// resources gets only its own.
func TestSelectStaysInSegment(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	p := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	p.SetSegments([]Segment{{Name: DefaultSegment, ServesUntagged: true}, {Name: "gateway-empty", ServesUntagged: true},
		{Name: "vault", ServesUntagged: false}, {Name: "office", ServesUntagged: true}})
	p.Set([]Gateway{
		{ID: "d1", Segment: DefaultSegment, Key: key},
		{ID: "v1", Segment: "vault", Key: key},
		{ID: "o1", Segment: "office", Key: key},
	})
	for id := range p.entries {
		p.entries[id].health.State = StateAvailable
	}
	for _, tags := range [][]string{{"gateway-empty"}, {"db", "Gateway-Empty"}} {
		if g, err := p.Select(tags); !errors.Is(err, ErrNoGateway) || !strings.Contains(err.Error(), "in segment") {
			t.Fatalf("tags %v: got gateway %q, %v; want no gateway in its segment", tags, g.ID, err)
		}
	}
	seen := map[string]int{}
	for range 300 {
		g, err := p.Select([]string{"web"})
		if err != nil {
			t.Fatal(err)
		}
		seen[g.ID]++
	}
	if seen["v1"] != 0 || seen["d1"] == 0 || seen["o1"] == 0 {
		t.Fatalf("untagged selection spread %v: want d1 and o1, never the vault's v1", seen)
	}
	if g, err := p.Select([]string{"VAULT"}); err != nil || g.ID != "v1" {
		t.Fatalf("tagged vault: %q %v", g.ID, err)
	}
	p.entries["v1"].health.State = StateUnavailable
	if g, err := p.Select([]string{"vault"}); err == nil {
		t.Fatalf("vault's resource went to %s with vault's gateway down", g.ID)
	}
}

func TestSessionAddr(t *testing.T) {
	t.Parallel()
	g := Gateway{SSHAddr: "gw:7993", RDPAddr: "gw:7994", VNCAddr: "gw:7995"}
	for protocol, want := range map[string]string{
		wire.ProtocolSSH: "gw:7993", wire.ProtocolSFTP: "gw:7993", wire.ProtocolTCP: "gw:7993",
		wire.ProtocolRDP: "gw:7994", wire.ProtocolVNC: "gw:7995",
	} {
		if got := g.SessionAddr(protocol); got != want {
			t.Errorf("SessionAddr(%s) = %s, want %s", protocol, got, want)
		}
	}
	if got := (Gateway{SSHAddr: "gw:7993"}).SessionAddr(wire.ProtocolRDP); got != "gw:7993" {
		t.Errorf("RDP without its own listener: %s", got)
	}
}
