package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Gateway access tokens: a gateway sends one with every config pull and
// recording upload, beside its signature. The portal makes a token with one
// of the gateway's two keys (a slot) and checks it with that key and the
// key's generation, so no database write is needed per request and
// regenerating a key invalidates every token made with it.
const (
	// HeaderGatewayToken carries the gateway's access token.
	HeaderGatewayToken = "X-Keyway-Gateway-Token"
	// HeaderTokenRenewError carries why the gateway's last token renewal
	// failed, sent with its next request so the portal can show it.
	HeaderTokenRenewError = "X-Keyway-Token-Renew-Error"
	// HeaderTokenRenew, in the portal's answer, asks the gateway to renew
	// its token now (its token is on a slot the portal no longer issues).
	HeaderTokenRenew = "X-Keyway-Token-Renew"
	// TokenPath is the endpoint a gateway renews its token at (POST).
	TokenPath = "/gateway-api/v1/token"
)

// Key slots of a gateway.
const (
	SlotPrimary   = "primary"
	SlotSecondary = "secondary"
)

// Limits of tokens.
const (
	// MaxToken bounds a token's text, checked before it is parsed.
	MaxToken = 256
	// MaxRenewError bounds the renewal error a gateway reports.
	MaxRenewError = 300
	// MaxTokenLifetime is the longest a token may live.
	MaxTokenLifetime = 30 * 24 * time.Hour
	// TokenKeySize is the size of a gateway key.
	TokenKeySize = 32
)

const tokenPrefix = "kwgt1"

// Token is what an access token says. Times are kept to the millisecond.
type Token struct {
	GatewayID  string
	Slot       string
	Generation int64
	IssuedAt   time.Time
	ExpiresAt  time.Time
}

// Errors of VerifyToken that callers branch on.
var (
	ErrTokenMalformed = errors.New("the access token is malformed")
	ErrTokenExpired   = errors.New("the access token has expired")
	ErrTokenRevoked   = errors.New("the access token was made with a gateway key that has since been regenerated")
	ErrTokenSignature = errors.New("the access token's signature does not match the gateway's key")
)

func (t Token) payload() string {
	return strings.Join([]string{tokenPrefix, t.GatewayID, t.Slot, strconv.FormatInt(t.Generation, 10),
		strconv.FormatInt(t.IssuedAt.UnixMilli(), 10), strconv.FormatInt(t.ExpiresAt.UnixMilli(), 10)}, ".")
}

func tokenMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("keyway-gateway-token\n" + payload))
	return m.Sum(nil)
}

// MakeToken returns t as text, authenticated with key (t's slot's key).
func MakeToken(t Token, key []byte) string {
	p := t.payload()
	return p + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(key, p))
}

// ParseToken reads what a token says without checking it; VerifyToken
// checks it. Only its form is checked here.
func ParseToken(s string) (Token, error) {
	var t Token
	if len(s) > MaxToken {
		return t, ErrTokenMalformed
	}
	f := strings.Split(s, ".")
	if len(f) != 7 || f[0] != tokenPrefix || f[1] == "" || (f[2] != SlotPrimary && f[2] != SlotSecondary) {
		return t, ErrTokenMalformed
	}
	gen, err1 := strconv.ParseInt(f[3], 10, 64)
	iat, err2 := strconv.ParseInt(f[4], 10, 64)
	exp, err3 := strconv.ParseInt(f[5], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || gen < 0 || exp <= iat {
		return t, ErrTokenMalformed
	}
	t = Token{GatewayID: f[1], Slot: f[2], Generation: gen, IssuedAt: time.UnixMilli(iat), ExpiresAt: time.UnixMilli(exp)}
	// The text must be the one MakeToken writes, so one token has one form.
	if t.payload() != strings.Join(f[:6], ".") {
		return Token{}, ErrTokenMalformed
	}
	return t, nil
}

// KeyLookup returns the key and its current generation of a gateway's slot.
type KeyLookup func(slot string) (key []byte, generation int64, err error)

// VerifyToken checks token s for gateway gatewayID at now: its form, the
// gateway it names, the generation of its slot's key, the MAC and expiry.
func VerifyToken(s, gatewayID string, now time.Time, keys KeyLookup) (Token, error) {
	t, err := ParseToken(s)
	if err != nil {
		return t, err
	}
	if t.GatewayID != gatewayID {
		return t, fmt.Errorf("%w: it belongs to gateway %s", ErrTokenMalformed, t.GatewayID)
	}
	key, gen, err := keys(t.Slot)
	if err != nil {
		return t, err
	}
	want := tokenMAC(key, t.payload())
	i := strings.LastIndexByte(s, '.')
	got, err := base64.RawURLEncoding.DecodeString(s[i+1:])
	if err != nil || !hmac.Equal(got, want) {
		// A regenerated key makes old tokens fail the MAC too; the
		// generation names the reason.
		if t.Generation != gen {
			return t, fmt.Errorf("%w (%s key)", ErrTokenRevoked, t.Slot)
		}
		return t, ErrTokenSignature
	}
	if t.Generation != gen {
		return t, fmt.Errorf("%w (%s key)", ErrTokenRevoked, t.Slot)
	}
	if !now.Before(t.ExpiresAt) {
		return t, fmt.Errorf("%w (at %s)", ErrTokenExpired, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if t.IssuedAt.After(now.Add(maxClockSkew)) {
		return t, fmt.Errorf("%w: issued in the future", ErrTokenMalformed)
	}
	return t, nil
}

// TokenGrant is the portal's answer to a renewal.
type TokenGrant struct {
	Token     string    `json:"token"`
	Slot      string    `json:"slot"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}
