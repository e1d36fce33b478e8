package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// iteratedMark starts the keys hashedStore.All returns: already hashed,
// they must not be hashed again when Iterate commits or destroys them. A
// browser cannot send it: NUL is not allowed in a cookie value, and
// net/http drops such cookies before scs sees them.
const iteratedMark = "\x00hashed:"

// hashedStore keeps web sessions under the SHA-256 of their token, so the
// sessions table holds nothing that signs anyone in. Tokens are 32 random
// bytes, so an unsalted hash cannot be searched backwards.
type hashedStore struct {
	inner SessionStore
}

// sessionKey is what the table holds for token.
func sessionKey(token string) string {
	if k, ok := strings.CutPrefix(token, iteratedMark); ok {
		return k
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Find looks a cookie's token up by its hash. An iterated key is never
// looked up as it is: only a token hashes to a stored key.
func (s hashedStore) Find(token string) ([]byte, bool, error) {
	if strings.HasPrefix(token, iteratedMark) {
		return nil, false, nil
	}
	return s.inner.Find(sessionKey(token))
}

// Commit stores the session's data under its token's hash.
func (s hashedStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.inner.Commit(sessionKey(token), b, expiry)
}

// Delete removes the session stored under its token's hash.
func (s hashedStore) Delete(token string) error { return s.inner.Delete(sessionKey(token)) }

// All returns the active sessions by marked hash, for scs's Iterate; the
// tokens themselves are nowhere to be had.
func (s hashedStore) All() (map[string][]byte, error) {
	all, err := s.inner.All()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(all))
	for k, v := range all {
		out[iteratedMark+k] = v
	}
	return out, nil
}
