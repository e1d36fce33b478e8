package store

// Identity providers, linked accounts and MFA factors (issue 20).
//
// SKELETON: the signatures below are the contract between the parts of
// issue 20; the identity-core helper implements them. Until then they
// return errNotImplemented.

import (
	"context"
	"errors"
	"time"
)

var errNotImplemented = errors.New("not implemented yet")

// Provider kinds.
const (
	KindOIDC = "oidc"
	KindSAML = "saml"
	KindLDAP = "ldap"
)

// SourceLocal is the source of users whose password is kept here.
const SourceLocal = "local"

// ProviderSource is users.source for a provider: kind + ":" + name.
func ProviderSource(kind, name string) string { return kind + ":" + name }

// IdentityProvider is an OIDC, SAML or LDAP provider. Config is the kind's
// own JSON (kept sealed at rest; plaintext here); each kind's package
// parses it.
type IdentityProvider struct {
	ID          int64
	Kind        string
	Name        string // slug: [a-z0-9-], 1-32 characters
	DisplayName string
	Enabled     bool
	Config      []byte
	// JITCreate makes a user at first sign-in with JITRole; otherwise
	// only users created with this provider as source may sign in.
	JITCreate bool
	JITRole   Role
	// Mappings make the provider's group values Keyway group memberships.
	Mappings  []GroupMapping
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Source is the users.source of this provider's users.
func (p IdentityProvider) Source() string { return ProviderSource(p.Kind, p.Name) }

// GroupMapping makes users whose provider groups include ClaimValue
// members of the Keyway group Group (by name).
type GroupMapping struct {
	ClaimValue string
	Group      string
}

// CreateIdentityProvider inserts p (with its mappings).
func (s *Store) CreateIdentityProvider(ctx context.Context, p IdentityProvider) (IdentityProvider, error) {
	return IdentityProvider{}, errNotImplemented
}

// UpdateIdentityProvider saves p's name, display name, enabled flag,
// config and JIT settings (not its mappings).
func (s *Store) UpdateIdentityProvider(ctx context.Context, p IdentityProvider) error {
	return errNotImplemented
}

// SetGroupMappings replaces a provider's group mappings; a group that
// does not exist is ErrNotFound (wrapped, naming it).
func (s *Store) SetGroupMappings(ctx context.Context, providerID int64, m []GroupMapping) error {
	return errNotImplemented
}

// DeleteIdentityProvider deletes a provider, its mappings and links. Its
// users stay, with their source, and cannot sign in until changed.
func (s *Store) DeleteIdentityProvider(ctx context.Context, id int64) error {
	return errNotImplemented
}

// IdentityProviderByID returns a provider with its mappings.
func (s *Store) IdentityProviderByID(ctx context.Context, id int64) (IdentityProvider, error) {
	return IdentityProvider{}, errNotImplemented
}

// IdentityProviderByName returns the provider of kind called name.
func (s *Store) IdentityProviderByName(ctx context.Context, kind, name string) (IdentityProvider, error) {
	return IdentityProvider{}, errNotImplemented
}

// ListIdentityProviders returns the providers of kind ("" for all) by
// kind then name, with their mappings.
func (s *Store) ListIdentityProviders(ctx context.Context, kind string) ([]IdentityProvider, error) {
	return nil, errNotImplemented
}

// ExternalLogin is what a provider says about a user who just signed in.
type ExternalLogin struct {
	// Subject is the provider's stable id of the user (OIDC sub, SAML
	// NameID, LDAP DN).
	Subject     string
	Username    string
	DisplayName string
	Email       string
	// Groups are the provider's group values (claim values, DNs or
	// names), matched against the provider's mappings.
	Groups []string
}

// Provision errors.
var (
	// ErrNotProvisioned: no linked or matching user, and the provider does
	// not create users.
	ErrNotProvisioned = errors.New("no Keyway account is set up for this identity")
	// ErrSourceMismatch: a user with this name exists but signs in
	// elsewhere (locally or through another provider); never linked.
	ErrSourceMismatch = errors.New("an account with this name signs in another way")
)

// Provision finds or creates the Keyway user for a provider's sign-in,
// links the subject, and re-applies the group mappings: the user's
// memberships of groups that any of p's mappings name become exactly those
// the mappings give for in.Groups; other memberships stay. A user is found
// by the link (provider, subject), else by name with source p.Source();
// else created when p.JITCreate. A disabled user is ErrDisabled-like:
// returned with Disabled set, the caller refuses. created says a user was
// made now.
func (s *Store) Provision(ctx context.Context, p IdentityProvider, in ExternalLogin) (u User, created bool, err error) {
	return User{}, false, errNotImplemented
}

// Local password sign-in (settings): Enabled false lets only the
// break-glass admin sign in with a password kept here.
type LocalPasswords struct {
	Enabled        bool
	BreakGlassUser string
}

// LocalPasswordSettings returns the local password settings (enabled by
// default).
func (s *Store) LocalPasswordSettings(ctx context.Context) (LocalPasswords, error) {
	return LocalPasswords{Enabled: true}, nil
}

// SetLocalPasswordSettings saves them; turning passwords off needs a
// break-glass user who exists, is an admin and is local.
func (s *Store) SetLocalPasswordSettings(ctx context.Context, lp LocalPasswords) error {
	return errNotImplemented
}

// MFARequirement says who must use MFA at sign-in (local and LDAP users).
type MFARequirement struct {
	Everyone bool
	Roles    []Role
	Groups   []string
}

// MFARequirementSettings returns it (nobody by default).
func (s *Store) MFARequirementSettings(ctx context.Context) (MFARequirement, error) {
	return MFARequirement{}, nil
}

// SetMFARequirementSettings saves it.
func (s *Store) SetMFARequirementSettings(ctx context.Context, m MFARequirement) error {
	return errNotImplemented
}

// Requires reports whether m asks u to use MFA.
func (m MFARequirement) Requires(u User) bool {
	return false
}

// MFA factor kinds.
const (
	FactorTOTP     = "totp"
	FactorWebAuthn = "webauthn"
)

// MFAFactor is a user's TOTP key or WebAuthn credential. Secret is the
// TOTP key (plaintext here, sealed at rest); CredentialID and Data are a
// WebAuthn credential's id and JSON.
type MFAFactor struct {
	ID           int64
	UserID       int64
	Kind         string
	Name         string
	Secret       string
	CredentialID []byte
	Data         string
	LastStep     int64
	CreatedAt    time.Time
	LastUsedAt   time.Time
}

// AddMFAFactor stores a factor.
func (s *Store) AddMFAFactor(ctx context.Context, f MFAFactor) (MFAFactor, error) {
	return MFAFactor{}, errNotImplemented
}

// MFAFactors returns a user's factors, oldest first.
func (s *Store) MFAFactors(ctx context.Context, userID int64) ([]MFAFactor, error) {
	return nil, nil
}

// MFAFactorByCredentialID returns the WebAuthn factor with that id.
func (s *Store) MFAFactorByCredentialID(ctx context.Context, credID []byte) (MFAFactor, error) {
	return MFAFactor{}, errNotImplemented
}

// UseTOTPStep records that a TOTP factor accepted time step step; it
// reports false (and changes nothing) when step is not after the last one
// accepted, so that a code works once.
func (s *Store) UseTOTPStep(ctx context.Context, factorID, step int64) (bool, error) {
	return false, errNotImplemented
}

// UpdateWebAuthnFactor saves a credential's new data (sign count) and
// marks it used.
func (s *Store) UpdateWebAuthnFactor(ctx context.Context, factorID int64, data string) error {
	return errNotImplemented
}

// DeleteMFAFactor removes one of a user's factors.
func (s *Store) DeleteMFAFactor(ctx context.Context, userID, factorID int64) error {
	return errNotImplemented
}

// ResetMFA removes all of a user's factors and recovery codes.
func (s *Store) ResetMFA(ctx context.Context, userID int64) error {
	return errNotImplemented
}

// SetRecoveryCodes replaces a user's recovery codes by those hashes.
func (s *Store) SetRecoveryCodes(ctx context.Context, userID int64, hashes []string) error {
	return errNotImplemented
}

// UseRecoveryCode marks the unused code with that hash used; false when
// there is none.
func (s *Store) UseRecoveryCode(ctx context.Context, userID int64, hash string) (bool, error) {
	return false, errNotImplemented
}

// RecoveryCodesLeft counts a user's unused recovery codes.
func (s *Store) RecoveryCodesLeft(ctx context.Context, userID int64) (int, error) {
	return 0, nil
}

// SetDeviceMFA records when a device's user last passed an MFA check for
// it (at approval, or a later step-up).
func (s *Store) SetDeviceMFA(ctx context.Context, deviceID int64, at time.Time) error {
	return errNotImplemented
}
