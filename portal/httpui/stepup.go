package httpui

import "net/http"

// stepUpRoutes registers the routes of step-up per session — step-up helper.
func (s *Server) stepUpRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
}
