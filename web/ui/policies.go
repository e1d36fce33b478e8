package ui

// PoliciesView lists the access policies.
type PoliciesView struct {
	Policies []PolicyRow
}

// PolicyRow is one policy in the list.
type PolicyRow struct {
	ID          int64
	Name        string
	Description string
	// AppliesTo says whom: "Everyone", "Group ops", "Resource web".
	AppliesTo string
	// Networks and Windows are empty for any network and any time.
	Networks []string
	Windows  []string
	TimeZone string
	// MaxSession is "90 min" or "" for none; MaxSessions 0 is none.
	MaxSession  string
	MaxSessions int
	// StepUpMinutes asks for an MFA check that recent; 0 is none.
	StepUpMinutes int
	// Allows and Denies name the permissions on and off.
	Allows  []string
	Denies  []string
	Enabled bool
}

// PolicyFormView creates or edits a policy.
type PolicyFormView struct {
	ID          int64
	IsNew       bool
	Name        string
	Description string
	// Scope is "everyone", "resource:ID" or "group:ID"; Resources and
	// Groups are the choices besides everyone.
	Scope     string
	Resources []Option
	Groups    []Option
	// Networks and Windows are the text areas: one network, one window
	// a line.
	Networks    string
	Windows     string
	TimeZone    string
	MaxSession  string
	MaxSessions string
	// StepUp is the step-up window in minutes ("" for none).
	StepUp string
	// The permissions.
	AllowTerminal, AllowUpload, AllowDownload, AllowClipboardIn, AllowClipboardOut bool
	Enabled                                                                        bool
	Errors                                                                         Errors
}
