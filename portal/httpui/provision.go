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
// (store.ProvisionChanges) and audits what it changed: a user created, or
// whose mapped groups changed, is a user.provision event. A disabled user
// is auth.ErrDisabled. The OIDC, SAML and LDAP sign-ins call it once the
// provider has vouched for in, then finishSignIn.
func (s *Server) provisionUser(r *http.Request, p store.IdentityProvider, in store.ExternalLogin) (store.User, error) {
	res, err := s.Store.ProvisionChanges(r.Context(), p, in)
	if err != nil {
		return store.User{}, err
	}
	u := res.User
	if res.Created || len(res.Added) > 0 || len(res.Removed) > 0 {
		d := map[string]string{"provider": p.Source()}
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
	if u.Disabled {
		return u, auth.ErrDisabled
	}
	return u, nil
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
