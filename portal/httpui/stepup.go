package httpui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// stepUpRoutes registers the routes of step-up per session — step-up helper.
func (s *Server) stepUpRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
}

// stepUpError is the words for a step-up window out of range.
var stepUpError = fmt.Sprintf("Enter whole minutes from 1 to %d (a day), or leave it blank for no step-up.", store.MaxStepUpMinutes)

// stepUpVerifyPath is the MFA helper's page where a signed-in user passes
// a factor again; it sends the browser back to next.
const stepUpVerifyPath = "/mfa/verify"

// stepUpPassed checks, before a connect page is rendered, that the web
// session's last MFA check is recent enough for the resource and the
// policies that apply; if not, it sends the browser through the MFA check
// and back here and returns false. The session manager checks again,
// authoritatively, when the page's socket asks for the session.
func (s *Server) stepUpPassed(w http.ResponseWriter, r *http.Request, u store.User, res store.Resource) bool {
	minutes, err := s.live.StepUpMinutes(r.Context(), u, res)
	if err != nil {
		s.serverError(w, r, err)
		return false
	}
	if sessions.StepUpFresh(minutes, s.sessionMFAAt(r), s.Now()) {
		return true
	}
	s.redirectStepUp(w, r)
	return false
}

// redirectStepUp sends the browser to the MFA check, to come back to the
// page it asked for.
func (s *Server) redirectStepUp(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, stepUpVerifyPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

// stepUpByResource returns, for the home page, the step-up minutes a
// connection of u to a resource needs: the resource's, the policies for
// everyone and for u's groups, and those for the resource, in two queries
// whatever the number of resources.
func (s *Server) stepUpByResource(ctx context.Context, u store.User) (func(store.Resource) int, error) {
	// No resource has id 0: this is what applies to u everywhere.
	everywhere, err := s.Store.PoliciesFor(ctx, u.ID, 0)
	if err != nil {
		return nil, fmt.Errorf("policies of %s: %w", u.Name, err)
	}
	all, err := s.Store.ListPolicies(ctx)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	base := 0
	for _, p := range everywhere {
		base = policy.StricterStepUp(base, p.StepUpMinutes)
	}
	byResource := map[int64]int{}
	for _, p := range all {
		if p.Enabled && p.ScopeKind == store.ScopeResource {
			byResource[p.ScopeID] = policy.StricterStepUp(byResource[p.ScopeID], p.StepUpMinutes)
		}
	}
	return func(res store.Resource) int {
		return policy.StricterStepUp(res.Options.StepUpMinutes, policy.StricterStepUp(base, byResource[res.ID]))
	}, nil
}
