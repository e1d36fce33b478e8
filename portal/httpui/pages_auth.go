package httpui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// maxNext bounds the post-sign-in path carried through the sign-in form.
const maxNext = 2048

// safeNext keeps a post-sign-in redirect on this site: a path, never a URL
// to somewhere else.
func safeNext(next string) string {
	if !localPath(next) {
		return "/"
	}
	return next
}

// localPath reports whether p is a path on this site, as written and once
// percent-decoded: a single leading slash, no backslash (browsers read it
// as a slash) and no control character (browsers drop tabs and newlines,
// so "/\t/evil.example" becomes "//evil.example").
func localPath(p string) bool {
	if len(p) > maxNext {
		return false
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		return false
	}
	for _, s := range []string{p, dec} {
		if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.Contains(s, `\`) ||
			strings.ContainsFunc(s, unicode.IsControl) || !utf8.ValidString(s) {
			return false
		}
	}
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Opaque == ""
}

// auditName is a name typed at sign-in as the audit log keeps it: one
// that no account can have is kept as a placeholder with its length.
func auditName(name string) string {
	if auth.ValidUsername(name) != nil {
		return fmt.Sprintf("(invalid username, %d bytes)", len(name))
	}
	return name
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := currentUser(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	// A sign-in waiting for its second factor goes back to it (it can be
	// cancelled there).
	if to := s.pendingRedirect(r); to != "" {
		http.Redirect(w, r, to, http.StatusSeeOther)
		return
	}
	n, err := s.Store.CountUsers(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	next := safeNext(r.URL.Query().Get("next"))
	s.render(w, r, http.StatusOK, ui.SignIn(s.page(r, "Sign in", ""), ui.SignInView{Next: next, FirstRun: n == 0, Providers: s.signInProviders(r, next)}))
}

// signInProviders are the single sign-on buttons of the enabled OIDC and
// SAML providers. A failure to list them is logged, and the page still
// offers the password form: the break-glass admin must get in.
func (s *Server) signInProviders(r *http.Request, next string) []ui.SignInProvider {
	ps, err := s.Store.ListIdentityProviders(r.Context(), "")
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "list identity providers for the sign-in page", "err", err)
		return nil
	}
	var out []ui.SignInProvider
	for _, p := range ps {
		if !p.Enabled || (p.Kind != store.KindOIDC && p.Kind != store.KindSAML) {
			continue
		}
		u := "/signin/" + p.Kind + "/" + url.PathEscape(p.Name)
		if next != "/" {
			u += "?next=" + url.QueryEscape(next)
		}
		out = append(out, ui.SignInProvider{Label: p.DisplayName, URL: u})
	}
	return out
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	name, password, next := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password"), r.PostForm.Get("next")
	res, err := s.Auth.SignInPassword(r.Context(), name, password, s.ClientInfo.Addr(r))
	if err != nil {
		msg := "Wrong username or password."
		status := http.StatusUnauthorized
		reason := err.Error()
		var rl *auth.RateLimitedError
		var de *auth.DirectoryError
		switch {
		case errors.As(err, &de):
			msg, reason = capitalize(de.Error())+".", de.Reason()
			status = http.StatusServiceUnavailable
		case errors.Is(err, auth.ErrNoAccount):
			msg = "No Keyway account is set up for you yet. Ask an administrator."
			status = http.StatusForbidden
		case errors.As(err, &rl):
			msg = "Too many failed sign-ins. " + capitalize(rl.Error()) + "."
			status = http.StatusTooManyRequests
			w.Header().Set("Retry-After", strconv.Itoa(int(max(rl.RetryAfter.Round(time.Second), time.Second)/time.Second)))
		case errors.Is(err, auth.ErrBusy):
			msg = "The portal is busy checking other sign-ins. Try again in a few seconds."
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", strconv.Itoa(int(auth.BusyRetryAfter/time.Second)))
		case errors.Is(err, auth.ErrInvalidUsername):
			msg = capitalize(err.Error()) + "."
		case errors.Is(err, auth.ErrDisabled):
			msg = "This account is disabled. Ask an administrator."
			status = http.StatusForbidden
		case errors.Is(err, auth.ErrInvalidCredentials):
			msg += s.localPasswordsOffHint(r.Context())
		case r.Context().Err() != nil:
			return // the client left while waiting
		default:
			s.serverError(w, r, err)
			return
		}
		s.record(r, audit.Event{Actor: auditName(name), Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure, Reason: reason})
		if auth.ValidUsername(name) != nil {
			name = ""
		}
		s.render(w, r, status, ui.SignIn(s.page(r, "Sign in", ""), ui.SignInView{Next: safeNext(next), Username: name, Error: msg, Providers: s.signInProviders(r, safeNext(next))}))
		return
	}
	if res.Directory == "" {
		s.finishSignIn(w, r, res.User, SignInMethod{Kind: MethodPassword}, next)
		return
	}
	if res.Provision != nil {
		s.recordProvision(r, store.ProviderSource(store.KindLDAP, res.Directory), *res.Provision)
	}
	s.finishSignIn(w, r, res.User, SignInMethod{Kind: MethodLDAP, Provider: res.Directory}, next)
}

// startSession signs u in with a fresh session token, so a token planted
// before sign-in is worthless after it.
func (s *Server) startSession(r *http.Request, u store.User) error {
	if err := s.Sessions.RenewToken(r.Context()); err != nil {
		return err
	}
	s.Sessions.Put(r.Context(), sessionUserKey, u.ID)
	s.Sessions.Put(r.Context(), sessionEpochKey, u.SessionEpoch)
	// An MFA check and sign-in method belong to the sign-in that made
	// them: someone signing in over another user's session in the same
	// browser must not inherit their step-up. The caller sets its own.
	s.Sessions.Remove(r.Context(), sessionMFAAtKey)
	s.Sessions.Remove(r.Context(), sessionMethodKey)
	return nil
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if u, ok := currentUser(r); ok {
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionSignOut, Outcome: audit.OutcomeSuccess})
	}
	token := s.Sessions.Token(r.Context())
	// Read before the session is gone: where the identity provider signs
	// the user out too (OIDC RP-initiated logout), if it does.
	dest := s.providerSignOutURL(r)
	if err := s.Sessions.Destroy(r.Context()); err != nil {
		s.serverError(w, r, err)
		return
	}
	// Sessions opened from this sign-in end with it.
	s.endSignedOut(token)
	if dest == "" {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	// The provider is another site: the CSP's form-action forbids
	// redirecting this form POST there, so a page navigates on.
	s.render(w, r, http.StatusOK, ui.SignOutRedirect(ui.SignOutRedirectView{URL: dest}))
}

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	ok, err := s.setupAllowed(r.Context(), r.PathValue("token"))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if !ok {
		s.renderError(w, r, http.StatusNotFound, "This setup link is not valid any more. The first admin may already exist; otherwise restart the portal for a new link.")
		return
	}
	s.render(w, r, http.StatusOK, ui.Setup(s.page(r, "Set up", ""), ui.SetupView{Token: r.PathValue("token")}))
}

func (s *Server) setup(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	ok, err := s.setupAllowed(r.Context(), token)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if !ok {
		s.renderError(w, r, http.StatusNotFound, "This setup link is not valid any more.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.SetupView{Token: token, Username: r.PostForm.Get("username"), DisplayName: r.PostForm.Get("display_name")}
	in := userInput{Name: v.Username, DisplayName: v.DisplayName, Role: string(store.RoleAdmin), Password: r.PostForm.Get("password")}
	if in.Password != r.PostForm.Get("password2") {
		v.Errors = ui.Errors{"password2": "The two passwords differ."}
		s.render(w, r, http.StatusUnprocessableEntity, ui.Setup(s.page(r, "Set up", ""), v))
		return
	}
	u, err := s.createUser(r, store.User{Name: "setup"}, in)
	if err != nil {
		if v.Errors = asFieldErrors(err); v.Errors == nil {
			s.serverError(w, r, err)
			return
		}
		s.render(w, r, http.StatusUnprocessableEntity, ui.Setup(s.page(r, "Set up", ""), v))
		return
	}
	if err := s.Store.SetSetting(r.Context(), setupTokenSetting, ""); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionSetup, Target: u.Name, Outcome: audit.OutcomeSuccess})
	if err := s.startSession(r, u); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.setFlash(r, "success", "Welcome! You are the first admin. Next: create a resource and grant it to users.")
	http.Redirect(w, r, "/admin/resources/new", http.StatusSeeOther)
}
