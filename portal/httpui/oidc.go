package httpui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/identity/oidc"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// Web session keys of OpenID Connect sign-ins.
const (
	// sessionOIDCPendingKey holds the sign-ins sent to a provider and not
	// yet back (oidc.PendingList): state, nonce and PKCE verifier stay
	// bound to this browser.
	sessionOIDCPendingKey = "oidc_pending"
	// sessionOIDCProviderKey and sessionOIDCTokenKey hold the provider a
	// session signed in through and its ID token, the hint for
	// RP-initiated logout.
	sessionOIDCProviderKey = "oidc_provider"
	sessionOIDCTokenKey    = "oidc_id_token"
)

// maxIDTokenHint bounds the ID token kept in the web session for logout;
// a larger one is not kept (logout then goes without the hint).
const maxIDTokenHint = 8 << 10

// oidcRoutes registers the routes of OpenID Connect — OIDC helper.
func (s *Server) oidcRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
	s.oidc = oidc.NewCache(s.Now, s.ClientTLS)
	admin("GET /admin/identity/oidc/new", s.oidcNewPage)
	admin("POST /admin/identity/oidc", s.oidcCreate)
	admin("GET /admin/identity/oidc/{id}", s.oidcEditPage)
	admin("POST /admin/identity/oidc/{id}", s.oidcUpdate)
	admin("POST /admin/identity/oidc/{id}/test", s.oidcTest)
	admin("GET /admin/identity/oidc/{id}/test/signin", s.oidcTestSignIn)
	mux.HandleFunc("GET /signin/oidc/{name}", s.oidcSignIn)
	mux.HandleFunc("GET /signin/oidc/{name}/callback", s.oidcCallback)
}

// providerSignOutURL is where signing out sends the browser so that the
// identity provider ends its session too (OIDC RP-initiated logout), or ""
// for the portal's own sign-in page. It reads the web session, which is
// still there when it is called.
func (s *Server) providerSignOutURL(r *http.Request) string {
	name := s.Sessions.GetString(r.Context(), sessionOIDCProviderKey)
	// Only while the session is still that provider's sign-in: a later
	// password sign-in in the same browser keeps the session's values.
	method, _, _ := strings.Cut(s.Sessions.GetString(r.Context(), sessionMethodKey), "+")
	if name == "" || method != (SignInMethod{Kind: MethodOIDC, Provider: name}).String() {
		return ""
	}
	p, err := s.Store.IdentityProviderByName(r.Context(), store.KindOIDC, name)
	if err != nil || !p.Enabled {
		return ""
	}
	cfg, err := oidc.ParseConfig(p.Config)
	if err != nil {
		return ""
	}
	// Discovery is normally cached from the sign-in; a provider that is
	// down now leaves the user signed out of Keyway only.
	op, err := s.oidc.Get(r.Context(), p.ID, p.UpdatedAt, cfg)
	if err != nil {
		s.Logger.WarnContext(r.Context(), "OIDC logout: provider not reachable", "provider", name, "err", err)
		return ""
	}
	end := op.Endpoints().EndSession
	if end == "" {
		return ""
	}
	u, err := url.Parse(end)
	if err != nil {
		return ""
	}
	q := u.Query()
	if hint := s.Sessions.GetString(r.Context(), sessionOIDCTokenKey); hint != "" {
		q.Set("id_token_hint", hint)
	}
	q.Set("client_id", cfg.ClientID)
	q.Set("post_logout_redirect_uri", s.portalBase(r)+"/signin")
	u.RawQuery = q.Encode()
	return u.String()
}

// oidcRedirectURI is the callback address a provider must have registered.
func (s *Server) oidcRedirectURI(r *http.Request, name string) string {
	return s.portalBase(r) + "/signin/oidc/" + url.PathEscape(name) + "/callback"
}

