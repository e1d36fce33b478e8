package httpui

import "net/http"

// mfaRoutes registers the routes of MFA: second factor, enrolment, verify — MFA helper.
func (s *Server) mfaRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
}
