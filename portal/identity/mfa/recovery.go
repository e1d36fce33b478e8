package mfa

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Recovery codes: ten, each 10 characters of an alphabet without look-alike
// characters (about 50 bits), shown as xxxxx-xxxxx. They are stored as
// SHA-256 hashes: with that much entropy a slow hash adds nothing.
const (
	RecoveryCodeCount = 10
	recoveryCodeLen   = 10
	recoveryAlphabet  = "abcdefghjkmnpqrstuvwxyz23456789"
)

// NewRecoveryCodes returns RecoveryCodeCount fresh codes, as shown to the
// user, and their hashes, as stored.
func NewRecoveryCodes() (codes, hashes []string) {
	for range RecoveryCodeCount {
		var b strings.Builder
		for i := range recoveryCodeLen {
			if i == recoveryCodeLen/2 {
				b.WriteByte('-')
			}
			b.WriteByte(recoveryAlphabet[randIndex(len(recoveryAlphabet))])
		}
		c := b.String()
		codes = append(codes, c)
		hashes = append(hashes, HashRecoveryCode(c))
	}
	return codes, hashes
}

// randIndex is a uniform random number in [0, n), n < 256.
func randIndex(n int) int {
	limit := 256 - 256%n // reject bytes that would bias the result
	var b [1]byte
	for {
		rand.Read(b[:])
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}

// HashRecoveryCode is the stored form of a code as typed: case, spaces and
// dashes do not matter. A code of the wrong shape hashes to "" (matches
// nothing).
func HashRecoveryCode(typed string) string {
	if len(typed) > maxCodeLen {
		return ""
	}
	c := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(typed)))
	if len(c) != recoveryCodeLen || strings.Trim(c, recoveryAlphabet) != "" {
		return ""
	}
	sum := sha256.Sum256([]byte(c))
	return hex.EncodeToString(sum[:])
}

// LooksLikeRecoveryCode tells a recovery code from a TOTP code typed into
// the same field.
func LooksLikeRecoveryCode(typed string) bool { return HashRecoveryCode(typed) != "" }
