package httpui

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

func address(r store.Resource) string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// resourceAddress is where a resource is, as lists show it: a network
// resource's rules on one line.
func resourceAddress(r store.Resource) string {
	if r.Protocol == store.ProtocolNetwork {
		return strings.ReplaceAll(r.Options.Networks, "\n", "; ")
	}
	return address(r)
}

func (s *Server) terminalPage(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	res, ok := s.grantedResource(w, r, u)
	if !ok {
		return
	}
	if !s.stepUpPassed(w, r, u, res) {
		return
	}
	if res.Protocol == "vnc" || res.Protocol == "rdp" {
		s.render(w, r, http.StatusOK, ui.Desktop(s.page(r, res.Name, ""), ui.DesktopView{
			ResourceName: res.Name, Address: address(res), WSPath: fmt.Sprintf("/connect/%d/guac", res.ID),
			ClipboardMax: wire.MaxClipboard,
		}))
		return
	}
	v := ui.TerminalView{ResourceName: res.Name, Address: address(res), WSPath: fmt.Sprintf("/connect/%d/ws", res.ID)}
	access, err := s.Store.AccessTo(r.Context(), u.ID, res.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if access.Files {
		v.FilesHref = fmt.Sprintf("/files/%d", res.ID)
	}
	s.render(w, r, http.StatusOK, ui.Terminal(s.page(r, res.Name, ""), v))
}

func (s *Server) accountView(r *http.Request, u store.User) (ui.AccountView, error) {
	v := ui.AccountView{Name: u.Name, DisplayName: u.DisplayName, Role: string(u.Role), Groups: u.Groups}
	ts, err := s.Store.ListTokens(r.Context(), u.ID)
	if err != nil {
		return v, err
	}
	now := s.Now()
	for _, t := range ts {
		v.Tokens = append(v.Tokens, ui.TokenRow{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
			LastUsedAt: t.LastUsedAt, Revoked: t.Revoked, Expired: !now.Before(t.ExpiresAt)})
	}
	if v.Devices, err = s.deviceRows(r.Context(), u.ID, false); err != nil {
		return v, err
	}
	v.Client = s.nativeClientView(r)
	return v, nil
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, status int, edit func(*ui.AccountView)) {
	u, _ := currentUser(r)
	v, err := s.accountView(r, u)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if edit != nil {
		edit(&v)
	}
	s.render(w, r, status, ui.Account(s.page(r, "Account", "account"), v))
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	s.renderAccount(w, r, http.StatusOK, nil)
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	fail := func(errs ui.Errors) {
		s.renderAccount(w, r, http.StatusUnprocessableEntity, func(v *ui.AccountView) { v.Errors = errs })
	}
	if _, err := s.Auth.SignIn(r.Context(), u.Name, r.PostForm.Get("current_password"), s.ClientInfo.Addr(r)); err != nil {
		var rl *auth.RateLimitedError
		if errors.As(err, &rl) {
			fail(ui.Errors{"current_password": capitalize(rl.Error()) + "."})
			return
		}
		if errors.Is(err, auth.ErrBusy) {
			w.Header().Set("Retry-After", strconv.Itoa(int(auth.BusyRetryAfter/time.Second)))
			s.renderAccount(w, r, http.StatusServiceUnavailable, func(v *ui.AccountView) {
				v.Errors = ui.Errors{"current_password": "The portal is busy checking other sign-ins. Try again in a few seconds."}
			})
			return
		}
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionPasswordChange, Target: u.Name, Outcome: audit.OutcomeFailure, Reason: "wrong current password"})
		fail(ui.Errors{"current_password": "This is not your current password."})
		return
	}
	pw := r.PostForm.Get("new_password")
	if err := auth.ValidatePassword(pw); err != nil {
		fail(ui.Errors{"new_password": capitalize(err.Error()) + "."})
		return
	}
	if pw != r.PostForm.Get("new_password2") {
		fail(ui.Errors{"new_password2": "The two passwords differ."})
		return
	}
	hash, err := auth.HashPassword(pw)
	if err == nil {
		err = s.Store.SetPasswordHash(r.Context(), u.ID, hash)
	}
	if err == nil {
		// A new session token after a password change, as at sign-in; this
		// sign-in moves to the new epoch, and every other one of the user's
		// (and the sessions opened from them) ends.
		err = s.Sessions.RenewToken(r.Context())
	}
	if err == nil {
		u, err = s.Store.UserByID(r.Context(), u.ID)
	}
	if err == nil {
		s.Sessions.Put(r.Context(), sessionEpochKey, u.SessionEpoch)
		s.kickGuard()
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionPasswordChange, Target: u.Name, Outcome: audit.OutcomeSuccess})
	s.setFlash(r, "success", "Your password was changed.")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// allowedTokenDays are the lifetimes offered for API tokens.
var allowedTokenDays = map[string]int{"1": 1, "7": 7, "30": 30, "90": 90, "365": 365}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	days, ok := allowedTokenDays[r.PostForm.Get("expires_days")]
	if name == "" || len(name) > 64 || !ok {
		s.renderAccount(w, r, http.StatusUnprocessableEntity, func(v *ui.AccountView) {
			v.Errors = ui.Errors{"name": "Name the token (up to 64 characters) and choose when it expires."}
		})
		return
	}
	// A token outlives the web session, so whoever holds the browser must
	// show they know the password, as for a password change.
	if _, err := s.Auth.SignIn(r.Context(), u.Name, r.PostForm.Get("password"), s.ClientInfo.Addr(r)); err != nil {
		msg := "This is not your password."
		var rl *auth.RateLimitedError
		if errors.As(err, &rl) {
			msg = capitalize(rl.Error()) + "."
		}
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionTokenCreate, Target: name, Outcome: audit.OutcomeFailure, Reason: "wrong password"})
		s.renderAccount(w, r, http.StatusUnprocessableEntity, func(v *ui.AccountView) { v.Errors = ui.Errors{"password": msg} })
		return
	}
	plain, t, err := s.Store.CreateToken(r.Context(), u.ID, name, time.Duration(days)*24*time.Hour)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionTokenCreate, Target: t.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"expires": t.ExpiresAt.Format(time.RFC3339)}})
	// The token is rendered directly, never stored in the session, so it is
	// shown exactly once.
	s.renderAccount(w, r, http.StatusOK, func(v *ui.AccountView) { v.NewToken, v.NewTokenName = plain, t.Name })
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = s.Store.RevokeToken(r.Context(), u.ID, id)
	}
	if err != nil {
		s.actionError(w, r, err, "/account")
		return
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionTokenRevoke, Target: strconv.FormatInt(id, 10), Outcome: audit.OutcomeSuccess})
	s.setFlash(r, "success", "The token was revoked.")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}
