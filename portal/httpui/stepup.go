package httpui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"

	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// stepUpRoutes registers the routes of step-up per session — step-up helper.
func (s *Server) stepUpRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
	signedIn("GET /device/{id}/stepup", s.deviceStepUpPage)
	signedIn("POST /device/{id}/stepup", s.deviceStepUp)
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

// defaultDeviceStepUp is the window a device's step-up page asks for when
// its address names none (someone opened it by hand).
const defaultDeviceStepUp = 5

// deviceStepUpPath is the page where a native client's user passes a
// step-up check for the device, within minutes.
func deviceStepUpPath(deviceID int64, within int) string {
	return fmt.Sprintf("/device/%d/stepup?within=%d", deviceID, within)
}

// writeStepUpRefusal answers a native client refused for step-up: the
// code, the words, and for a device the page where its user passes the
// check. An API token has no device to stamp: it cannot pass one.
func (s *Server) writeStepUpRefusal(w http.ResponseWriter, r *http.Request, device sessions.Device, ref *sessions.Refusal) {
	w.Header().Set("Cache-Control", "no-store")
	if device.ID == 0 {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": ref.Code,
			"message": ref.Message + " An API token cannot pass one: sign this computer in with keyway login and connect as the device."})
		return
	}
	within, err := strconv.Atoi(ref.Details["step_up_minutes"])
	if err != nil || within < 1 || within > store.MaxStepUpMinutes {
		within = defaultDeviceStepUp
	}
	writeJSON(w, http.StatusForbidden, map[string]string{"error": ref.Code, "message": ref.Message,
		"url": s.portalBase(r) + deviceStepUpPath(device.ID, within)})
}

// ownDevice is the signed-in user's device at {id}: 404 for another
// user's or none (ids cannot be probed), 410 for a revoked one.
func (s *Server) ownDevice(w http.ResponseWriter, r *http.Request, u store.User) (store.Device, bool) {
	id, err := pathID(r)
	var d store.Device
	if err == nil {
		d, err = s.Store.DeviceByID(r.Context(), id)
	}
	switch {
	case err == nil && d.UserID == u.ID && !d.Revoked():
		return d, true
	case err == nil && d.UserID == u.ID:
		s.renderError(w, r, http.StatusGone, "This device was revoked: sign it in again with keyway login.")
	case err == nil, errors.Is(err, store.ErrNotFound):
		s.renderError(w, r, http.StatusNotFound, "There is no such device, or it is not yours.")
	default:
		s.serverError(w, r, err)
	}
	return store.Device{}, false
}

// stepUpWithin reads the window a device's step-up page asks for.
func stepUpWithin(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxStepUpMinutes {
		return defaultDeviceStepUp
	}
	return n
}

// deviceStepUpPage shows, once the web session has passed an MFA check
// within the window asked for (it is sent through /mfa/verify first), the
// device and a button that gives it that check.
func (s *Server) deviceStepUpPage(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	d, ok := s.ownDevice(w, r, u)
	if !ok {
		return
	}
	within := stepUpWithin(r.URL.Query().Get("within"))
	at := s.sessionMFAAt(r)
	if !sessions.StepUpFresh(within, at, s.Now()) {
		http.Redirect(w, r, stepUpVerifyPath+"?next="+url.QueryEscape(deviceStepUpPath(d.ID, within)), http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, ui.DeviceStepUp(s.page(r, "MFA check for a device", "account"), ui.DeviceStepUpView{
		ID: d.ID, Name: d.Name, System: d.OS + "/" + d.Arch, Fingerprint: keyFingerprint(d.PublicKey), Within: within, MFAAt: at}))
}

// deviceStepUp gives the device the web session's last MFA check (not
// now: the device's check is as old as the one it copies), audited as
// device.stepup. A check older than the window asked for goes through
// /mfa/verify first.
func (s *Server) deviceStepUp(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	d, ok := s.ownDevice(w, r, u)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The form could not be read; go back and try again.")
		return
	}
	within := stepUpWithin(r.PostForm.Get("within"))
	at := s.sessionMFAAt(r)
	if !sessions.StepUpFresh(within, at, s.Now()) {
		http.Redirect(w, r, stepUpVerifyPath+"?next="+url.QueryEscape(deviceStepUpPath(d.ID, within)), http.StatusSeeOther)
		return
	}
	if err := s.Store.SetDeviceMFA(r.Context(), d.ID, at); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionDeviceStepUp, Target: deviceTarget(d), Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"mfa_at": at.UTC().Format(time.RFC3339), "within_minutes": strconv.Itoa(within),
			"fingerprint": keyFingerprint(d.PublicKey)}})
	s.done(w, r, fmt.Sprintf("%s has your MFA check now: run the keyway command again.", d.Name), "/account#devices")
}

// copyMFAToDevice gives a device approved from this web session the
// session's last MFA check, if any, so that step-up resources do not ask
// again at once. A failure is logged: the device is approved all the same
// and its user can pass a step-up check later.
func (s *Server) copyMFAToDevice(r *http.Request, d store.Device) {
	at := s.sessionMFAAt(r)
	if at.IsZero() {
		return
	}
	if err := s.Store.SetDeviceMFA(r.Context(), d.ID, at); err != nil {
		s.Logger.LogAttrs(r.Context(), slog.LevelWarn, "copy MFA check to approved device", slog.Int64("device", d.ID), slog.Any("err", err))
	}
}
