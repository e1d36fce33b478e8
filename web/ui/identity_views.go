package ui

// IdentityProviderRow is one provider on the Sign-in & MFA page.
type IdentityProviderRow struct {
	ID          int64
	Kind        string
	KindLabel   string
	Name        string
	DisplayName string
	Enabled     bool
	Users       int
}

// IdentityView is the Sign-in & MFA overview.
type IdentityView struct {
	Providers []IdentityProviderRow
	// LocalEnabled: users sign in with passwords kept by Keyway.
	LocalEnabled bool
	// BreakGlass lists the local admins that may be the break-glass admin,
	// the current one selected.
	BreakGlass  []Option
	LocalErrors Errors
}

// MappingRow is one group mapping on the provisioning form.
type MappingRow struct {
	ClaimValue string
	Group      string
	// Remove is ticked to delete the row at the next save.
	Remove bool
}

// ProvisioningView is a provider's user provisioning and group mappings.
type ProvisioningView struct {
	ID          int64
	Kind        string
	KindLabel   string
	Name        string
	DisplayName string
	JITCreate   bool
	JITRole     string
	Mappings    []MappingRow
	// Groups are the Keyway groups a mapping can name.
	Groups []string
	// ClaimLabel names what a mapping matches for this kind of provider.
	ClaimLabel string
	Users      int
	Errors     Errors
}
