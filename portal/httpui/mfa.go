package httpui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/identity/mfa"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// MFA limits.
const (
	// pendingMFATimeout is how long a password stays good for its second
	// factor (or enrolment) before the user must start again.
	pendingMFATimeout = 5 * time.Minute
	// freshMFA is how recent an MFA check must be to remove a factor or
	// make new recovery codes without typing the password.
	freshMFA = 5 * time.Minute
	// maxFactorName bounds a factor's name.
	maxFactorName = 64
	// maxTOTPSecret bounds the enrolment secret a form carries back
	// (base32 of 20 bytes is 32 characters).
	maxTOTPSecret = 64
	// maxFactors bounds the factors one user may have.
	maxFactors = 20
)

// Web session keys of a sign-in waiting for its second factor or
// enrolment, and of a begun WebAuthn ceremony. sessionUserKey is not set
// while a sign-in waits: the user is not signed in.
const (
	pendingUserKey     = "mfa_pending_user"
	pendingEpochKey    = "mfa_pending_epoch"
	pendingAtKey       = "mfa_pending_at"
	pendingKindKey     = "mfa_pending_kind"
	pendingProviderKey = "mfa_pending_provider"
	pendingNextKey     = "mfa_pending_next"
	pendingEnrolKey    = "mfa_pending_enrol"
	ceremonyKey        = "mfa_ceremony"
)

// Purposes of an MFA check, as mfa.verify events record them.
const (
	purposeSignIn = "signin"
	purposeStepUp = "step-up"
)

// mfaState is the MFA part of the Server: wrong codes per user, and the
// WebAuthn relying party (made once from the portal URL).
type mfaState struct {
	// fails counts wrong second factors per user id, like wrong passwords
	// per name: 5 in 15 minutes lock the user's second factor.
	fails *auth.Limiter

	waOnce sync.Once
	wa     *mfa.WebAuthn
	waErr  error
}

func (s *Server) webAuthn() (*mfa.WebAuthn, error) {
	s.mfa.waOnce.Do(func() {
		if s.PortalURL == "" {
			s.mfa.waErr = errors.New("passkeys need the portal's public URL to be set")
			return
		}
		s.mfa.wa, s.mfa.waErr = mfa.NewWebAuthn(s.PortalURL, "Keyway")
	})
	return s.mfa.wa, s.mfa.waErr
}

// mfaRoutes registers the routes of MFA: second factor, enrolment, verify — MFA helper.
func (s *Server) mfaRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
	s.mfa = &mfaState{fails: auth.NewLimiter(s.Now)}

	// A sign-in waiting for its second factor: public routes, the pending
	// state in the web session says who.
	mux.HandleFunc("GET /signin/mfa", s.signInMFAPage)
	mux.HandleFunc("POST /signin/mfa", s.signInMFACode)
	mux.HandleFunc("POST /signin/mfa/webauthn/begin", s.signInWebAuthnBegin)
	mux.HandleFunc("POST /signin/mfa/webauthn/finish", s.signInWebAuthnFinish)
	mux.HandleFunc("POST /signin/mfa/cancel", s.signInMFACancel)
	mux.HandleFunc("GET /signin/enrol", s.signInEnrolPage)
	mux.HandleFunc("POST /signin/enrol/totp", s.signInEnrolTOTP)
	mux.HandleFunc("POST /signin/enrol/webauthn/begin", s.signInEnrolWebAuthnBegin)
	mux.HandleFunc("POST /signin/enrol/webauthn/finish", s.signInEnrolWebAuthnFinish)

	signedIn("GET /account/mfa", s.accountMFAPage)
	signedIn("GET /account/mfa/totp", s.accountTOTPPage)
	signedIn("POST /account/mfa/totp", s.accountTOTP)
	signedIn("POST /account/mfa/webauthn/begin", s.accountWebAuthnBegin)
	signedIn("POST /account/mfa/webauthn/finish", s.accountWebAuthnFinish)
	signedIn("POST /account/mfa/recovery", s.accountRecoveryCodes)
	signedIn("POST /account/mfa/{id}/delete", s.accountRemoveFactor)

	signedIn("GET /mfa/verify", s.verifyPage)
	signedIn("POST /mfa/verify", s.verifyCode)
	signedIn("POST /mfa/verify/webauthn/begin", s.verifyWebAuthnBegin)
	signedIn("POST /mfa/verify/webauthn/finish", s.verifyWebAuthnFinish)

	admin("POST /admin/users/{id}/mfa/reset", s.adminResetMFA)
	admin("GET /admin/identity/mfa", s.mfaRequirementsPage)
	admin("POST /admin/identity/mfa", s.mfaRequirementsForm)
}

// --- the sign-in gate

