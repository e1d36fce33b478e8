package httpui

import (
	"context"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"
)

// loadSession loads the web session of every cookie route. Ordinary
// requests go through scs's LoadAndSave. A request that may run for
// minutes or hours (a terminal, desktop or watch socket, a file transfer,
// a recording or video download) does not: LoadAndSave writes back the
// whole session as it was when the request began (it re-saves on every
// request to move the idle deadline), so closing a terminal would undo
// what the browser did meanwhile in another tab — an MFA check passed for
// step-up, a sign-in method, a flash message. Such a request loads the
// session and writes back only the flash message it set, into the session
// as it is when it ends.
func (s *Server) loadSession(next http.Handler) http.Handler {
	save := s.Sessions.LoadAndSave(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !longLived(r) {
			save.ServeHTTP(w, r)
			return
		}
		token := ""
		if c, err := r.Cookie(s.Sessions.Cookie.Name); err == nil {
			token = c.Value
		}
		ctx, err := s.Sessions.Load(r.Context(), token)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		before := s.Sessions.GetString(ctx, flashKey)
		next.ServeHTTP(w, r.WithContext(ctx))
		after := s.Sessions.GetString(ctx, flashKey)
		if token == "" || after == "" || after == before {
			return
		}
		// The request may have outlived its client: the flash still goes
		// where the next page will read it.
		now, err := s.Sessions.Load(context.WithoutCancel(r.Context()), token)
		if err != nil || s.Sessions.Token(now) != token {
			return // signed out meanwhile: nobody will read it
		}
		s.Sessions.Put(now, flashKey, after)
		if _, _, err := s.Sessions.Commit(now); err != nil {
			s.Logger.ErrorContext(r.Context(), "save the flash message of a long request", "path", r.URL.Path, "err", err)
		}
	})
}

// longLived reports whether r is a request that may last long enough for
// the browser to change its session meanwhile.
func longLived(r *http.Request) bool {
	if websocket.IsWebSocketUpgrade(r) || isFileUpload(r) {
		return true
	}
	if r.Method != http.MethodGet {
		return false
	}
	p := r.URL.Path
	return (strings.HasPrefix(p, "/files/") && strings.HasSuffix(p, "/download")) ||
		(strings.HasPrefix(p, "/recordings/") && (strings.HasSuffix(p, "/file") || strings.HasSuffix(p, "/video")))
}
