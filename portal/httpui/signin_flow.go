package httpui

import (
	"net/http"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
)

// Web session keys of issue 20 beyond sessionUserKey and sessionEpochKey.
const (
	// sessionMethodKey holds how the session signed in (SignInMethod.String).
	sessionMethodKey = "auth_method"
	// sessionMFAAtKey holds when the session last passed an MFA check, in
	// Unix milliseconds (absent: never); step-up compares against it.
	sessionMFAAtKey = "mfa_at"
)

// SignInMethod is how a user proved who they are: Kind is "password"
// (local), "oidc", "saml" or "ldap"; Provider the provider's name; Factor
// the second factor used ("totp", "webauthn", "recovery"), if any.
type SignInMethod struct {
	Kind     string
	Provider string
	Factor   string
}

// Sign-in method kinds.
const (
	MethodPassword = "password"
	MethodOIDC     = store.KindOIDC
	MethodSAML     = store.KindSAML
	MethodLDAP     = store.KindLDAP
)

// String is the method as the audit log and the session keep it, e.g.
// "password", "oidc:corp", "ldap:ad+totp".
func (m SignInMethod) String() string {
	s := m.Kind
	if m.Provider != "" {
		s += ":" + m.Provider
	}
	if m.Factor != "" {
		s += "+" + m.Factor
	}
	return s
}

// auditDetails are the details a sign-in event carries.
func (m SignInMethod) auditDetails() map[string]string {
	d := map[string]string{"method": m.Kind}
	if m.Provider != "" {
		d["provider"] = m.Provider
	}
	if m.Factor != "" {
		d["factor"] = m.Factor
	}
	return d
}

// finishSignIn is where every primary sign-in (password, LDAP, OIDC, SAML)
// ends once the user is known and allowed: it applies the MFA gate (a
// second factor, or enrolment first when required) and otherwise starts
// the session, audits the sign-in with its method and redirects to next.
func (s *Server) finishSignIn(w http.ResponseWriter, r *http.Request, u store.User, m SignInMethod, next string) {
	s.mfaGate(w, r, u, m, next) // mfa.go
}

// sessionMFAAt is when the request's web session last passed an MFA
// check; zero if never.
func (s *Server) sessionMFAAt(r *http.Request) time.Time {
	ms := s.Sessions.GetInt64(r.Context(), sessionMFAAtKey)
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// identityRoutes registers the routes of issue 20. Each part registers its
// own in its file, so the parts do not edit one list.
func (s *Server) identityRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
	s.identityAdminRoutes(mux, signedIn, admin)
	s.oidcRoutes(mux, signedIn, admin)
	s.samlRoutes(mux, signedIn, admin)
	s.ldapRoutes(mux, signedIn, admin)
	s.mfaRoutes(mux, signedIn, admin)
	s.stepUpRoutes(mux, signedIn, admin)
}