// oidcSignIn sends the browser to the provider.
func (s *Server) oidcSignIn(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, err := s.Store.IdentityProviderByName(r.Context(), store.KindOIDC, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.Enabled) {
		s.renderError(w, r, http.StatusNotFound, "There is no single sign-on called "+name+" on this portal, or it is turned off.")
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.oidcBegin(w, r, p, safeNext(r.URL.Query().Get("next")), false)
}

// oidcOP is p's configuration and its discovered provider (cached). When
// there is none it answers the request (500 for a configuration that does
// not parse, the "not reachable" refusal for a provider that does not
// answer) and returns false.
func (s *Server) oidcOP(w http.ResponseWriter, r *http.Request, p store.IdentityProvider) (*oidc.Provider, oidc.Config, bool) {
	cfg, err := oidc.ParseConfig(p.Config)
	if err != nil {
		s.serverError(w, r, fmt.Errorf("provider %s: %w", p.Name, err))
		return nil, cfg, false
	}
	op, err := s.oidc.Get(r.Context(), p.ID, p.UpdatedAt, cfg)
	if err != nil {
		s.oidcRefuse(w, r, p, "", &oidc.Refusal{Reason: oidc.ReasonUnreachable, Err: err})
		return nil, cfg, false
	}
	return op, cfg, true
}

// oidcBegin starts a sign-in (or an admin's test) at provider p.
func (s *Server) oidcBegin(w http.ResponseWriter, r *http.Request, p store.IdentityProvider, next string, test bool) {
	op, _, ok := s.oidcOP(w, r, p)
	if !ok {
		return
	}
	authURL, pend := op.Begin(p.Name, s.oidcRedirectURI(r, p.Name), next, test, s.Now())
	list := oidc.DecodePending(s.Sessions.GetString(r.Context(), sessionOIDCPendingKey))
	s.Sessions.Put(r.Context(), sessionOIDCPendingKey, list.Add(pend, s.Now()).Encode())
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// oidcCallback is where the provider sends the browser back.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	list := oidc.DecodePending(s.Sessions.GetString(r.Context(), sessionOIDCPendingKey))
	pend, rest, ok := list.Take(q.Get("state"), s.Now())
	// The state is spent whatever happens next.
	s.Sessions.Put(r.Context(), sessionOIDCPendingKey, rest.Encode())
	p, err := s.Store.IdentityProviderByName(r.Context(), store.KindOIDC, name)
	if errors.Is(err, store.ErrNotFound) {
		s.renderError(w, r, http.StatusNotFound, "There is no single sign-on called "+name+" on this portal.")
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if !ok || pend.Provider != name {
		s.oidcRefuse(w, r, p, "", &oidc.Refusal{Reason: oidc.ReasonState,
			Err: errors.New("the callback's state matches no sign-in started in this browser")})
		return
	}
	if e := q.Get("error"); e != "" {
		s.oidcRefuse(w, r, p, "", &oidc.Refusal{Reason: oidc.ReasonProviderError,
			Err: fmt.Errorf("%.100s: %.300s", e, q.Get("error_description"))})
		return
	}
	if !p.Enabled && !pend.Test {
		s.renderError(w, r, http.StatusNotFound, "The single sign-on "+name+" is turned off.")
		return
	}
	op, cfg, ok := s.oidcOP(w, r, p)
	if !ok {
		return
	}
	res, err := op.Finish(r.Context(), s.oidcRedirectURI(r, name), pend, q.Get("code"), s.Now())
	if pend.Test {
		s.oidcTestResult(w, r, p, op, res, err)
		return
	}
	var ref *oidc.Refusal
	if errors.As(err, &ref) {
		s.oidcRefuse(w, r, p, res.Identity.Username, ref)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	id := res.Identity
	if err := auth.ValidUsername(id.Username); err != nil {
		s.oidcRefuse(w, r, p, "", &oidc.Refusal{Reason: oidc.ReasonClaims,
			Err: fmt.Errorf("claim %s %q is not a usable Keyway user name: %w", cfg.UsernameClaim, auditName(id.Username), err)})
		return
	}
	u, err := s.provisionUser(r, p, store.ExternalLogin{Subject: id.Subject, Username: id.Username,
		DisplayName: id.DisplayName, Email: id.Email, Groups: id.Groups})
	switch {
	case errors.Is(err, store.ErrNotProvisioned):
		s.oidcDenied(w, r, p, id.Username, "unknown user",
			"There is no Keyway account for "+id.Username+", and "+p.DisplayName+" does not create accounts. Ask an administrator to add you.")
		return
	case errors.Is(err, store.ErrSourceMismatch):
		s.oidcDenied(w, r, p, id.Username, "account signs in another way",
			"A Keyway account named "+id.Username+" exists but does not sign in with "+p.DisplayName+". Sign in the way you usually do, or ask an administrator.")
		return
	case errors.Is(err, store.ErrInvalidUserName):
		s.oidcDenied(w, r, p, auditName(id.Username), "unusable user name",
			"Your sign-in at "+p.DisplayName+" worked, but the user name it gives ("+truncate(id.Username, 64)+") cannot be a Keyway user name: "+
				store.ErrInvalidUserName.Error()+". Ask an administrator to change the user name claim.")
		return
	case errors.Is(err, auth.ErrDisabled):
		s.oidcDenied(w, r, p, u.Name, "account disabled", provisionRefusal(err))
		return
	case err != nil:
		s.serverError(w, r, fmt.Errorf("provision %s from %s: %w", id.Username, p.Name, err))
		return
	}
	s.Sessions.Put(r.Context(), sessionOIDCProviderKey, p.Name)
	if len(res.RawIDToken) <= maxIDTokenHint {
		s.Sessions.Put(r.Context(), sessionOIDCTokenKey, res.RawIDToken)
	} else {
		s.Sessions.Remove(r.Context(), sessionOIDCTokenKey)
	}
	s.finishSignIn(w, r, u, SignInMethod{Kind: MethodOIDC, Provider: p.Name}, pend.Next)
}

// oidcRefuse audits a refused sign-in and tells the user why.
func (s *Server) oidcRefuse(w http.ResponseWriter, r *http.Request, p store.IdentityProvider, user string, ref *oidc.Refusal) {
	actor := user
	if actor == "" || auth.ValidUsername(actor) != nil {
		actor = "(" + p.Source() + ")"
	}
	s.record(r, audit.Event{Actor: actor, Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure, Reason: ref.Reason,
		Details: map[string]string{"method": MethodOIDC, "provider": p.Name, "detail": truncate(ref.Error(), 500)}})
	s.Logger.WarnContext(r.Context(), "OIDC sign-in refused", "provider", p.Name, "reason", ref.Reason, "err", ref.Err)
	v := ui.SSORefusedView{Title: "Sign-in refused"}
	status := http.StatusForbidden
	switch ref.Reason {
	case oidc.ReasonUnreachable:
		status, v.Title, v.BreakGlass = http.StatusBadGateway, p.DisplayName+" is not reachable",
			true
		v.Message = p.DisplayName + " did not answer, so Keyway cannot sign you in with it now. Try again in a few minutes, or tell an administrator."
	case oidc.ReasonState:
		status = http.StatusBadRequest
		v.Title = "Sign-in expired"
		v.Message = "This sign-in was already used, has expired (after 10 minutes) or was started in another browser. Start again from the sign-in page."
	case oidc.ReasonEmailDomain:
		v.Message = "Your e-mail address is not in a domain allowed to sign in to this portal."
	case oidc.ReasonProviderError:
		v.Message = p.DisplayName + " did not sign you in: " + truncate(ref.Err.Error(), 300)
	default:
		v.Message = p.DisplayName + " sent an answer Keyway does not trust (" + ref.Reason + "). Nobody was signed in. If this persists, tell an administrator."
	}
	s.render(w, r, status, ui.SSORefused(s.page(r, v.Title, ""), v))
}

// oidcDenied audits a sign-in the provider vouched for but Keyway refuses.
func (s *Server) oidcDenied(w http.ResponseWriter, r *http.Request, p store.IdentityProvider, user, reason, msg string) {
	s.record(r, audit.Event{Actor: user, Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure, Reason: reason,
		Details: map[string]string{"method": MethodOIDC, "provider": p.Name}})
	v := ui.SSORefusedView{Title: "Sign-in refused", Message: msg}
	s.render(w, r, http.StatusForbidden, ui.SSORefused(s.page(r, v.Title, ""), v))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// Admin pages.

// maxDisplayName bounds a provider's button label.
const maxDisplayName = 64

func (s *Server) oidcNewPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, ui.OIDCForm(s.page(r, "Add OpenID Connect provider", "identity"),
		ui.OIDCFormView{Enabled: true, UsernameClaim: "preferred_username", GroupsClaim: "groups", Scopes: "profile email groups"}))
}

func (s *Server) oidcEditPage(w http.ResponseWriter, r *http.Request) {
	p, ok := s.providerOr404(w, r, store.KindOIDC)
	if !ok {
		return
	}
	cfg, err := oidc.ParseConfig(p.Config)
	if err != nil {
		s.serverError(w, r, fmt.Errorf("provider %s: %w", p.Name, err))
		return
	}
	s.render(w, r, http.StatusOK, ui.OIDCForm(s.page(r, "OpenID Connect provider "+p.Name, "identity"), s.oidcFormView(r, p, cfg)))
}

func (s *Server) oidcFormView(r *http.Request, p store.IdentityProvider, c oidc.Config) ui.OIDCFormView {
	v := ui.OIDCFormView{ID: p.ID, Name: p.Name, DisplayName: p.DisplayName, Enabled: p.Enabled, IssuerURL: c.IssuerURL,
		ClientID: c.ClientID, HasSecret: c.ClientSecret != "", Scopes: strings.Join(c.Scopes, " "), UsernameClaim: c.UsernameClaim,
		GroupsClaim: c.GroupsClaim, AllowedEmailDomains: strings.Join(c.AllowedEmailDomains, "\n"), CABundle: c.CABundle}
	if store.ValidProviderName(p.Name) == nil {
		v.RedirectURI, v.SignOutURI = s.oidcRedirectURI(r, p.Name), s.portalBase(r)+"/signin"
	}
	return v
}

// oidcForm reads the provider form; keep is the secret kept so far (a
// blank field keeps it).
func (s *Server) oidcForm(r *http.Request, p store.IdentityProvider, keep string) (store.IdentityProvider, oidc.Config, ui.Errors) {
	f := r.PostForm
	errs := ui.Errors{}
	p.Kind = store.KindOIDC
	p.Name = strings.TrimSpace(f.Get("name"))
	p.DisplayName = strings.TrimSpace(f.Get("display_name"))
	p.Enabled = f.Get("enabled") != ""
	c := oidc.Config{
		IssuerURL:     strings.TrimSpace(f.Get("issuer_url")),
		ClientID:      strings.TrimSpace(f.Get("client_id")),
		ClientSecret:  f.Get("client_secret"),
		Scopes:        strings.Fields(f.Get("scopes")),
		UsernameClaim: strings.TrimSpace(f.Get("username_claim")),
		GroupsClaim:   strings.TrimSpace(f.Get("groups_claim")),
		CABundle:      strings.TrimSpace(f.Get("ca_bundle")),
	}
	if c.ClientSecret == "" {
		c.ClientSecret = keep
	}
	for _, d := range strings.FieldsFunc(f.Get("allowed_email_domains"), func(r rune) bool { return r == '\n' || r == ',' || r == ' ' || r == '\r' }) {
		c.AllowedEmailDomains = append(c.AllowedEmailDomains, d)
	}
	if err := store.ValidProviderName(p.Name); err != nil {
		errs["name"] = capitalize(err.Error()) + "."
	}
	if p.DisplayName == "" || len(p.DisplayName) > maxDisplayName || !printable(p.DisplayName) {
		errs["display_name"] = fmt.Sprintf("Enter the label of the sign-in button, at most %d characters.", maxDisplayName)
	}
	// Parse the JSON the store keeps, so that the defaults and checks are
	// exactly those a sign-in applies.
	parsed, err := oidc.ParseConfig(c.Marshal())
	var fe *oidc.FieldError
	switch {
	case errors.As(err, &fe):
		errs[fe.Field] = capitalize(fe.Msg) + "."
	case err != nil:
		errs["issuer_url"] = err.Error()
	}
	if err == nil {
		p.Config = parsed.Marshal()
	}
	return p, parsed, errs
}

func (s *Server) oidcCreate(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	p, cfg, errs := s.oidcForm(r, store.IdentityProvider{JITRole: store.RoleUser}, "")
	if len(errs) > 0 {
		v := s.oidcFormView(r, p, cfg)
		v.Errors = errs
		s.render(w, r, http.StatusUnprocessableEntity, ui.OIDCForm(s.page(r, "Add OpenID Connect provider", "identity"), v))
		return
	}
	p, err := s.Store.CreateIdentityProvider(r.Context(), p)
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		v := s.oidcFormView(r, p, cfg)
		v.Errors = ui.Errors{"name": capitalize(ce.Error()) + "."}
		s.render(w, r, http.StatusUnprocessableEntity, ui.OIDCForm(s.page(r, "Add OpenID Connect provider", "identity"), v))
		return
	}
	if err != nil {
		s.serverError(w, r, fmt.Errorf("create provider %s: %w", p.Name, err))
		return
	}
	s.providerSaved(w, r, p, true, nil,
		"Provider "+p.Name+" added. Register "+s.oidcRedirectURI(r, p.Name)+" as its redirect URI, then choose who may sign in.")
}

func (s *Server) oidcUpdate(w http.ResponseWriter, r *http.Request) {
	old, ok := s.providerOr404(w, r, store.KindOIDC)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	oldCfg, _ := oidc.ParseConfig(old.Config)
	p, cfg, errs := s.oidcForm(r, old, oldCfg.ClientSecret)
	if len(errs) > 0 {
		v := s.oidcFormView(r, p, cfg)
		v.Errors = errs
		s.render(w, r, http.StatusUnprocessableEntity, ui.OIDCForm(s.page(r, "OpenID Connect provider "+old.Name, "identity"), v))
		return
	}
	err := s.Store.UpdateIdentityProvider(r.Context(), p)
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		v := s.oidcFormView(r, p, cfg)
		v.Errors = ui.Errors{"name": capitalize(ce.Error()) + "."}
		s.render(w, r, http.StatusUnprocessableEntity, ui.OIDCForm(s.page(r, "OpenID Connect provider "+old.Name, "identity"), v))
		return
	}
	if err != nil {
		s.actionError(w, r, err, fmt.Sprintf("/admin/identity/oidc/%d", p.ID))
		return
	}
	s.providerSaved(w, r, p, false, nil, "Provider "+p.Name+" saved.")
}

