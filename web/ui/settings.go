package ui

// SettingsView is the admin's Settings page: the connection
// authorization hook and the trusted proxies.
type SettingsView struct {
	Hook       HookSettingsView
	HookErrors Errors
	// NewSecret is a secret the portal just generated, shown this once.
	NewSecret string
	// Test is the outcome of "Send test request", if one was sent.
	Test *HookTestView

	// Proxies is the trusted networks, one per line, as saved or typed.
	Proxies     string
	ProxyErrors Errors
	// YourAddr is the address the portal sees for the admin now;
	// ConnAddr the address their connection comes from, and Forwarding
	// the forwarding headers it carried.
	YourAddr, ConnAddr, Forwarding string

	// Clients is the native-client limits form.
	Clients ClientSettingsView
}

// HookSettingsView is the hook's form. The secret is never shown.
type HookSettingsView struct {
	Enabled     bool
	URL         string
	CABundle    string
	MaxInFlight string
	SecretSet   bool
}

// HookTestView is one test request and its answer.
type HookTestView struct {
	URL      string
	Request  string
	Response string
	Elapsed  string
	Allowed  bool
	// Reason is the refusal's reason code; Message what a user would see.
	Reason, Message string
	Posture         []string
	// Error says what went wrong, when the hook did not answer properly.
	Error string
}