// mfaGate is finishSignIn's body. Password and LDAP sign-ins of a
// user with factors wait for one (/signin/mfa); a user who must use MFA
// and has none enrols first (/signin/enrol). Neither is signed in until
// then. OIDC and SAML users are not asked: their provider does MFA.
func (s *Server) mfaGate(w http.ResponseWriter, r *http.Request, u store.User, m SignInMethod, next string) {
	if m.Factor == "" && (m.Kind == MethodPassword || m.Kind == MethodLDAP) {
		factors, err := s.Store.MFAFactors(r.Context(), u.ID)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		enrol := false
		if len(factors) == 0 {
			req, err := s.Store.MFARequirementSettings(r.Context())
			if err != nil {
				s.serverError(w, r, err)
				return
			}
			enrol = req.Requires(u)
		}
		if len(factors) > 0 || enrol {
			// A fresh token, as at sign-in: one planted before does not
			// carry the pending state.
			if err := s.Sessions.RenewToken(r.Context()); err != nil {
				s.serverError(w, r, err)
				return
			}
			ctx := r.Context()
			s.Sessions.Put(ctx, pendingUserKey, u.ID)
			s.Sessions.Put(ctx, pendingEpochKey, u.SessionEpoch)
			s.Sessions.Put(ctx, pendingAtKey, s.Now().UnixMilli())
			s.Sessions.Put(ctx, pendingKindKey, m.Kind)
			s.Sessions.Put(ctx, pendingProviderKey, m.Provider)
			s.Sessions.Put(ctx, pendingNextKey, safeNext(next))
			s.Sessions.Put(ctx, pendingEnrolKey, enrol)
			to := "/signin/mfa"
			if enrol {
				to = "/signin/enrol"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
	}
	if err := s.signInNow(r, u, m); err != nil {
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// signInNow starts u's session, records how they signed in (and when they
// passed a factor, if one was used) and audits the sign-in.
func (s *Server) signInNow(r *http.Request, u store.User, m SignInMethod) error {
	s.clearPending(r)
	if err := s.startSession(r, u); err != nil {
		return err
	}
	s.Sessions.Put(r.Context(), sessionMethodKey, m.String())
	if m.Factor != "" {
		s.Sessions.Put(r.Context(), sessionMFAAtKey, s.Now().UnixMilli())
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionSignIn, Outcome: audit.OutcomeSuccess, Details: m.auditDetails()})
	return nil
}

func (s *Server) clearPending(r *http.Request) {
	for _, k := range []string{pendingUserKey, pendingEpochKey, pendingAtKey, pendingKindKey, pendingProviderKey,
		pendingNextKey, pendingEnrolKey, ceremonyKey} {
		s.Sessions.Remove(r.Context(), k)
	}
}

// pendingSignIn is a sign-in that passed its password and waits for a
// second factor or enrolment.
type pendingSignIn struct {
	User   store.User
	Method SignInMethod
	Next   string
	Enrol  bool
}

// pending returns the request's waiting sign-in. One that is too old,
// whose user is gone or disabled, or whose password changed since is
// dropped.
func (s *Server) pending(r *http.Request) (pendingSignIn, bool, error) {
	ctx := r.Context()
	id := s.Sessions.GetInt64(ctx, pendingUserKey)
	if id == 0 {
		return pendingSignIn{}, false, nil
	}
	at := time.UnixMilli(s.Sessions.GetInt64(ctx, pendingAtKey))
	if s.Now().Sub(at) > pendingMFATimeout || s.Now().Before(at) {
		s.clearPending(r)
		return pendingSignIn{}, false, nil
	}
	u, err := s.Store.UserByID(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.clearPending(r)
		return pendingSignIn{}, false, nil
	case err != nil:
		return pendingSignIn{}, false, err
	case u.Disabled || u.SessionEpoch != s.Sessions.GetInt64(ctx, pendingEpochKey):
		s.clearPending(r)
		return pendingSignIn{}, false, nil
	}
	return pendingSignIn{User: u, Next: safeNext(s.Sessions.GetString(ctx, pendingNextKey)), Enrol: s.Sessions.GetBool(ctx, pendingEnrolKey),
		Method: SignInMethod{Kind: s.Sessions.GetString(ctx, pendingKindKey), Provider: s.Sessions.GetString(ctx, pendingProviderKey)}}, true, nil
}

// pendingOr returns the waiting sign-in, or answers (back to the sign-in
// page, which says why) and reports false.
func (s *Server) pendingOr(w http.ResponseWriter, r *http.Request, wantEnrol bool) (pendingSignIn, bool) {
	p, ok, err := s.pending(r)
	if err != nil {
		s.serverError(w, r, err)
		return p, false
	}
	if !ok {
		if r.Method == http.MethodGet {
			s.setFlash(r, "error", "Your sign-in took too long or was cancelled. Sign in again.")
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
		} else {
			s.renderError(w, r, http.StatusUnauthorized, "Your sign-in took too long or was cancelled. Sign in again.")
		}
		return p, false
	}
	if p.Enrol != wantEnrol {
		to := "/signin/mfa"
		if p.Enrol {
			to = "/signin/enrol"
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return p, false
	}
	return p, true
}

// pendingRedirect is where a request for the sign-in page goes while a
// sign-in waits for its second factor: back to it.
func (s *Server) pendingRedirect(r *http.Request) string {
	p, ok, err := s.pending(r)
	if err != nil || !ok {
		return ""
	}
	if p.Enrol {
		return "/signin/enrol"
	}
	return "/signin/mfa"
}

func (s *Server) signInMFAPage(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingOr(w, r, false)
	if !ok {
		return
	}
	s.renderChallenge(w, r, http.StatusOK, p.User, ui.MFAChallengeView{Action: "/signin/mfa", Cancel: "/signin/mfa/cancel",
		Heading: "Second factor", Intro: "Your password was right. Now show your second factor, " + p.User.Name + "."})
}

// renderChallenge fills in which factors u has and shows the check.
func (s *Server) renderChallenge(w http.ResponseWriter, r *http.Request, status int, u store.User, v ui.MFAChallengeView) {
	factors, err := s.Store.MFAFactors(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	left, err := s.Store.RecoveryCodesLeft(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, f := range factors {
		switch f.Kind {
		case store.FactorTOTP:
			v.TOTP = true
		case store.FactorWebAuthn:
			v.WebAuthn = true
		}
	}
	v.RecoveryLeft = left
	p := s.page(r, v.Heading, "")
	p.Bundle = "mfa"
	s.render(w, r, status, ui.MFAChallenge(p, v))
}

// errMFALocked is a user whose second factor failed too often.
type errMFALocked struct{ until time.Time }

func (e errMFALocked) Error() string {
	return "too many wrong codes; try again after " + e.until.UTC().Format("15:04 UTC")
}

// Code check failures, in the user's words.
var (
	errWrongCode  = errors.New("that code is not right")
	errReusedCode = errors.New("that code was already used; wait for the next one")
)

func mfaFailKey(u store.User) string { return "mfa:" + strconv.FormatInt(u.ID, 10) }

// mfaLocked says until when u's second factor is locked by wrong codes.
func (s *Server) mfaLocked(u store.User) error {
	if until := s.mfa.fails.NameLocked(mfaFailKey(u)); !until.IsZero() {
		return errMFALocked{until}
	}
	return nil
}

// checkCode checks a TOTP code or a recovery code of u, each usable once,
// and returns the factor kind it was ("totp" or "recovery"). Failures count
// towards u's lock.
func (s *Server) checkCode(r *http.Request, u store.User, code string) (string, error) {
	if err := s.mfaLocked(u); err != nil {
		return "", err
	}
	ctx := r.Context()
	if mfa.LooksLikeRecoveryCode(code) {
		ok, err := s.Store.UseRecoveryCode(ctx, u.ID, mfa.HashRecoveryCode(code))
		if err != nil {
			return "", err
		}
		if ok {
			return "recovery", nil
		}
		s.mfa.fails.FailName(mfaFailKey(u))
		return "", errWrongCode
	}
	factors, err := s.Store.MFAFactors(ctx, u.ID)
	if err != nil {
		return "", err
	}
	for _, f := range factors {
		if f.Kind != store.FactorTOTP {
			continue
		}
		step, err := mfa.TOTPStep(f.Secret, code, s.Now())
		if errors.Is(err, mfa.ErrBadCode) {
			continue
		}
		if err != nil {
			return "", err
		}
		fresh, err := s.Store.UseTOTPStep(ctx, f.ID, step)
		if err != nil {
			return "", err
		}
		if !fresh {
			s.mfa.fails.FailName(mfaFailKey(u))
			return "", errReusedCode
		}
		return store.FactorTOTP, nil
	}
	s.mfa.fails.FailName(mfaFailKey(u))
	return "", errWrongCode
}

// codeFailure turns a failed code check into the page's message and
// status (at sign-in 401, as a wrong password; for a signed-in user's
// step-up 422, as a form error), auditing it; other errors are returned.
func (s *Server) codeFailure(r *http.Request, u store.User, purpose string, err error) (string, int, error) {
	var locked errMFALocked
	status := http.StatusUnauthorized
	if purpose == purposeStepUp {
		status = http.StatusUnprocessableEntity
	}
	switch {
	case errors.As(err, &locked):
		status = http.StatusTooManyRequests
	case errors.Is(err, errWrongCode), errors.Is(err, errReusedCode):
	default:
		return "", 0, err
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFAVerify, Outcome: audit.OutcomeFailure, Reason: err.Error(),
		Details: map[string]string{"purpose": purpose}})
	return capitalize(err.Error()) + ".", status, nil
}

func (s *Server) signInMFACode(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingOr(w, r, false)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	factor, err := s.checkCode(r, p.User, r.PostForm.Get("code"))
	if err != nil {
		msg, status, err := s.codeFailure(r, p.User, purposeSignIn, err)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		s.record(r, audit.Event{Actor: p.User.Name, Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure, Reason: "second factor: " + msg,
			Details: p.Method.auditDetails()})
		s.renderChallenge(w, r, status, p.User, ui.MFAChallengeView{Action: "/signin/mfa", Cancel: "/signin/mfa/cancel",
			Heading: "Second factor", Error: msg})
		return
	}
	m := p.Method
	m.Factor = factor
	if err := s.signInNow(r, p.User, m); err != nil {
		s.serverError(w, r, err)
		return
	}
	if factor == "recovery" {
		s.setFlash(r, "warning", s.recoveryLeftMessage(r, p.User))
	}
	http.Redirect(w, r, p.Next, http.StatusSeeOther)
}

// recoveryLeftMessage tells a user who used a recovery code how many are
// left.
func (s *Server) recoveryLeftMessage(r *http.Request, u store.User) string {
	left, err := s.Store.RecoveryCodesLeft(r.Context(), u.ID)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "count recovery codes", "user", u.Name, "err", err)
		return "You used a recovery code."
	}
	return fmt.Sprintf("You used a recovery code; %d are left. Make new ones on your account's MFA page.", left)
}

func (s *Server) signInMFACancel(w http.ResponseWriter, r *http.Request) {
	s.clearPending(r)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// --- WebAuthn ceremonies (JSON, from web/src/mfa.ts)

// ceremony is a begun WebAuthn ceremony as the web session keeps it.
type ceremony struct {
	Purpose string       `json:"purpose"`
	UserID  int64        `json:"user"`
	Name    string       `json:"name,omitempty"` // of the factor being added
	Data    mfa.Ceremony `json:"data"`
}

// Ceremony purposes.
const (
	ceremonySignIn      = "signin"
	ceremonyVerify      = "verify"
	ceremonyEnrolSignIn = "enrol-signin"
	ceremonyEnrolAcct   = "enrol-account"
)

func writeJSONRaw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func writeRedirectJSON(w http.ResponseWriter, to string) {
	b, _ := json.Marshal(map[string]string{"redirect": to})
	writeJSONRaw(w, b)
}

// webAuthnUser is u with its WebAuthn credentials, and the factors they
// came from (same order).
func (s *Server) webAuthnUser(r *http.Request, u store.User) (mfa.User, []store.MFAFactor, int, error) {
	factors, err := s.Store.MFAFactors(r.Context(), u.ID)
	if err != nil {
		return mfa.User{}, nil, 0, err
	}
	wu := mfa.User{ID: u.ID, Name: u.Name, DisplayName: u.DisplayName}
	var wf []store.MFAFactor
	for _, f := range factors {
		if f.Kind != store.FactorWebAuthn {
			continue
		}
		c, err := mfa.ParseCredential(f.Data)
		if err != nil {
			return mfa.User{}, nil, 0, fmt.Errorf("factor %d of %s: %w", f.ID, u.Name, err)
		}
		wu.Credentials = append(wu.Credentials, c)
		wf = append(wf, f)
	}
	return wu, wf, len(factors), nil
}

// beginCeremony starts a registration (name != "" or register) or a
// sign-in ceremony for u and answers with the browser's options.
func (s *Server) beginCeremony(w http.ResponseWriter, r *http.Request, u store.User, purpose string, register bool) {
	wa, err := s.webAuthn()
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, capitalize(err.Error())+".")
		return
	}
	wu, _, n, err := s.webAuthnUser(r, u)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "load WebAuthn credentials", "user", u.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "The portal could not read your passkeys. The error was logged.")
		return
	}
	c := ceremony{Purpose: purpose, UserID: u.ID}
	var opts []byte
	if register {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil {
			writeJSONError(w, http.StatusBadRequest, "The request could not be read.")
			return
		}
		if c.Name, err = factorName(r.PostForm.Get("name"), "Passkey"); err != nil {
			writeJSONError(w, http.StatusUnprocessableEntity, capitalize(err.Error())+".")
			return
		}
		if n >= maxFactors {
			writeJSONError(w, http.StatusUnprocessableEntity, fmt.Sprintf("You have %d factors, the most allowed. Remove one first.", n))
			return
		}
		opts, c.Data, err = wa.BeginRegistration(wu)
	} else {
		if err := s.mfaLocked(u); err != nil {
			writeJSONError(w, http.StatusTooManyRequests, capitalize(err.Error())+".")
			return
		}
		opts, c.Data, err = wa.BeginLogin(wu)
	}
	if err != nil {
		writeJSONError(w, http.StatusUnprocessableEntity, capitalize(err.Error())+".")
		return
	}
	b, err := json.Marshal(c)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.Sessions.Put(r.Context(), ceremonyKey, string(b))
	writeJSONRaw(w, opts)
}

