package opserver

import (
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"

	jose "github.com/go-jose/go-jose/v4"
)

// RewriteIDTokens wraps the provider in a tampering proxy for tests: the
// ID token of every token response is decoded, passed to rewrite (which
// may change its claims) and signed again with the key rewrite returns,
// under the provider's key id. Returning the provider's own key (see
// SigningKey) forges a token that only its claims can give away;
// another key forges the signature.
func (s *Server) RewriteIDTokens(rewrite func(claims map[string]any) *rsa.PrivateKey) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth/token" {
			s.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		var body map[string]any
		var raw string
		if json.Unmarshal(rec.Body.Bytes(), &body) == nil {
			raw, _ = body["id_token"].(string)
		}
		jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
		if raw == "" || err != nil {
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		var claims map[string]any
		if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		key := rewrite(claims)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
			(&jose.SignerOptions{}).WithHeader("kid", s.storage.keyID).WithType("JWT"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		payload, _ := json.Marshal(claims)
		signed, err := signer.Sign(payload)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body["id_token"], _ = signed.CompactSerialize()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(body)
	})
}
