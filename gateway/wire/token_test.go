package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_800_000_000_000)
	kp, ks := bytes.Repeat([]byte{1}, TokenKeySize), bytes.Repeat([]byte{2}, TokenKeySize)
	gens := map[string]int64{SlotPrimary: 3, SlotSecondary: 1}
	keys := func(slot string) ([]byte, int64, error) {
		if slot == SlotPrimary {
			return kp, gens[slot], nil
		}
		return ks, gens[slot], nil
	}
	good := Token{GatewayID: "7", Slot: SlotPrimary, Generation: 3, IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}
	tok := MakeToken(good, kp)
	if got, err := VerifyToken(tok, "7", now, keys); err != nil || got != good {
		t.Fatalf("good token: %v %+v", err, got)
	}
	sec := good
	sec.Slot, sec.Generation = SlotSecondary, 1
	flip := func(s string, i int) string {
		b := []byte(s)
		b[i] ^= 1
		return string(b)
	}
	for _, c := range []struct {
		name, token, gateway string
		at                   time.Time
		want                 error
	}{
		{"other gateway", tok, "8", now, ErrTokenMalformed},
		{"expired", tok, "7", now.Add(time.Hour), ErrTokenExpired},
		{"tampered expiry", strings.Replace(tok, ".1800003600000.", ".1800007200000.", 1), "7", now, ErrTokenSignature},
		{"tampered mac", flip(tok, len(tok)-3), "7", now, ErrTokenSignature},
		{"made with the other key", MakeToken(sec, kp), "7", now, ErrTokenSignature},
		{"old generation", MakeToken(Token{GatewayID: "7", Slot: SlotPrimary, Generation: 2, IssuedAt: good.IssuedAt, ExpiresAt: good.ExpiresAt}, kp), "7", now, ErrTokenRevoked},
		{"not a token", "Bearer x", "7", now, ErrTokenMalformed},
		{"too long", tok + strings.Repeat("A", MaxToken), "7", now, ErrTokenMalformed},
		{"leading zero", strings.Replace(tok, ".3.", ".03.", 1), "7", now, ErrTokenMalformed},
		{"issued in the future", MakeToken(Token{GatewayID: "7", Slot: SlotPrimary, Generation: 3, IssuedAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour)}, kp), "7", now, ErrTokenMalformed},
	} {
		if _, err := VerifyToken(c.token, c.gateway, c.at, keys); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := VerifyToken(MakeToken(sec, ks), "7", now, keys); err != nil {
		t.Fatalf("secondary token: %v", err)
	}
}

// FuzzParseToken: any text either parses to a token that prints back to
// the same payload, or is refused; never a panic.
func FuzzParseToken(f *testing.F) {
	f.Add(MakeToken(Token{GatewayID: "1", Slot: SlotSecondary, Generation: 0, IssuedAt: time.UnixMilli(1), ExpiresAt: time.UnixMilli(2)}, make([]byte, 32)))
	f.Add("kwgt1.....")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, tok.payload()+".") {
			t.Fatalf("%q parsed to %+v", s, tok)
		}
		VerifyToken(s, tok.GatewayID, tok.IssuedAt, func(string) ([]byte, int64, error) { return make([]byte, 32), tok.Generation, nil })
	})
}