// takeCeremony returns the begun ceremony of purpose for u and forgets it:
// each works once.
func (s *Server) takeCeremony(r *http.Request, u store.User, purpose string) (ceremony, bool) {
	raw := s.Sessions.PopString(r.Context(), ceremonyKey)
	var c ceremony
	if raw == "" || json.Unmarshal([]byte(raw), &c) != nil || c.Purpose != purpose || c.UserID != u.ID {
		return ceremony{}, false
	}
	return c, true
}

// readAnswer reads the browser's answer to a ceremony, bounded.
func readAnswer(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, mfa.MaxResponse))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("The authenticator's answer was larger than %d bytes.", mfa.MaxResponse))
		return nil, false
	}
	return b, true
}

// finishLoginCeremony checks u's answer to a sign-in or verify ceremony
// and records the credential's new sign count. It answers failures
// itself (audited) and reports whether the check passed.
func (s *Server) finishLoginCeremony(w http.ResponseWriter, r *http.Request, u store.User, purpose, auditPurpose string) bool {
	c, ok := s.takeCeremony(r, u, purpose)
	if !ok {
		writeJSONError(w, http.StatusUnprocessableEntity, "This passkey check was not started here, or was already used. Try again.")
		return false
	}
	answer, ok := readAnswer(w, r)
	if !ok {
		return false
	}
	fail := func(reason string) bool {
		s.mfa.fails.FailName(mfaFailKey(u))
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFAVerify, Outcome: audit.OutcomeFailure, Reason: reason,
			Details: map[string]string{"purpose": auditPurpose, "factor": store.FactorWebAuthn}})
		writeJSONError(w, http.StatusUnauthorized, "The passkey or security key was not accepted: "+reason+".")
		return false
	}
	if err := s.mfaLocked(u); err != nil {
		writeJSONError(w, http.StatusTooManyRequests, capitalize(err.Error())+".")
		return false
	}
	wa, err := s.webAuthn()
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, capitalize(err.Error())+".")
		return false
	}
	wu, wf, _, err := s.webAuthnUser(r, u)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "load WebAuthn credentials", "user", u.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "The portal could not read your passkeys. The error was logged.")
		return false
	}
	cred, err := wa.FinishLogin(wu, c.Data, answer)
	if err != nil {
		return fail(err.Error())
	}
	i := mfa.CredentialIndex(wu.Credentials, cred.ID)
	if i < 0 {
		return fail("unknown credential")
	}
	data, err := mfa.MarshalCredential(cred)
	if err == nil {
		err = s.Store.UpdateWebAuthnFactor(r.Context(), wf[i].ID, data)
	}
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "save WebAuthn sign count", "user", u.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "The portal could not save the check. The error was logged.")
		return false
	}
	return true
}

