package httpui

import "net/http"

// ldapRoutes registers the routes of LDAP admin pages (sign-in goes through the password form) — LDAP helper.
func (s *Server) ldapRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
}
