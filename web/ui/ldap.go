package ui

// LDAPFormView is the add or edit form of an LDAP directory (issue 20).
// Field values are as the admin typed them; the bind password is never
// echoed (BindPasswordSet says one is stored).
type LDAPFormView struct {
	ID                                                     int64 // 0: a new directory
	Name, DisplayName                                      string
	Enabled                                                bool
	URL                                                    string
	StartTLS                                               bool
	CAPEM                                                  string
	BindDN                                                 string
	BindPasswordSet                                        bool
	UserDNTemplate, UserBase, UserFilter                   string
	UsernameAttr, DisplayNameAttr, MailAttr                string
	GroupBase, GroupFilter, GroupMemberAttr, GroupNameAttr string
	Nested                                                 string
	MaxGroups, ConnectTimeout, Timeout                     string
	Errors                                                 Errors
	// Test is the result of the Test form, if it was just used.
	Test *LDAPTestView
}

// LDAPTestView is what a Test of a directory found: each step with its
// outcome, then the user's entry and groups.
type LDAPTestView struct {
	Username string
	// PasswordChecked says the user's password was tried (a bind as the
	// user); otherwise the service account only looked the user up.
	PasswordChecked bool
	Steps           []LDAPTestStep
	Error           string
	DN              string
	Name            string
	DisplayName     string
	Email           string
	Groups          []LDAPTestGroup
}

// LDAPTestStep is one step of a Test (connect, StartTLS, bind, search,
// user bind, groups).
type LDAPTestStep struct {
	Name    string
	Detail  string
	Error   string
	Elapsed string
}

// LDAPTestGroup is a group the tested user is in.
type LDAPTestGroup struct {
	DN, Name string
}