// pendingJSON is the waiting sign-in of a WebAuthn request, which must be
// an enrolment (enrol) or a second-factor step (!enrol); otherwise it
// answers 401 in JSON and reports false.
func (s *Server) pendingJSON(w http.ResponseWriter, r *http.Request, enrol bool) (pendingSignIn, bool) {
	p, ok, err := s.pending(r)
	if err != nil || !ok || p.Enrol != enrol {
		writeJSONError(w, http.StatusUnauthorized, "Your sign-in took too long or was cancelled. Sign in again.")
		return pendingSignIn{}, false
	}
	return p, true
}

// signInPendingWebAuthn starts the waiting sign-in's session with the
// WebAuthn factor it just passed; false (and a JSON error answered) if it
// could not.
func (s *Server) signInPendingWebAuthn(w http.ResponseWriter, r *http.Request, p pendingSignIn) bool {
	m := p.Method
	m.Factor = store.FactorWebAuthn
	if err := s.signInNow(r, p.User, m); err != nil {
		s.Logger.ErrorContext(r.Context(), "start session", "user", p.User.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "The portal could not sign you in. The error was logged.")
		return false
	}
	return true
}

func (s *Server) signInWebAuthnBegin(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingJSON(w, r, false)
	if !ok {
		return
	}
	s.beginCeremony(w, r, p.User, ceremonySignIn, false)
}

