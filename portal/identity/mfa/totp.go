// Package mfa holds the second factors of local and LDAP users: TOTP keys
// (RFC 6238, github.com/pquerna/otp), one-time recovery codes, and
// WebAuthn passkeys and security keys (github.com/go-webauthn/webauthn).
// It keeps no state: the store keeps factors, codes and the last TOTP step
// used; the caller keeps ceremony state in the user's web session.
package mfa

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: those every authenticator app supports (SHA-1, six
// digits, 30 s). Skew lets a code of the step before or after pass, for
// clocks a little apart and codes typed at a step's end.
const (
	totpPeriod  = 30
	totpDigits  = otp.DigitsSix
	totpSkew    = 1
	totpQRSize  = 240 // pixels, scanned from a screen
	maxCodeLen  = 64  // a typed code longer than this is refused unread
	totpKeySize = 20  // bytes of secret, RFC 4226's recommendation
)

// TOTPKey is a new TOTP key being enrolled: Secret (base32) is shown for
// manual entry and kept, URL is the otpauth:// URL the QR code encodes.
type TOTPKey struct {
	Secret string
	URL    string
}

// NewTOTPKey makes a random key for account at issuer (the names an
// authenticator app shows).
func NewTOTPKey(issuer, account string) (TOTPKey, error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: totpPeriod,
		SecretSize: totpKeySize, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return TOTPKey{}, fmt.Errorf("generate TOTP key: %w", err)
	}
	return TOTPKey{Secret: k.Secret(), URL: k.URL()}, nil
}

// QRDataURI is k's QR code as a PNG data: URI, for an <img> (the CSP
// allows data: images, and no request carries the secret).
func (k TOTPKey) QRDataURI() (string, error) {
	key, err := otp.NewKeyFromURL(k.URL)
	if err != nil {
		return "", fmt.Errorf("parse TOTP URL: %w", err)
	}
	img, err := key.Image(totpQRSize, totpQRSize)
	if err != nil {
		return "", fmt.Errorf("draw TOTP QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", fmt.Errorf("encode TOTP QR code: %w", err)
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// ErrBadCode is a code that is not right (or not a code at all).
var ErrBadCode = errors.New("the code is not right")

// TOTPStep checks code against secret at now, allowing one step of skew
// either way, and returns the time step it matched. The caller must then
// record the step (store.UseTOTPStep) and refuse a step not after the last
// one used, so that each code works once.
func TOTPStep(secret, code string, now time.Time) (int64, error) {
	code = strings.TrimSpace(code)
	code = strings.ReplaceAll(code, " ", "")
	if len(code) != totpDigits.Length() || strings.Trim(code, "0123456789") != "" {
		return 0, ErrBadCode
	}
	step := now.Unix() / totpPeriod
	// Try every candidate step, so that the time taken does not say which
	// one matched.
	var found int64
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		s := step + d
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*totpPeriod, 0), totp.ValidateOpts{
			Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, fmt.Errorf("compute TOTP code: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && found == 0 {
			found = s
		}
	}
	if found == 0 {
		return 0, ErrBadCode
	}
	return found, nil
}
