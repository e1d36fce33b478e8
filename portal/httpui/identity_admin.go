package httpui

import "net/http"

// identityAdminRoutes registers the routes of the Sign-in page (providers, provisioning, local passwords) — identity-core helper.
func (s *Server) identityAdminRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
}