func (s *Server) signInWebAuthnFinish(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingJSON(w, r, false)
	if !ok {
		return
	}
	if !s.finishLoginCeremony(w, r, p.User, ceremonySignIn, purposeSignIn) {
		return
	}
	if !s.signInPendingWebAuthn(w, r, p) {
		return
	}
	writeRedirectJSON(w, p.Next)
}

// factorName is a factor's name as typed, or def.
func factorName(typed, def string) (string, error) {
	n := strings.TrimSpace(typed)
	if n == "" {
		return def, nil
	}
	if len(n) > maxFactorName || strings.ContainsFunc(n, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", fmt.Errorf("name the factor in at most %d characters, on one line", maxFactorName)
	}
	return n, nil
}

// finishRegistration checks u's answer to a registration ceremony and
// stores the new credential; it answers failures itself.
func (s *Server) finishRegistration(w http.ResponseWriter, r *http.Request, u store.User, purpose string) (store.MFAFactor, bool) {
	c, ok := s.takeCeremony(r, u, purpose)
	if !ok {
		writeJSONError(w, http.StatusUnprocessableEntity, "This passkey registration was not started here, or was already used. Try again.")
		return store.MFAFactor{}, false
	}
	answer, ok := readAnswer(w, r)
	if !ok {
		return store.MFAFactor{}, false
	}
	wa, err := s.webAuthn()
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, capitalize(err.Error())+".")
		return store.MFAFactor{}, false
	}
	wu, _, _, err := s.webAuthnUser(r, u)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "load WebAuthn credentials", "user", u.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "The portal could not read your passkeys. The error was logged.")
		return store.MFAFactor{}, false
	}
	cred, err := wa.FinishRegistration(wu, c.Data, answer)
	if err != nil {
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFAEnrol, Target: c.Name, Outcome: audit.OutcomeFailure, Reason: err.Error(),
			Details: map[string]string{"factor": store.FactorWebAuthn}})
		writeJSONError(w, http.StatusUnprocessableEntity, "The passkey could not be registered: "+err.Error()+".")
		return store.MFAFactor{}, false
	}
	data, err := mfa.MarshalCredential(cred)
	var f store.MFAFactor
	if err == nil {
		f, err = s.Store.AddMFAFactor(r.Context(), store.MFAFactor{UserID: u.ID, Kind: store.FactorWebAuthn, Name: c.Name,
			CredentialID: cred.ID, Data: data})
	}
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "store WebAuthn credential", "user", u.Name, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "The portal could not save the passkey. The error was logged.")
		return store.MFAFactor{}, false
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFAEnrol, Target: f.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"factor": store.FactorWebAuthn}})
	return f, true
}

// --- enrolment at sign-in

func (s *Server) signInEnrolPage(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingOr(w, r, true)
	if !ok {
		return
	}
	s.renderEnrol(w, r, http.StatusOK, p.User, ui.MFAEnrolView{SignIn: true, Action: "/signin/enrol",
		Cancel: "/signin/mfa/cancel"}, "")
}

