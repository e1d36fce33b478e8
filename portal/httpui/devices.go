package httpui

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// Native clients (keyway) sign in like RFC 8628's device flow: the client
// asks (clientLogin), a signed-in person approves the request on /device,
// the client polls (clientToken) and gets a credential bound to the key it
// made. Each later request carries the credential and a proof signed with
// that key (deviceAuth).

// Limits of the device sign-in API.
const (
	maxClientBody    = 4 << 10 // login and token request bodies
	maxDeviceName    = 64
	maxDeviceVersion = 32
	maxDeviceOSArch  = 16
	// proofWindow is how far a proof's time may be from the portal's.
	proofWindow = 300 * time.Second
	// maxProofHeader bounds the Keyway-Proof header before it is parsed.
	maxProofHeader = 200
)

// Headers of native clients.
const (
	headerProof  = "Keyway-Proof"
	headerTarget = "Keyway-Target"
)

// Errors of deviceAuth; deviceAuthError turns them into answers.
var (
	// errNoDeviceCredential: the bearer is not a device credential (an
	// API token, or none): the caller may try other credentials.
	errNoDeviceCredential = errors.New("no device credential")
	errBadProof           = errors.New("missing or bad Keyway-Proof")
	errProofTime          = errors.New("the proof's time is too far from the portal's clock")
	errUserDisabled       = errors.New("the device's user is disabled or deleted")
)

// deviceAuth authenticates a native client's request: the bearer device
// credential kwd_<id>_<secret> and the Keyway-Proof header signed with the
// device's key. It returns errNoDeviceCredential for a bearer that is no
// device credential, and otherwise errors that deviceAuthError explains.
func (s *Server) deviceAuth(r *http.Request) (store.User, store.Device, error) {
	cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.HasPrefix(cred, store.DeviceCredentialPrefix) {
		return store.User{}, store.Device{}, errNoDeviceCredential
	}
	d, err := s.Store.VerifyDeviceCredential(r.Context(), cred)
	if d.ID == 0 {
		if err == nil || errors.Is(err, store.ErrNotFound) {
			return store.User{}, store.Device{}, fmt.Errorf("device credential: %w", store.ErrNotFound)
		}
		return store.User{}, store.Device{}, fmt.Errorf("check device credential: %w", err)
	}
	// The key's holder is checked before the device's state is told.
	if perr := checkProof(r, d.PublicKey, s.Now()); perr != nil {
		return store.User{}, store.Device{}, perr
	}
	if err != nil {
		return store.User{}, store.Device{}, err
	}
	u, err := s.Store.UserByID(r.Context(), d.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled) {
		return store.User{}, store.Device{}, errUserDisabled
	}
	if err != nil {
		return store.User{}, store.Device{}, fmt.Errorf("device's user: %w", err)
	}
	if err := s.Store.TouchDevice(r.Context(), d, s.ClientInfo.Addr(r)); err != nil {
		s.Logger.WarnContext(r.Context(), "record device use", "device", d.ID, "err", err)
	}
	return u, d, nil
}

// proofMessage is what a device signs for a request.
func proofMessage(ts, method, target string) []byte {
	return []byte("keyway-proof\n" + ts + "\n" + method + "\n" + target)
}

// checkProof verifies the Keyway-Proof header "<unix seconds>.<base64url
// signature>" of r against key.
func checkProof(r *http.Request, key ed25519.PublicKey, now time.Time) error {
	h := r.Header.Get(headerProof)
	if h == "" || len(h) > maxProofHeader {
		return errBadProof
	}
	ts, sigText, ok := strings.Cut(h, ".")
	if !ok || ts == "" || len(ts) > 12 || strings.Trim(ts, "0123456789") != "" {
		return errBadProof
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errBadProof
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(sigText, "="))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errBadProof
	}
	target := r.URL.Path
	if r.Method == http.MethodConnect {
		target = r.Header.Get(headerTarget)
	}
	if !ed25519.Verify(key, proofMessage(ts, r.Method, target), sig) {
		return errBadProof
	}
	if d := now.Sub(time.Unix(sec, 0)); d > proofWindow || d < -proofWindow {
		return errProofTime
	}
	return nil
}

// deviceAuthError is the 401 answer's error code and words for an error of
// deviceAuth; the client tells its user to sign in again on each.
func deviceAuthError(err error) (code, message string) {
	switch {
	case errors.Is(err, store.ErrDeviceExpired):
		return "expired_credential", "This device's sign-in has expired. Run keyway login again."
	case errors.Is(err, store.ErrDeviceRevoked):
		return "device_revoked", "This device was revoked. Run keyway login again."
	case errors.Is(err, errUserDisabled):
		return "invalid_credential", "Your account is disabled or was deleted."
	case errors.Is(err, errProofTime):
		return "invalid_credential", "The device's clock is more than 5 minutes off the portal's. Set the clock right and try again."
	case errors.Is(err, errBadProof):
		return "invalid_credential", "The request's proof of the device key is missing or wrong. Run keyway login again."
	case errors.Is(err, errNoDeviceCredential):
		return "invalid_credential", "This needs a device signed in with keyway login."
	}
	return "invalid_credential", "The device credential is unknown. Run keyway login again."
}

