package mfa

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

func TestTOTPStep(t *testing.T) {
	t.Parallel()
	k, err := NewTOTPKey("Keyway", "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_015, 0) // 15 s into a step
	step := now.Unix() / totpPeriod
	code := func(at time.Time) string {
		c, err := totp.GenerateCode(k.Secret, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name     string
		code     string
		wantStep int64
		wantErr  error
	}{
		{"current step", code(now), step, nil},
		{"spaces typed", " " + code(now)[:3] + " " + code(now)[3:] + " ", step, nil},
		{"previous step (skew)", code(now.Add(-30 * time.Second)), step - 1, nil},
		{"next step (skew)", code(now.Add(30 * time.Second)), step + 1, nil},
		{"two steps old", code(now.Add(-60 * time.Second)), 0, ErrBadCode},
		{"two steps ahead", code(now.Add(60 * time.Second)), 0, ErrBadCode},
		{"wrong digits", "000000", 0, ErrBadCode},
		{"too short", "12345", 0, ErrBadCode},
		{"letters", "12345a", 0, ErrBadCode},
		{"empty", "", 0, ErrBadCode},
		{"huge", strings.Repeat("1", 1<<16), 0, ErrBadCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "wrong digits" && code(now) == "000000" {
				t.Skip("the random key's code is 000000")
			}
			got, err := TOTPStep(k.Secret, tt.code, now)
			if !errors.Is(err, tt.wantErr) || got != tt.wantStep {
				t.Fatalf("TOTPStep(%q) = %d, %v; want %d, %v", tt.code, got, err, tt.wantStep, tt.wantErr)
			}
		})
	}
}

func TestTOTPQRCode(t *testing.T) {
	t.Parallel()
	k, err := NewTOTPKey("Keyway", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.URL, "otpauth://totp/Keyway:alice?") || !strings.Contains(k.URL, "secret="+k.Secret) {
		t.Fatalf("URL = %q", k.URL)
	}
	uri, err := k.QRDataURI()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uri, "data:image/png;base64,iVBOR") {
		t.Fatalf("QR data URI starts %q", uri[:min(len(uri), 40)])
	}
}

func TestRecoveryCodes(t *testing.T) {
	t.Parallel()
	codes, hashes := NewRecoveryCodes()
	if len(codes) != RecoveryCodeCount || len(hashes) != RecoveryCodeCount {
		t.Fatalf("%d codes, %d hashes", len(codes), len(hashes))
	}
	seen := map[string]bool{}
	for i, c := range codes {
		if seen[c] {
			t.Fatalf("code %q twice", c)
		}
		seen[c] = true
		if len(c) != 11 || c[5] != '-' {
			t.Fatalf("code %q is not xxxxx-xxxxx", c)
		}
		if hashes[i] != HashRecoveryCode(c) || hashes[i] == "" {
			t.Fatalf("hash of %q differs", c)
		}
		// As a user may type it.
		typed := strings.ToUpper(strings.ReplaceAll(c, "-", " "))
		if HashRecoveryCode(typed) != hashes[i] {
			t.Fatalf("typed %q does not match", typed)
		}
		if !LooksLikeRecoveryCode(c) || LooksLikeRecoveryCode("123456") {
			t.Fatal("LooksLikeRecoveryCode is wrong")
		}
	}
	for _, bad := range []string{"", "123456", "abcde-abcd", "abcde-abcdef", "abcde-abcd1", strings.Repeat("a", 1000)} {
		if h := HashRecoveryCode(bad); h != "" {
			t.Errorf("HashRecoveryCode(%q) = %q, want \"\"", bad, h)
		}
	}
}

// FuzzCodes feeds typed codes (untrusted form input) to the TOTP and
// recovery code checks: they never panic, and accept only their shape.
func FuzzCodes(f *testing.F) {
	for _, s := range []string{"123456", " 123 456 ", "abcde-fghjk", "ABCDE FGHJK", "", "\x00\xff", strings.Repeat("9", 100)} {
		f.Add(s)
	}
	const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, typed string) {
		if step, err := TOTPStep(secret, typed, now); err == nil {
			if d := step - now.Unix()/totpPeriod; d < -totpSkew || d > totpSkew {
				t.Fatalf("step %d accepted, %d away", step, d)
			}
		}
		if h := HashRecoveryCode(typed); h != "" && len(h) != 64 {
			t.Fatalf("hash %q", h)
		}
	})
}
