package httpui

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// sessionUserKey is the scs key holding the signed-in user's id, and
// sessionEpochKey their session epoch when they signed in.
const (
	sessionUserKey  = "user_id"
	sessionEpochKey = "session_epoch"
)

type ctxKey int

const userKey ctxKey = 0

// withUser returns ctx carrying the signed-in user.
func withUser(ctx context.Context, u store.User) context.Context {
	return context.WithValue(ctx, userKey, u)
}

// currentUser returns the signed-in user of the request, if any.
func currentUser(r *http.Request) (store.User, bool) {
	u, ok := r.Context().Value(userKey).(store.User)
	return u, ok
}

// loadUser puts the session's user into the request context. A session whose
// user was deleted or disabled is signed out.
func (s *Server) loadUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := s.Sessions.GetInt64(r.Context(), sessionUserKey)
		if id == 0 {
			next.ServeHTTP(w, r)
			return
		}
		u, err := s.Store.UserByID(r.Context(), id)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled):
			s.Sessions.Remove(r.Context(), sessionUserKey)
		case err == nil && s.Sessions.GetInt64(r.Context(), sessionEpochKey) != u.SessionEpoch:
			// The password changed since this sign-in (elsewhere).
			s.Sessions.Remove(r.Context(), sessionUserKey)
		case err != nil:
			s.serverError(w, r, err)
			return
		default:
			r = r.WithContext(withUser(r.Context(), u))
		}
		next.ServeHTTP(w, r)
	})
}

// requireRole lets signed-in users with one of roles (any role when none are
// given) through. Others are sent to sign in, or refused with 403 and an
// audit event.
func (s *Server) requireRole(h http.HandlerFunc, roles ...store.Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := currentUser(r)
		if !ok {
			if r.Method == http.MethodGet && r.Header.Get("Upgrade") == "" {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.renderError(w, r, http.StatusUnauthorized, "Your session has ended. Sign in again.")
			return
		}
		if len(roles) > 0 && !slices.Contains(roles, u.Role) {
			s.record(r, audit.Event{
				Actor: u.Name, Action: audit.ActionAuthzDenied, Target: r.Method + " " + r.URL.Path,
				Outcome: audit.OutcomeDenied, Reason: "role " + string(u.Role) + " may not use this page",
			})
			s.renderError(w, r, http.StatusForbidden, "You do not have access to this page.")
			return
		}
		h(w, r)
	})
}

// record writes an audit event about r, filling in the client address. A
// failure to audit is logged; the request itself has already happened.
func (s *Server) record(r *http.Request, ev audit.Event) {
	if ev.ClientAddr == "" {
		ev.ClientAddr = s.ClientInfo.Addr(r)
	}
	if ev.Action == audit.ActionSignIn {
		// Every sign-in, by any method, is audited here; a password
		// sign-in names no method.
		s.Metrics.SignIn(cmp.Or(ev.Details["method"], MethodPassword), ev.Outcome == audit.OutcomeSuccess)
	}
	if err := s.Audit.Record(context.WithoutCancel(r.Context()), ev); err != nil {
		s.Logger.ErrorContext(r.Context(), "write audit event", "action", ev.Action, "err", err)
	}
}
