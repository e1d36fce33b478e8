package audit

// Actions on the portal's settings (the Settings page and its API).
const (
	// ActionSettingsHook is a change of the connection authorization
	// hook; its details never hold the shared secret.
	ActionSettingsHook = "settings.hook"
	// ActionSettingsHookTest is an admin's "Send test request".
	ActionSettingsHookTest = "settings.hook.test"
	// ActionSettingsProxies is a change of the trusted proxies.
	ActionSettingsProxies = "settings.proxies"
	// ActionSettingsClients is a change of the native-client limits.
	ActionSettingsClients = "settings.clients"
)