// writeClientError writes the {"error", "message"} answer of the client API.
func writeClientError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "message": message})
}

// writeDeviceAuthError answers a failed deviceAuth with 401, or 500 for a
// failure of the portal itself.
func (s *Server) writeDeviceAuthError(w http.ResponseWriter, r *http.Request, err error) {
	if isInternalAuthError(err) {
		s.Logger.ErrorContext(r.Context(), "device authentication", "path", r.URL.Path, "err", err)
		writeClientError(w, http.StatusInternalServerError, "internal_error", "The portal could not check the credential; see its log.")
		return
	}
	code, msg := deviceAuthError(err)
	w.Header().Set("WWW-Authenticate", `Bearer realm="keyway", error="invalid_token"`)
	writeClientError(w, http.StatusUnauthorized, code, msg)
}

// isInternalAuthError reports whether err is the portal's failure rather
// than the client's.
func isInternalAuthError(err error) bool {
	for _, e := range []error{store.ErrNotFound, store.ErrDeviceExpired, store.ErrDeviceRevoked, errBadProof, errProofTime, errUserDisabled, errNoDeviceCredential} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// decodeClientJSON reads a bounded JSON body; unknown fields are allowed,
// so that newer clients can talk to older portals.
func decodeClientJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxClientBody))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("the request body is larger than %d bytes", mbe.Limit)
		}
		return errors.New("the request body is not a JSON object of the expected shape")
	}
	return nil
}