// renderEnrol shows the enrolment page for u: a TOTP key (secret, the
// one being confirmed, or a new one) and the passkey form.
func (s *Server) renderEnrol(w http.ResponseWriter, r *http.Request, status int, u store.User, v ui.MFAEnrolView, secret string) {
	key := mfa.TOTPKey{Secret: secret}
	var err error
	if secret == "" {
		key, err = mfa.NewTOTPKey("Keyway", u.Name)
	} else {
		key.URL = totpURL(u.Name, secret)
	}
	if err == nil {
		v.TOTPQR, err = key.QRDataURI()
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v.TOTPSecret = key.Secret
	if _, err := s.webAuthn(); err == nil {
		v.WebAuthn = true
	} else {
		v.WebAuthnNote = capitalize(err.Error()) + "."
	}
	v.Heading = "Set up a second factor"
	if v.SignIn {
		v.Intro = "Your administrator requires a second factor for " + u.Name + ". Set one up to finish signing in."
	}
	p := s.page(r, v.Heading, "account")
	p.Bundle = "mfa"
	s.render(w, r, status, ui.MFAEnrol(p, v))
}

// totpURL is the otpauth URL of an enrolment secret carried back by the
// form (so that the re-shown page has the same QR code).
func totpURL(account, secret string) string {
	v := url.Values{"secret": {secret}, "issuer": {"Keyway"}, "algorithm": {"SHA1"}, "digits": {"6"}, "period": {"30"}}
	return "otpauth://totp/Keyway:" + url.PathEscape(account) + "?" + v.Encode()
}

// validTOTPSecret checks the base32 secret a form carried back: the key
// was shown to the user, so the browser choosing it gains nothing, but it
// must be a key.
func validTOTPSecret(s string) bool {
	return len(s) >= 16 && len(s) <= maxTOTPSecret && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == ""
}

// enrolTOTP confirms a TOTP key with a code from the user's app and stores
// it; it re-shows the form on a wrong code and reports whether it stored.
func (s *Server) enrolTOTP(w http.ResponseWriter, r *http.Request, u store.User, v ui.MFAEnrolView) (store.MFAFactor, bool) {
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return store.MFAFactor{}, false
	}
	secret := r.PostForm.Get("secret")
	if !validTOTPSecret(secret) {
		secret = ""
	}
	v.TOTPName = r.PostForm.Get("name")
	fail := func(field, msg string) (store.MFAFactor, bool) {
		v.Errors = ui.Errors{field: msg}
		s.renderEnrol(w, r, http.StatusUnprocessableEntity, u, v, secret)
		return store.MFAFactor{}, false
	}
	if secret == "" {
		return fail("code", "The form lost its key. Scan the new QR code and try again.")
	}
	name, err := factorName(v.TOTPName, "Authenticator app")
	if err != nil {
		return fail("name", capitalize(err.Error())+".")
	}
	if err := s.mfaLocked(u); err != nil {
		return fail("code", capitalize(err.Error())+".")
	}
	factors, err := s.Store.MFAFactors(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return store.MFAFactor{}, false
	}
	if len(factors) >= maxFactors {
		return fail("name", fmt.Sprintf("You have %d factors, the most allowed. Remove one first.", len(factors)))
	}
	step, err := mfa.TOTPStep(secret, r.PostForm.Get("code"), s.Now())
	if err != nil {
		s.mfa.fails.FailName(mfaFailKey(u))
		return fail("code", "That code is not right. Check the time on your phone and type the code your app shows now.")
	}
	f, err := s.Store.AddMFAFactor(r.Context(), store.MFAFactor{UserID: u.ID, Kind: store.FactorTOTP, Name: name, Secret: secret, LastStep: step})
	if err == nil {
		// The code just typed must not pass again.
		_, err = s.Store.UseTOTPStep(r.Context(), f.ID, step)
	}
	if err != nil {
		s.serverError(w, r, err)
		return store.MFAFactor{}, false
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFAEnrol, Target: name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"factor": store.FactorTOTP}})
	return f, true
}

// newRecoveryCodes replaces u's recovery codes and returns them, to be
// shown once.
func (s *Server) newRecoveryCodes(r *http.Request, u store.User) ([]string, error) {
	codes, hashes := mfa.NewRecoveryCodes()
	if err := s.Store.SetRecoveryCodes(r.Context(), u.ID, hashes); err != nil {
		return nil, err
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFARecovery, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"count": strconv.Itoa(len(codes))}})
	return codes, nil
}

// showRecoveryCodes renders fresh codes (never stored in the session, so
// shown exactly once).
func (s *Server) showRecoveryCodes(w http.ResponseWriter, r *http.Request, codes []string, next string) {
	s.render(w, r, http.StatusOK, ui.RecoveryCodes(s.page(r, "Recovery codes", "account"), ui.RecoveryCodesView{Codes: codes, Next: next}))
}

func (s *Server) signInEnrolTOTP(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingOr(w, r, true)
	if !ok {
		return
	}
	if _, ok := s.enrolTOTP(w, r, p.User, ui.MFAEnrolView{SignIn: true, Action: "/signin/enrol", Cancel: "/signin/mfa/cancel"}); !ok {
		return
	}
	m := p.Method
	m.Factor = store.FactorTOTP
	if err := s.signInNow(r, p.User, m); err != nil {
		s.serverError(w, r, err)
		return
	}
	codes, err := s.newRecoveryCodes(r, p.User)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.showRecoveryCodes(w, r, codes, p.Next)
}

func (s *Server) signInEnrolWebAuthnBegin(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingJSON(w, r, true)
	if !ok {
		return
	}
	s.beginCeremony(w, r, p.User, ceremonyEnrolSignIn, true)
}

func (s *Server) signInEnrolWebAuthnFinish(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pendingJSON(w, r, true)
	if !ok {
		return
	}
	if _, ok := s.finishRegistration(w, r, p.User, ceremonyEnrolSignIn); !ok {
		return
	}
	if !s.signInPendingWebAuthn(w, r, p) {
		return
	}
	// Recovery codes are made by a form on the MFA page, so that they are
	// rendered once and never kept in the session.
	writeRedirectJSON(w, "/account/mfa?next="+url.QueryEscape(p.Next))
}

// --- account

func (s *Server) accountMFAPage(w http.ResponseWriter, r *http.Request) {
	s.renderAccountMFA(w, r, http.StatusOK, ui.AccountMFAView{})
}

