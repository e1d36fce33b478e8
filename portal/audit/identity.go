package audit

// Identity (issue 20). Sign-ins stay ActionSignIn, with details method,
// provider and factor; a refused single sign-on (bad signature, audience,
// expiry, replayed state, unknown user) is an ActionSignIn failure with the
// reason.
const (
	// Identity providers: an admin adding, changing, deleting or testing
	// one, or changing its user provisioning and group mappings.
	ActionIdPCreate       = "idp.create"
	ActionIdPUpdate       = "idp.update"
	ActionIdPDelete       = "idp.delete"
	ActionIdPTest         = "idp.test"
	ActionIdPProvisioning = "idp.provisioning"
	// ActionUserProvision is a user created at first single sign-on, or
	// whose groups a sign-in changed (details: added, removed).
	ActionUserProvision = "user.provision"
	// MFA: a user enrolling or removing a factor, or making new recovery
	// codes; an admin resetting a user's factors; a second-factor or
	// step-up check (success or failure, details: factor, purpose).
	ActionMFAEnrol    = "mfa.enrol"
	ActionMFARemove   = "mfa.remove"
	ActionMFARecovery = "mfa.recovery_codes"
	ActionMFAReset    = "mfa.reset"
	ActionMFAVerify   = "mfa.verify"
	// Settings: who must use MFA; local passwords on or off and the
	// break-glass admin.
	ActionSettingsMFA            = "settings.mfa"
	ActionSettingsLocalPasswords = "settings.local_passwords"
	// ActionDeviceStepUp is a user passing a step-up check for a native
	// client's device.
	ActionDeviceStepUp = "device.stepup"
)
