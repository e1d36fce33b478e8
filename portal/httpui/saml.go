package httpui

import "net/http"

// samlRoutes registers the routes of SAML 2.0 — SAML helper.
func (s *Server) samlRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
}