func (s *Server) renderAccountMFA(w http.ResponseWriter, r *http.Request, status int, v ui.AccountMFAView) {
	u, _ := currentUser(r)
	factors, err := s.Store.MFAFactors(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if v.RecoveryLeft, err = s.Store.RecoveryCodesLeft(r.Context(), u.ID); err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, f := range factors {
		v.Factors = append(v.Factors, ui.MFAFactorRow{ID: f.ID, Kind: f.Kind, Name: f.Name, CreatedAt: f.CreatedAt, LastUsedAt: f.LastUsedAt})
	}
	if v.Next == "" {
		if n := r.URL.Query().Get("next"); localPath(n) {
			v.Next = n
		}
	}
	v.Fresh = s.freshMFA(r)
	if _, err := s.webAuthn(); err == nil {
		v.WebAuthn = true
	} else {
		v.WebAuthnNote = capitalize(err.Error()) + "."
	}
	req, err := s.Store.MFARequirementSettings(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v.Required = req.Requires(u)
	p := s.page(r, "Multi-factor authentication", "account")
	p.Bundle = "mfa"
	s.render(w, r, status, ui.AccountMFA(p, v))
}

// freshMFA reports whether the session passed an MFA check within
// freshMFA.
func (s *Server) freshMFA(r *http.Request) bool {
	at := s.sessionMFAAt(r)
	return !at.IsZero() && s.Now().Sub(at) <= freshMFA
}

func (s *Server) accountTOTPPage(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	next := r.URL.Query().Get("next")
	if !localPath(next) {
		next = ""
	}
	s.renderEnrol(w, r, http.StatusOK, u, ui.MFAEnrolView{Action: "/account/mfa", Cancel: "", Next: next}, "")
}

func (s *Server) accountTOTP(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	next := r.FormValue("next")
	if !localPath(next) {
		next = ""
	}
	if _, ok := s.enrolTOTP(w, r, u, ui.MFAEnrolView{Action: "/account/mfa", Next: next}); !ok {
		return
	}
	// Typing a right code is an MFA check.
	s.Sessions.Put(r.Context(), sessionMFAAtKey, s.Now().UnixMilli())
	left, err := s.Store.RecoveryCodesLeft(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if left == 0 {
		codes, err := s.newRecoveryCodes(r, u)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if next == "" {
			next = "/account/mfa"
		}
		s.showRecoveryCodes(w, r, codes, next)
		return
	}
	to := "/account/mfa"
	if next != "" {
		to = next
	}
	s.done(w, r, "The authenticator app was added.", to)
}

func (s *Server) accountWebAuthnBegin(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	s.beginCeremony(w, r, u, ceremonyEnrolAcct, true)
}

func (s *Server) accountWebAuthnFinish(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	f, ok := s.finishRegistration(w, r, u, ceremonyEnrolAcct)
	if !ok {
		return
	}
	s.Sessions.Put(r.Context(), sessionMFAAtKey, s.Now().UnixMilli())
	s.setFlash(r, "success", fmt.Sprintf("Passkey %s was added.", quote(f.Name)))
	to := "/account/mfa"
	if n := r.URL.Query().Get("next"); localPath(n) {
		to += "?next=" + url.QueryEscape(n)
	}
	writeRedirectJSON(w, to)
}

// confirmed checks that whoever holds the browser is the user, before a
// factor is removed or recovery codes replaced: an MFA check within
// freshMFA, or the password in the form.
func (s *Server) confirmed(w http.ResponseWriter, r *http.Request, u store.User, action, target string) bool {
	if s.freshMFA(r) {
		return true
	}
	if _, err := s.Auth.SignIn(r.Context(), u.Name, r.PostForm.Get("password"), s.ClientInfo.Addr(r)); err != nil {
		msg := "This is not your password."
		var rl *auth.RateLimitedError
		if errors.As(err, &rl) {
			msg = capitalize(rl.Error()) + "."
		}
		s.record(r, audit.Event{Actor: u.Name, Action: action, Target: target, Outcome: audit.OutcomeFailure, Reason: "wrong password"})
		s.renderAccountMFA(w, r, http.StatusUnprocessableEntity, ui.AccountMFAView{Errors: ui.Errors{"password": msg}})
		return false
	}
	return true
}

func (s *Server) accountRecoveryCodes(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	if !s.confirmed(w, r, u, audit.ActionMFARecovery, "") {
		return
	}
	factors, err := s.Store.MFAFactors(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if len(factors) == 0 {
		s.actionError(w, r, fieldErrors{"codes": "Add an authenticator app or a passkey first: recovery codes stand in for one."}, "/account/mfa")
		return
	}
	codes, err := s.newRecoveryCodes(r, u)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	next := r.PostForm.Get("next")
	if !localPath(next) {
		next = "/account/mfa"
	}
	s.showRecoveryCodes(w, r, codes, next)
}

func (s *Server) accountRemoveFactor(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	if err != nil {
		s.actionError(w, r, err, "/account/mfa")
		return
	}
	factors, err := s.Store.MFAFactors(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	i := slices.IndexFunc(factors, func(f store.MFAFactor) bool { return f.ID == id })
	if i < 0 {
		s.notFound(w, r)
		return
	}
	f := factors[i]
	if !s.confirmed(w, r, u, audit.ActionMFARemove, f.Name) {
		return
	}
	if err := s.Store.DeleteMFAFactor(r.Context(), u.ID, id); err != nil {
		s.actionError(w, r, err, "/account/mfa")
		return
	}
	if len(factors) == 1 {
		// Recovery codes stand in for a factor; with none left they
		// would be a password-only second factor.
		if err := s.Store.SetRecoveryCodes(r.Context(), u.ID, nil); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFARemove, Target: f.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"factor": f.Kind}})
	s.done(w, r, fmt.Sprintf("%s was removed.", capitalize(quote(f.Name))), "/account/mfa")
}

// --- step-up check

func (s *Server) verifyNext(r *http.Request) string {
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostForm.Get("next")
	}
	return safeNext(next)
}

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	s.renderVerify(w, r, http.StatusOK, u, s.verifyNext(r), "")
}

func (s *Server) renderVerify(w http.ResponseWriter, r *http.Request, status int, u store.User, next, msg string) {
	factors, err := s.Store.MFAFactors(r.Context(), u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.MFAChallengeView{Action: "/mfa/verify", Next: next, Heading: "Confirm it is you", Error: msg,
		Intro: "This needs a recent check of your second factor."}
	if len(factors) == 0 {
		v.EnrolHref = "/account/mfa?next=" + url.QueryEscape("/mfa/verify?next="+url.QueryEscape(next))
	}
	s.renderChallenge(w, r, status, u, v)
}

// verified stamps the session's MFA check and audits it.
func (s *Server) verified(r *http.Request, u store.User, factor string) {
	s.Sessions.Put(r.Context(), sessionMFAAtKey, s.Now().UnixMilli())
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionMFAVerify, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"purpose": purposeStepUp, "factor": factor}})
}

