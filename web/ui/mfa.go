package ui

import "time"

// MFAChallengeView asks for a second factor: at sign-in (Action
// "/signin/mfa") or for a step-up check (Action "/mfa/verify").
type MFAChallengeView struct {
	Heading string
	Intro   string
	// Action is the base path: the code form posts there, the passkey
	// ceremony uses Action+"/webauthn/begin" and "/finish".
	Action string
	// Next is where a step-up check returns to.
	Next string
	// Cancel, if set, is the form that abandons a sign-in.
	Cancel string
	Error  string
	// TOTP and WebAuthn say which factors the user has; RecoveryLeft how
	// many recovery codes.
	TOTP, WebAuthn bool
	RecoveryLeft   int
	// EnrolHref, when set, says the user has no factor: enrol there first.
	EnrolHref string
}

// MFAEnrolView adds a factor: at sign-in when the user must (SignIn), or
// from the account page.
type MFAEnrolView struct {
	SignIn  bool
	Heading string
	Intro   string
	// Action is the base path: TOTP posts to Action+"/totp", passkeys use
	// Action+"/webauthn/begin" and "/finish".
	Action string
	Cancel string
	Next   string
	// TOTPSecret (base32, for typing in) and TOTPQR (a data: URI) are the
	// key being enrolled; TOTPName the name typed.
	TOTPSecret string
	TOTPQR     string
	TOTPName   string
	// WebAuthn says passkeys can be added; WebAuthnNote why not.
	WebAuthn     bool
	WebAuthnNote string
	Errors       Errors
}

// MFAFactorRow is one of a user's factors.
type MFAFactorRow struct {
	ID         int64
	Kind       string
	Name       string
	CreatedAt  time.Time
	LastUsedAt time.Time
}

// KindLabel is the factor's kind in words.
func (f MFAFactorRow) KindLabel() string {
	switch f.Kind {
	case "totp":
		return "Authenticator app"
	case "webauthn":
		return "Passkey or security key"
	}
	return f.Kind
}

// AccountMFAView is the account's MFA page.
type AccountMFAView struct {
	Factors      []MFAFactorRow
	RecoveryLeft int
	// Fresh says the session passed an MFA check just now: removing a
	// factor needs no password.
	Fresh bool
	// Required says the administrator requires MFA of this user.
	Required     bool
	WebAuthn     bool
	WebAuthnNote string
	// Next is where to continue once done (after enrolling for a step-up
	// check or at sign-in).
	Next   string
	Errors Errors
}

// RecoveryCodesView shows fresh recovery codes, once.
type RecoveryCodesView struct {
	Codes []string
	Next  string
}

// MFARequirementsView is the admin form of who must use MFA.
type MFARequirementsView struct {
	Everyone bool
	Roles    []Option
	Groups   []Option
	Errors   Errors
}

// UserMFAView is a user's second factors on their admin page.
type UserMFAView struct {
	Factors      []MFAFactorRow
	RecoveryLeft int
}