// oidcTest discovers the provider afresh and shows what it found.
func (s *Server) oidcTest(w http.ResponseWriter, r *http.Request) {
	p, ok := s.providerOr404(w, r, store.KindOIDC)
	if !ok {
		return
	}
	v := ui.OIDCTestView{ID: p.ID, Name: p.Name}
	u, _ := currentUser(r)
	ev := audit.Event{Actor: u.Name, Action: audit.ActionIdPTest, Target: p.Source(), Outcome: audit.OutcomeSuccess}
	cfg, err := oidc.ParseConfig(p.Config)
	if err == nil {
		var op *oidc.Provider
		cfg.TLS = s.ClientTLS
		if op, err = oidc.Discover(r.Context(), cfg); err == nil {
			v.Endpoints = endpointFields(op.Endpoints())
		}
	}
	if err != nil {
		v.Error = "Discovery failed: " + truncate(err.Error(), 500)
		ev.Outcome, ev.Reason = audit.OutcomeFailure, truncate(err.Error(), 500)
	}
	s.record(r, ev)
	s.render(w, r, http.StatusOK, ui.OIDCTest(s.page(r, "Test of "+p.Name, "identity"), v))
}

func endpointFields(e oidc.Endpoints) []ui.Field {
	return []ui.Field{{Label: "Issuer", Value: e.Issuer}, {Label: "Authorization", Value: e.Authorization}, {Label: "Token", Value: e.Token},
		{Label: "User info", Value: orNone(e.UserInfo)}, {Label: "Keys (JWKS)", Value: e.JWKS}, {Label: "End session (logout)", Value: orNone(e.EndSession)},
		{Label: "Signing algorithms", Value: orNone(strings.Join(e.Algorithms, ", "))}, {Label: "PKCE methods", Value: orNone(strings.Join(e.CodeChallengeMethods, ", "))}}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// oidcTestSignIn starts a test sign-in for the admin: the callback shows
// the ID token's claims and signs nobody in.
func (s *Server) oidcTestSignIn(w http.ResponseWriter, r *http.Request) {
	p, ok := s.providerOr404(w, r, store.KindOIDC)
	if !ok {
		return
	}
	s.oidcBegin(w, r, p, "/", true)
}

// oidcTestResult shows an admin the claims of a test sign-in.
func (s *Server) oidcTestResult(w http.ResponseWriter, r *http.Request, p store.IdentityProvider, op *oidc.Provider, res oidc.Result, err error) {
	u, ok := currentUser(r)
	if !ok || u.Role != store.RoleAdmin {
		// The test was started by an admin in this browser; whoever is
		// here now is not one.
		s.renderError(w, r, http.StatusForbidden, "Only an administrator sees a test sign-in's claims.")
		return
	}
	v := ui.OIDCTestView{ID: p.ID, Name: p.Name, Endpoints: endpointFields(op.Endpoints())}
	ev := audit.Event{Actor: u.Name, Action: audit.ActionIdPTest, Target: p.Source(), Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"step": "sample token"}}
	if err != nil {
		v.Error = "The test sign-in was refused: " + truncate(err.Error(), 500)
		ev.Outcome, ev.Reason = audit.OutcomeFailure, truncate(err.Error(), 500)
	}
	for _, c := range oidc.ShowClaims(res.Claims) {
		v.Claims = append(v.Claims, ui.Field{Label: c.Name, Value: c.Value})
	}
	if err == nil {
		id := res.Identity
		v.Identity = []ui.Field{{Label: "Subject", Value: id.Subject}, {Label: "User name", Value: id.Username}, {Label: "Display name", Value: orNone(id.DisplayName)},
			{Label: "E-mail", Value: orNone(id.Email)}, {Label: "Groups", Value: orNone(strings.Join(id.Groups, ", "))}}
	}
	s.record(r, ev)
	s.render(w, r, http.StatusOK, ui.OIDCTest(s.page(r, "Test of "+p.Name, "identity"), v))
}