func (s *Server) verifyCode(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	next := s.verifyNext(r)
	factor, err := s.checkCode(r, u, r.PostForm.Get("code"))
	if err != nil {
		msg, status, err := s.codeFailure(r, u, purposeStepUp, err)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		s.renderVerify(w, r, status, u, next, msg)
		return
	}
	s.verified(r, u, factor)
	if factor == "recovery" {
		s.setFlash(r, "warning", s.recoveryLeftMessage(r, u))
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) verifyWebAuthnBegin(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	s.beginCeremony(w, r, u, ceremonyVerify, false)
}

func (s *Server) verifyWebAuthnFinish(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if !s.finishLoginCeremony(w, r, u, ceremonyVerify, purposeStepUp) {
		return
	}
	s.verified(r, u, store.FactorWebAuthn)
	writeRedirectJSON(w, safeNext(r.URL.Query().Get("next")))
}

// --- admin

func (s *Server) adminResetMFA(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var u store.User
	if err == nil {
		u, err = s.Store.UserByID(r.Context(), id)
	}
	if err == nil {
		err = s.Store.ResetMFA(r.Context(), id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/users")
		return
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionMFAReset, Target: u.Name, Outcome: audit.OutcomeSuccess})
	s.done(w, r, fmt.Sprintf("The second factors and recovery codes of %s were removed.", quote(u.Name)), fmt.Sprintf("/admin/users/%d", id))
}

// userMFAView is a user's factors for their admin page.
func (s *Server) userMFAView(r *http.Request, userID int64) (ui.UserMFAView, error) {
	factors, err := s.Store.MFAFactors(r.Context(), userID)
	if err != nil {
		return ui.UserMFAView{}, err
	}
	v := ui.UserMFAView{}
	for _, f := range factors {
		v.Factors = append(v.Factors, ui.MFAFactorRow{ID: f.ID, Kind: f.Kind, Name: f.Name, CreatedAt: f.CreatedAt, LastUsedAt: f.LastUsedAt})
	}
	v.RecoveryLeft, err = s.Store.RecoveryCodesLeft(r.Context(), userID)
	return v, err
}

func (s *Server) mfaRequirementsPage(w http.ResponseWriter, r *http.Request) {
	req, err := s.Store.MFARequirementSettings(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.renderMFARequirements(w, r, http.StatusOK, req, nil)
}

func (s *Server) renderMFARequirements(w http.ResponseWriter, r *http.Request, status int, req store.MFARequirement, errs ui.Errors) {
	gs, err := s.Store.ListGroups(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.MFARequirementsView{Everyone: req.Everyone, Errors: errs}
	for _, role := range []store.Role{store.RoleAdmin, store.RoleAuditor, store.RoleUser} {
		v.Roles = append(v.Roles, ui.Option{Value: string(role), Label: string(role), Selected: slices.Contains(req.Roles, role)})
	}
	for _, g := range gs {
		v.Groups = append(v.Groups, ui.Option{Value: g.Name, Label: g.Name, Selected: slices.Contains(req.Groups, g.Name)})
	}
	s.render(w, r, status, ui.MFARequirements(s.page(r, "Required MFA", "identity"), v))
}

func (s *Server) mfaRequirementsForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	req := store.MFARequirement{Everyone: r.PostForm.Get("everyone") != ""}
	for _, role := range r.PostForm["role"] {
		switch store.Role(role) {
		case store.RoleAdmin, store.RoleAuditor, store.RoleUser:
			if !slices.Contains(req.Roles, store.Role(role)) {
				req.Roles = append(req.Roles, store.Role(role))
			}
		default:
			s.renderMFARequirements(w, r, http.StatusUnprocessableEntity, req, ui.Errors{"role": fmt.Sprintf("There is no role %s.", quote(role))})
			return
		}
	}
	gs, err := s.Store.ListGroups(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, g := range r.PostForm["group"] {
		if !slices.ContainsFunc(gs, func(x store.Group) bool { return x.Name == g }) {
			s.renderMFARequirements(w, r, http.StatusUnprocessableEntity, req, ui.Errors{"group": fmt.Sprintf("There is no group %s (any more).", quote(g))})
			return
		}
		if !slices.Contains(req.Groups, g) {
			req.Groups = append(req.Groups, g)
		}
	}
	if err := s.Store.SetMFARequirementSettings(r.Context(), req); err != nil {
		s.actionError(w, r, err, "/admin/identity/mfa")
		return
	}
	roles := make([]string, len(req.Roles))
	for i, ro := range req.Roles {
		roles[i] = string(ro)
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSettingsMFA, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"everyone": strconv.FormatBool(req.Everyone), "roles": strings.Join(roles, ","), "groups": strings.Join(req.Groups, ",")}})
	s.done(w, r, "Who must use MFA was saved. It applies from each user's next sign-in.", "/admin/identity/mfa")
}
