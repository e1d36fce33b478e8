package wire

import (
	"strings"
	"testing"
	"time"
)

func TestRecordingMetaRoundTrip(t *testing.T) {
	m := RecordingMeta{SessionID: "S1", User: "ålice", Resource: "db-1", Protocol: ProtocolSSH, ClientAddr: "192.0.2.7",
		Format: "asciicast", Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), End: time.Date(2026, 1, 2, 3, 5, 5, 0, time.UTC),
		Complete: true, Size: 42, SHA256: strings.Repeat("ab", 32)}
	h, err := EncodeRecordingMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(h, " \r\n\"") {
		t.Fatalf("header value %q is not a safe token", h)
	}
	back, err := DecodeRecordingMeta(h)
	if err != nil || back != m {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	// Empty, not base64, oversized, an unknown field ({"x":1}), trailing data.
	for _, bad := range []string{"", "!!!", strings.Repeat("A", maxRecordingMeta+1), "eyJ4IjoxfQ", "e30gW10"} {
		if _, err := DecodeRecordingMeta(bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

// FuzzDecodeRecordingMeta feeds the upload metadata header, which comes
// from gateways, to its decoder: it must fail cleanly, never panic.
func FuzzDecodeRecordingMeta(f *testing.F) {
	good, _ := EncodeRecordingMeta(RecordingMeta{SessionID: "S1", Size: 1})
	for _, s := range []string{good, "", "e30", "eyJ4IjoxfQ", "////"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m, err := DecodeRecordingMeta(v)
		if err != nil {
			return
		}
		again, err := EncodeRecordingMeta(m)
		if err != nil {
			return // escaping can make it larger than the limit
		}
		if back, err := DecodeRecordingMeta(again); err != nil || back.SessionID != m.SessionID || back.Size != m.Size {
			t.Fatalf("re-encoded metadata differs: %+v %v", back, err)
		}
	})
}
