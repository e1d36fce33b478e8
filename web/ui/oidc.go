package ui

// OIDCFormView is the form adding or changing an OpenID Connect provider.
type OIDCFormView struct {
	ID                  int64 // 0 for a new provider
	Name                string
	DisplayName         string
	Enabled             bool
	IssuerURL           string
	ClientID            string
	HasSecret           bool // a secret is kept; blank keeps it
	Scopes              string
	UsernameClaim       string
	GroupsClaim         string
	AllowedEmailDomains string
	CABundle            string
	// RedirectURI and SignOutURI are what the admin registers at the
	// provider ("" until the name is known).
	RedirectURI string
	SignOutURI  string
	Errors      Errors
}

// OIDCTestView shows what a provider's test found: its endpoints, or why
// it could not be reached; after a test sign-in, the ID token's claims.
type OIDCTestView struct {
	ID        int64
	Name      string
	Error     string
	Endpoints []Field
	// Claims are a sample ID token's, shown after the admin signed in
	// through the provider in test mode.
	Claims []Field
	// Identity is what Keyway would make of them.
	Identity []Field
}

// Field is a labelled value.
type Field struct {
	Label string
	Value string
}

// SSORefusedView explains a refused single sign-on.
type SSORefusedView struct {
	Title   string
	Message string
	// BreakGlass says the password form still works (the provider is down).
	BreakGlass bool
}

// SignOutRedirectView sends the browser to the identity provider to end
// its session there too.
type SignOutRedirectView struct {
	URL string
}
