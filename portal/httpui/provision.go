package httpui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
)

// provisionUser finds or creates the Keyway user of a sign-in through p
// (store.ProvisionChanges) and audits what it changed (recordProvision). A
// disabled user is auth.ErrDisabled. The OIDC and SAML sign-ins call it
// once the provider has vouched for in, then finishSignIn; LDAP provisions
// inside auth.SignInPassword (under the sign-in limiter) and audits with
// recordProvision.
func (s *Server) provisionUser(r *http.Request, p store.IdentityProvider, in store.ExternalLogin) (store.User, error) {
	res, err := s.Store.ProvisionChanges(r.Context(), p, in)
	if err != nil {
		return store.User{}, err
	}
	s.recordProvision(r, p.Source(), res)
	if res.User.Disabled {
		return res.User, auth.ErrDisabled
	}
	return res.User, nil
}

// recordProvision audits what provisioning through the provider of source
// (store.ProviderSource) did: a user created, or whose mapped groups
// changed, is a user.provision event; nothing changed, nothing is audited.
func (s *Server) recordProvision(r *http.Request, source string, res store.ProvisionResult) {
	if !res.Created && len(res.Added) == 0 && len(res.Removed) == 0 {
		return
	}
	u := res.User
	d := map[string]string{"provider": source}
	if res.Created {
		d["created"], d["role"] = "true", string(u.Role)
	}
	if len(res.Added) > 0 {
		d["added"] = strings.Join(res.Added, ",")
	}
	if len(res.Removed) > 0 {
		d["removed"] = strings.Join(res.Removed, ",")
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionUserProvision, Target: u.Name, Outcome: audit.OutcomeSuccess, Details: d})
}

// provisionRefusal says in words why provisionUser refused a sign-in, for
// the page the user sees ("" for errors that are the portal's fault).
func provisionRefusal(err error) string {
	switch {
	case errors.Is(err, store.ErrNotProvisioned):
		return "Your sign-in worked, but no Keyway account is set up for you. Ask an administrator to create one."
	case errors.Is(err, store.ErrSourceMismatch):
		return "Your sign-in worked, but the Keyway account with your name signs in another way. Ask an administrator."
	case errors.Is(err, store.ErrInvalidUserName):
		return "Your sign-in worked, but the user name your provider gives cannot be a Keyway user name (letters, digits, '.', '_', '-' or '@'). Ask an administrator."
	case errors.Is(err, auth.ErrDisabled):
		return "This account is disabled. Ask an administrator."
	}
	return ""
}
