package mfa

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// Limits on WebAuthn ceremonies.
const (
	// CeremonyTimeout is how long a begun registration or sign-in may take:
	// the browser's prompt times out then, and the server refuses later
	// answers.
	CeremonyTimeout = 2 * time.Minute
	// MaxResponse bounds an authenticator's answer as the browser posts it
	// (attestation objects with certificate chains are a few KiB).
	MaxResponse = 64 << 10
)

// WebAuthn runs passkey and security-key ceremonies for one portal URL:
// the relying party id is the URL's host, the only origin the URL's.
type WebAuthn struct {
	wa *webauthn.WebAuthn
}

// NewWebAuthn configures WebAuthn for the portal at portalURL (https, or
// http://localhost), shown to users as displayName.
func NewWebAuthn(portalURL, displayName string) (*WebAuthn, error) {
	u, err := url.Parse(portalURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("portal URL %q is not an absolute URL", portalURL)
	}
	origin := u.Scheme + "://" + u.Host
	wa, err := webauthn.New(&webauthn.Config{
		RPID: u.Hostname(), RPDisplayName: displayName, RPOrigins: []string{origin},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: CeremonyTimeout, TimeoutUVD: CeremonyTimeout},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: CeremonyTimeout, TimeoutUVD: CeremonyTimeout},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("configure WebAuthn for %s: %w", origin, err)
	}
	return &WebAuthn{wa: wa}, nil
}

// User is an account as WebAuthn sees it. Credentials are those of its
// WebAuthn factors (Credential JSON as Credential.Marshal made it).
type User struct {
	ID          int64
	Name        string
	DisplayName string
	Credentials []webauthn.Credential
}

// WebAuthnID is the user handle: the account id, 8 bytes big-endian
// (never a name, which may be reused).
func (u User) WebAuthnID() []byte { return binary.BigEndian.AppendUint64(nil, uint64(u.ID)) }

// WebAuthnName implements webauthn.User.
func (u User) WebAuthnName() string { return u.Name }

// WebAuthnDisplayName implements webauthn.User.
func (u User) WebAuthnDisplayName() string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	return u.Name
}

// WebAuthnCredentials implements webauthn.User.
func (u User) WebAuthnCredentials() []webauthn.Credential { return u.Credentials }

// ParseCredential reads a stored credential (MFAFactor.Data).
func ParseCredential(data string) (webauthn.Credential, error) {
	var c webauthn.Credential
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return c, fmt.Errorf("parse stored WebAuthn credential: %w", err)
	}
	return c, nil
}

// MarshalCredential is the stored form of c (MFAFactor.Data).
func MarshalCredential(c webauthn.Credential) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode WebAuthn credential: %w", err)
	}
	return string(b), nil
}

// Ceremony is the server's half of a begun ceremony, kept (as JSON) in the
// user's web session and used once.
type Ceremony = webauthn.SessionData

// BeginRegistration starts adding a credential for u. The options go to
// the browser as JSON ({"publicKey": ...}); the ceremony stays here. The
// user's existing credentials are excluded, so one authenticator is not
// registered twice.
func (w *WebAuthn) BeginRegistration(u User) (options []byte, c Ceremony, err error) {
	var exclude []protocol.CredentialDescriptor
	for _, cr := range u.Credentials {
		exclude = append(exclude, cr.Descriptor())
	}
	opts, sd, err := w.wa.BeginRegistration(u,
		webauthn.WithExclusions(exclude),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementPreferred, UserVerification: protocol.VerificationPreferred}),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation))
	if err != nil {
		return nil, Ceremony{}, fmt.Errorf("begin WebAuthn registration: %w", err)
	}
	b, err := json.Marshal(opts)
	if err != nil {
		return nil, Ceremony{}, fmt.Errorf("encode WebAuthn options: %w", err)
	}
	return b, *sd, nil
}

// FinishRegistration checks the browser's answer (the JSON of
// PublicKeyCredential.toJSON) to c and returns the new credential.
func (w *WebAuthn) FinishRegistration(u User, c Ceremony, answer []byte) (webauthn.Credential, error) {
	parsed, err := protocol.ParseCredentialCreationResponseBytes(answer)
	if err != nil {
		return webauthn.Credential{}, fmt.Errorf("read the authenticator's answer: %w", describe(err))
	}
	cred, err := w.wa.CreateCredential(u, c, parsed)
	if err != nil {
		return webauthn.Credential{}, fmt.Errorf("check the new credential: %w", describe(err))
	}
	return *cred, nil
}

// BeginLogin starts a check of one of u's credentials.
func (w *WebAuthn) BeginLogin(u User) (options []byte, c Ceremony, err error) {
	if len(u.Credentials) == 0 {
		return nil, Ceremony{}, errors.New("no passkey or security key is registered")
	}
	opts, sd, err := w.wa.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return nil, Ceremony{}, fmt.Errorf("begin WebAuthn sign-in: %w", err)
	}
	b, err := json.Marshal(opts)
	if err != nil {
		return nil, Ceremony{}, fmt.Errorf("encode WebAuthn options: %w", err)
	}
	return b, *sd, nil
}

// ErrCloned is an authenticator whose signature counter went back: a
// copy of the key may be in use elsewhere.
var ErrCloned = errors.New("the security key's counter went backwards; it may have been copied — ask an administrator")

// FinishLogin checks the browser's answer to c and returns the credential
// used, its sign count updated. A counter that did not advance (when the
// authenticator keeps one) is ErrCloned.
func (w *WebAuthn) FinishLogin(u User, c Ceremony, answer []byte) (webauthn.Credential, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(answer)
	if err != nil {
		return webauthn.Credential{}, fmt.Errorf("read the authenticator's answer: %w", describe(err))
	}
	cred, err := w.wa.ValidateLogin(u, c, parsed)
	if err != nil {
		return webauthn.Credential{}, fmt.Errorf("check the authenticator's signature: %w", describe(err))
	}
	if cred.Authenticator.CloneWarning {
		return webauthn.Credential{}, ErrCloned
	}
	return *cred, nil
}

// describe keeps the library's detail of a protocol error, which says
// what was wrong ("Error validating origin"), in the message.
func describe(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return fmt.Errorf("%s: %w", pe.Details, err)
	}
	return err
}

// CredentialIndex returns the index in creds of the credential with id,
// or -1.
func CredentialIndex(creds []webauthn.Credential, id []byte) int {
	for i, c := range creds {
		if bytes.Equal(c.ID, id) {
			return i
		}
	}
	return -1
}