type clientLoginRequest struct {
	PublicKey string `json:"public_key"`
	Name      string `json:"name"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Version   string `json:"version"`
}

type clientLoginResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	Interval                int    `json:"interval"`
	ExpiresIn               int    `json:"expires_in"`
}

// printable reports whether v has no control characters.
func printable(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) })
}

// osArchOK reports whether v is a short lower-case word like GOOS.
func osArchOK(v string) bool {
	return len(v) <= maxDeviceOSArch && strings.Trim(v, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
}

// validate returns the device key, or what is wrong in words.
func (in clientLoginRequest) validate() (ed25519.PublicKey, string) {
	key, err := base64.StdEncoding.DecodeString(in.PublicKey)
	switch {
	case err != nil || len(key) != ed25519.PublicKeySize:
		return nil, "public_key must be a base64 ed25519 public key of 32 bytes"
	case strings.TrimSpace(in.Name) == "" || len(in.Name) > maxDeviceName || !printable(in.Name):
		return nil, fmt.Sprintf("name must be the device's name, 1 to %d printable bytes", maxDeviceName)
	case !osArchOK(in.OS) || !osArchOK(in.Arch):
		return nil, "os and arch must be short lower-case words such as linux and amd64"
	case len(in.Version) > maxDeviceVersion || !printable(in.Version):
		return nil, fmt.Sprintf("version must be at most %d printable bytes", maxDeviceVersion)
	}
	return ed25519.PublicKey(key), ""
}

// portalBase is the portal's URL as clients reach it.
func (s *Server) portalBase(r *http.Request) string {
	if s.PortalURL != "" {
		return strings.TrimRight(s.PortalURL, "/")
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// retryAfter sets Retry-After to d, in whole seconds, at least one.
func retryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int((d+time.Second-1)/time.Second))))
}

func (s *Server) clientLogin(w http.ResponseWriter, r *http.Request) {
	addr := s.ClientInfo.Addr(r)
	// Every request counts against its address, as failed sign-ins do:
	// each makes a row and shows a code to whoever opens the page.
	res, wait, ok := s.deviceLogins.Reserve(addr)
	if !ok {
		retryAfter(w, wait)
		writeClientError(w, http.StatusTooManyRequests, "slow_down",
			fmt.Sprintf("Too many device sign-ins from your address. Try again in %s.", wait.Round(time.Second)))
		return
	}
	res.Fail()
	var in clientLoginRequest
	if err := decodeClientJSON(w, r, &in); err != nil {
		writeClientError(w, http.StatusBadRequest, "invalid_request", sentence(err.Error()))
		return
	}
	key, problem := in.validate()
	if problem != "" {
		writeClientError(w, http.StatusBadRequest, "invalid_request", sentence(problem))
		return
	}
	code, req, err := s.Store.CreateDeviceRequest(r.Context(), store.DeviceRequest{PublicKey: key, Name: strings.TrimSpace(in.Name),
		OS: in.OS, Arch: in.Arch, Version: in.Version, ClientAddr: addr})
	if errors.Is(err, store.ErrTooManyDeviceRequests) {
		retryAfter(w, store.DeviceRequestTTL)
		writeClientError(w, http.StatusTooManyRequests, "slow_down", "Too many device sign-ins are waiting for approval. Try again in a few minutes.")
		return
	}
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "device sign-in request", "err", err)
		writeClientError(w, http.StatusInternalServerError, "internal_error", "The portal could not record the request; see its log.")
		return
	}
	base := s.portalBase(r)
	user := store.FormatUserCode(req.UserCode)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, clientLoginResponse{DeviceCode: code, UserCode: user,
		VerificationURI: base + "/device", VerificationURIComplete: base + "/device?code=" + user,
		Interval: int(store.DevicePollInterval / time.Second), ExpiresIn: int(store.DeviceRequestTTL / time.Second)})
}

type clientTokenRequest struct {
	DeviceCode string `json:"device_code"`
	Signature  string `json:"signature"`
}

type apiDeviceRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type clientTokenResponse struct {
	Credential string       `json:"credential"`
	ExpiresAt  time.Time    `json:"expires_at"`
	User       string       `json:"user"`
	Device     apiDeviceRef `json:"device"`
}

func (s *Server) clientToken(w http.ResponseWriter, r *http.Request) {
	// Guessing device codes costs a failure of the address each.
	res, wait, ok := s.deviceTokens.Reserve(s.ClientInfo.Addr(r))
	if !ok {
		retryAfter(w, wait)
		writeClientError(w, http.StatusBadRequest, "slow_down", "Too many failed attempts from your address. Wait and try again.")
		return
	}
	var in clientTokenRequest
	if err := decodeClientJSON(w, r, &in); err != nil {
		res.Cancel()
		writeClientError(w, http.StatusBadRequest, "invalid_request", sentence(err.Error()))
		return
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(in.Signature, "="))
	if in.DeviceCode == "" || err != nil || len(sig) != ed25519.SignatureSize {
		res.Cancel()
		writeClientError(w, http.StatusBadRequest, "invalid_request", "The request needs device_code and signature (base64url of an ed25519 signature).")
		return
	}
	limits, err := s.Store.ClientLimits(r.Context())
	if err != nil {
		res.Cancel()
		s.Logger.ErrorContext(r.Context(), "read client limits", "err", err)
		writeClientError(w, http.StatusInternalServerError, "internal_error", "The portal could not read its settings; see its log.")
		return
	}
	cred, d, err := s.Store.ExchangeDeviceCode(r.Context(), in.DeviceCode, sig, limits.CredentialTTL())
	if errors.Is(err, store.ErrInvalidGrant) {
		res.Fail()
	} else {
		res.Cancel()
	}
	for _, c := range []struct {
		err        error
		code, text string
	}{
		{store.ErrAuthorizationPending, "authorization_pending", "The sign-in has not been approved yet."},
		{store.ErrSlowDown, "slow_down", "Poll less often."},
		{store.ErrAccessDenied, "access_denied", "The sign-in was denied in the portal."},
		{store.ErrExpiredToken, "expired_token", "The sign-in request expired before it was approved. Run keyway login again."},
		{store.ErrInvalidGrant, "invalid_grant", "The device code is unknown, already used, or the signature is wrong. Run keyway login again."},
	} {
		if errors.Is(err, c.err) {
			writeClientError(w, http.StatusBadRequest, c.code, c.text)
			return
		}
	}
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "device token exchange", "err", err)
		writeClientError(w, http.StatusInternalServerError, "internal_error", "The portal could not hand out the credential; see its log.")
		return
	}
	u, err := s.Store.UserByID(r.Context(), d.UserID)
	if err != nil || u.Disabled {
		// The approver went since; the device is useless to them.
		writeClientError(w, http.StatusBadRequest, "access_denied", "The account that approved this device is disabled or was deleted.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, clientTokenResponse{Credential: cred, ExpiresAt: d.ExpiresAt, User: u.Name,
		Device: apiDeviceRef{ID: d.ID, Name: d.Name}})
}

func (s *Server) clientLogout(w http.ResponseWriter, r *http.Request) {
	u, d, err := s.deviceAuth(r)
	if err != nil {
		s.writeDeviceAuthError(w, r, err)
		return
	}
	if _, err := s.Store.RevokeDevice(r.Context(), u.ID, d.ID); err != nil {
		s.Logger.ErrorContext(r.Context(), "revoke device", "device", d.ID, "err", err)
		writeClientError(w, http.StatusInternalServerError, "internal_error", "The portal could not revoke the device; see its log.")
		return
	}
	s.kickGuard()
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionDeviceRevoke, Target: deviceTarget(d), Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"by": "device"}})
	writeJSON(w, http.StatusOK, map[string]any{"revoked": true, "device": apiDeviceRef{ID: d.ID, Name: d.Name}})
}

// deviceTarget names a device in audit events.
func deviceTarget(d store.Device) string { return fmt.Sprintf("%s (device %d)", d.Name, d.ID) }

// keyFingerprint shows a device key as ssh-keygen -l does.
func keyFingerprint(key ed25519.PublicKey) string {
	pk, err := ssh.NewPublicKey(key)
	if err != nil {
		return "(bad key)"
	}
	return ssh.FingerprintSHA256(pk)
}
