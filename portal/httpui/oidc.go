package httpui

import "net/http"

// oidcRoutes registers the routes of OpenID Connect — OIDC helper.
func (s *Server) oidcRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
}

// providerSignOutURL is where signing out sends the browser so that the
// identity provider ends its session too (OIDC RP-initiated logout), or ""
// for the portal's own sign-in page. It reads the web session, which is
// still there when it is called.
func (s *Server) providerSignOutURL(r *http.Request) string {
	return ""
}
