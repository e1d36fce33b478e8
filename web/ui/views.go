// Package ui renders the portal's pages with templ. Handlers fill the plain
// view structs below; templ escapes every string they carry.
package ui

import (
	"strconv"
	"strings"
	"time"
)

// Viewer is the signed-in user, as the layout shows them.
type Viewer struct {
	Name        string
	DisplayName string
	Role        string
}

// IsAdmin reports the admin role.
func (v *Viewer) IsAdmin() bool { return v != nil && v.Role == "admin" }

// CanAudit reports a role that may read the audit log.
func (v *Viewer) CanAudit() bool { return v != nil && (v.Role == "admin" || v.Role == "auditor") }

// Label is the name shown in the header.
func (v *Viewer) Label() string {
	if v.DisplayName != "" {
		return v.DisplayName
	}
	return v.Name
}

// Flash is a one-time message at the top of a page.
type Flash struct {
	Kind    string // "success" or "error"
	Message string
}

// Page is what every page shares.
type Page struct {
	Title  string
	Viewer *Viewer
	Flash  Flash
	// Section marks the active navigation entry: "home", "users", "groups",
	// "resources", "grants", "audit", "recordings", "account".
	Section string
	// Bundle names a page's own front-end bundle (/static/NAME.js and
	// NAME.css) loaded after app.js, such as "player".
	Bundle string
}

// Errors maps form fields to messages.
type Errors map[string]string

// Option is one choice of a select or checkbox list.
type Option struct {
	Value    string
	Label    string
	Selected bool
}

// SignInView is the sign-in form.
type SignInView struct {
	Next     string
	Username string
	Error    string
	// FirstRun is set while the portal has no users: the page says where
	// the setup link is instead of showing a form nobody can use.
	FirstRun bool
	// Providers are the single sign-on buttons (OIDC and SAML), in order.
	Providers []SignInProvider
}

// SignInProvider is a single sign-on button on the sign-in page: Label is
// the provider's display name, URL where the button starts its sign-in
// (carrying next).
type SignInProvider struct {
	Label string
	URL   string
}

// SetupView is the first-admin form.
type SetupView struct {
	Token       string
	Username    string
	DisplayName string
	Errors      Errors
}

// ResourceCard is a resource the viewer may connect to.
type ResourceCard struct {
	ID          int64
	Name        string
	Description string
	Protocol    string
	Host        string
	Address     string
	Tags        []string
	// ConnectHref opens a terminal or desktop, FilesHref the file browser;
	// each is empty when the viewer's grants do not allow it.
	ConnectHref string
	FilesHref   string
	// NativeCommand, for a resource only the keyway client reaches (tcp,
	// network), is the command that opens it.
	NativeCommand string
	// Favourite is starred by the viewer; FavouriteHref toggles it.
	Favourite     bool
	FavouriteHref string
	// StepUpMinutes, when positive, is how recent an MFA check a
	// connection needs.
	StepUpMinutes int
	// Match is false for a resource the search hides (it stays in the
	// page, hidden, so that script can show it again as the search
	// changes).
	Match bool
}

// Search is the text the home page's search looks in, in lower case:
// name, description, host and tags.
func (c ResourceCard) Search() string {
	return strings.ToLower(strings.Join(append([]string{c.Name, c.Description, c.Host}, c.Tags...), "\n"))
}

// TagList is the tags, one per line, for the live filter.
func (c ResourceCard) TagList() string { return strings.ToLower(strings.Join(c.Tags, "\n")) }

// Href is where choosing the resource leads: its session, else its files.
func (c ResourceCard) Href() string {
	if c.ConnectHref != "" {
		return c.ConnectHref
	}
	return c.FilesHref
}

// RecentLink is a recently used resource, for quick access.
type RecentLink struct {
	Name string
	Href string
}

// HomeView lists the viewer's resources.
type HomeView struct {
	// Favourites come first, then Others; both hold every granted resource
	// (Match says which the search shows).
	Favourites []ResourceCard
	Others     []ResourceCard
	Recent     []RecentLink
	// Total is the number of granted resources, Matches how many the
	// search shows.
	Total   int
	Matches int
	// The search: words, protocol and tag, and the choices offered.
	Q         string
	Protocol  string
	Tag       string
	Protocols []Option
	Tags      []Option
	// Back is this page's address with its search, for forms to return to.
	Back string
	// Compact shows one line per resource; ViewHref switches the view.
	Compact  bool
	ViewHref string
	// For an admin with no grants: how many resources exist at all, and
	// the Grants page showing their own grants.
	AllResources int
	GrantsHref   string
}

// Filtered reports a search in effect.
func (v HomeView) Filtered() bool { return v.Q != "" || v.Protocol != "" || v.Tag != "" }

// TerminalView is the terminal page.
type TerminalView struct {
	ResourceName string
	Address      string
	WSPath       string
	// Watch shows someone else's session, read-only.
	Watch bool
	// FilesHref links to the resource's files where the viewer's grant
	// allows them.
	FilesHref string
}

// TerminalFontSizes are the terminal's font sizes to choose from, in CSS
// pixels; DefaultTerminalFontSize is the one before a choice.
var TerminalFontSizes = []int{10, 12, 13, 14, 16, 18, 20, 24, 28, 32}

// DefaultTerminalFontSize is the terminal's font size until the user
// picks another.
const DefaultTerminalFontSize = 14

// UserRow is one row of the users table.
type UserRow struct {
	ID          int64
	Name        string
	DisplayName string
	Role        string
	Groups      []string
	Disabled    bool
	CreatedAt   time.Time
	// Source is how the user signs in ("Local password" or a provider);
	// NoSignIn marks a source whose provider was deleted.
	Source   string
	NoSignIn bool
	// MFA are the user's factor kinds, for people.
	MFA []string
}

// UsersView is the users page.
type UsersView struct {
	Users []UserRow
}

// UserFormView is the new/edit user form.
type UserFormView struct {
	IsNew       bool
	ID          int64
	Name        string
	DisplayName string
	Role        string
	Groups      []Option
	Disabled    bool
	// Sources are the "Signs in with" choices, the user's selected.
	Sources []Option
	Errors  Errors
	// Lock is the account's failed sign-ins.
	Lock SignInLockView
	// Devices are the user's native-client devices.
	Devices []DeviceRow
	// MFA is the user's second factors.
	MFA UserMFAView
}

// GroupRow is one row of the groups table.
type GroupRow struct {
	ID          int64
	Name        string
	Description string
	Members     int
}

// GroupsView is the groups page with its create form.
type GroupsView struct {
	Groups      []GroupRow
	Name        string
	Description string
	Errors      Errors
}

// ResourceRow is one row of the resources table.
type ResourceRow struct {
	ID                 int64
	Name               string
	Protocol           string
	Address            string
	Login              string
	Tags               []string
	HostKeyFingerprint string
	// CertIgnored is set for an RDP resource that accepts any certificate.
	CertIgnored bool
}

// ResourcesView is the admin resources page.
type ResourcesView struct {
	Resources []ResourceRow
}

// GrantRow is one grant.
type GrantRow struct {
	ID           int64
	ResourceName string
	SubjectKind  string
	SubjectName  string
	// Mode says what the grant allows, in words; ModeValue is the mode
	// (terminal, files or both).
	Mode      string
	ModeValue string
	// FilesPossible is set for SSH resources: only they have files, so
	// only their grants can change mode.
	FilesPossible bool
	CreatedAt     time.Time
}

// ResourceFormView is the new/edit resource form.
type ResourceFormView struct {
	IsNew         bool
	ID            int64
	Name          string
	Description   string
	Protocol      string
	Host          string
	Port          string
	Login         string
	Tags          string
	HasPassword   bool
	HasPrivateKey bool
	// Desktop options.
	ViewOnly   bool
	Clipboard  string
	ColorDepth int
	// RDP options; Resolution is "fit" or WIDTHxHEIGHT.
	Domain         string
	Security       string
	IgnoreCert     bool
	Resolution     string
	KeyboardLayout string
	// Session recording: "on", "required" or "off"; RecordInput records
	// typed input.
	Recording   string
	RecordInput bool
	// File browser (SSH): MaxUpload in megabytes ("" for no limit).
	MaxUpload  string
	NoUpload   bool
	NoDownload bool
	// DotfileChanges lifts the protection of dotfiles.
	DotfileChanges bool
	// Session limits in minutes ("" for none).
	IdleTimeout string
	MaxSession  string
	// StepUp is the step-up window in minutes ("" for off).
	StepUp string
	// Native clients: Tunnel lets them reach an SSH, RDP or VNC
	// resource's port; Networks are a network resource's rules.
	Tunnel   bool
	Networks string
	// Host key state, edit only.
	HostKeyFingerprint string
	HostKeyPinnedAt    time.Time
	OfferedFingerprint string
	Grants             []GrantRow
	Errors             Errors
}

// GrantsView is the grants page with its create form.
type GrantsView struct {
	Grants    []GrantRow
	Resources []Option
	Subjects  []Option
	// Mode is the mode chosen in the form: terminal, files or both.
	Mode   string
	Errors Errors
	// The list's filters (a resource id; user:ID or group:ID), their
	// choices, and how many grants there are unfiltered.
	FilterResource string
	FilterSubject  string
	ResourceFilter []Option
	SubjectFilter  []Option
	Total          int
	// Back is this page with its filters, for the row forms to return to.
	Back string
}

// Filtered reports a filter in effect.
func (v GrantsView) Filtered() bool { return v.FilterResource != "" || v.FilterSubject != "" }

// AuditFilterView is the audit filter form's values.
type AuditFilterView struct {
	Actor   string
	Action  string
	Outcome string
	Q       string
	Since   string
	Until   string
	TZ      string
}

// AuditRow is one audit event.
type AuditRow struct {
	ID         int64
	Time       time.Time
	Actor      string
	Action     string
	Target     string
	Outcome    string
	Reason     string
	ClientAddr string
	Details    string
}

// AuditView is the audit log page.
type AuditView struct {
	Filter    AuditFilterView
	Actions   []string
	Events    []AuditRow
	OlderHref string
	// NewestHref goes back to the first page, from an older one.
	NewestHref string
	// ExportHref downloads every event matching the filters as CSV.
	ExportHref string
	Errors     Errors
}

// TokenRow is one API token.
type TokenRow struct {
	ID         int64
	Name       string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt time.Time
	Revoked    bool
	Expired    bool
}

// AccountView is the account page.
type AccountView struct {
	Name        string
	DisplayName string
	Role        string
	Groups      []string
	Tokens      []TokenRow
	Devices     []DeviceRow
	Client      NativeClientView
	// NewToken is shown once, right after it was created.
	NewToken     string
	NewTokenName string
	Errors       Errors
}

// ErrorView is an error page.
type ErrorView struct {
	Status  int
	Title   string
	Message string
}

func title(t string) string {
	if t == "" {
		return "Keyway"
	}
	return t + " · Keyway"
}

func utcText(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func iso(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func join(s []string) string { return strings.Join(s, ", ") }

func outcomeClass(o string) string {
	switch o {
	case "success":
		return "badge ok"
	case "failure":
		return "badge bad"
	case "denied":
		return "badge warn"
	}
	return "badge"
}

func navCurrent(p Page, section string) string {
	if p.Section == section {
		return "page"
	}
	return "false"
}

// GatewayRow is a gateway with its health, as lists show it.
type GatewayRow struct {
	ID             int64
	Name           string
	Address        string
	State          string
	LastCheck      time.Time
	LastError      string
	Version        string
	Uptime         string
	ActiveSessions int
	Embedded       bool
}

// SegmentView is a segment with its gateways.
type SegmentView struct {
	ID              int64
	Name            string
	Description     string
	AllowedNetworks string
	ServesUntagged  bool
	Gateways        []GatewayRow
}

// GatewaysView is the gateways page.
type GatewaysView struct {
	Tunnel   bool
	Segments []SegmentView
	// The new-segment form.
	Name        string
	Description string
	Networks    string
	// ServesUntagged is the new-segment form's checkbox (ticked at first).
	ServesUntagged bool
	Errors         Errors
}

// GatewayFormView is the new gateway form.
type GatewayFormView struct {
	Segments []Option
	// NeedSegment is set when no segment can take the gateway yet (the
	// default one holds only the embedded gateway): the page asks for a
	// new segment first, with these values.
	NeedSegment        bool
	SegmentName        string
	SegmentDescription string
	SegmentNetworks    string
	Name               string
	Host               string
	SSHPort            string
	RDPPort            string
	VNCPort            string
	MgmtPort           string
	Errors             Errors
}

// GatewayView is one gateway's page.
type GatewayView struct {
	GatewayRow
	Segment        string
	ManagementAddr string
	KeyFingerprint string
	Errors         Errors
	// Keys are the gateway's two keys its access tokens are made with;
	// ActiveSlot is the one new tokens are made on.
	Keys       []GatewayKeyView
	ActiveSlot string
	// The token last issued to the gateway: its slot and times.
	TokenSlot      string
	TokenIssuedAt  time.Time
	TokenExpiresAt time.Time
	// RenewError is why the gateway's last renewal failed, as it
	// reported at RenewErrorAt.
	RenewError   string
	RenewErrorAt time.Time
	// TokenWarnings say what needs the admin's attention.
	TokenWarnings []string
}

// regenerateQuestion asks before a key is regenerated.
func regenerateQuestion(v GatewayView, k GatewayKeyView) string {
	q := "Regenerate the " + k.Slot + " key of " + v.Name + "? Every token made with it is refused at once."
	if k.InUse {
		q += " The gateway's current token was made with it: the gateway is cut off until you paste its public key again."
	}
	return q
}

// GatewayKeyView is one of a gateway's keys.
type GatewayKeyView struct {
	Slot          string
	Generation    int64
	RegeneratedAt time.Time
	// Active: new tokens are made with it; InUse: the gateway's token was.
	Active bool
	InUse  bool
}

func stateClass(s string) string {
	switch s {
	case "available":
		return "badge ok"
	case "unavailable":
		return "badge bad"
	case "pending", "checking":
		return "badge warn"
	}
	return "badge"
}

// DesktopView is the desktop (VNC, RDP) page.
type DesktopView struct {
	ResourceName string
	Address      string
	WSPath       string
	// ClipboardMax is the most clipboard text the page may send, in bytes.
	ClipboardMax int
}

func (v DesktopView) clipboardMaxAttr() string { return strconv.Itoa(v.ClipboardMax) }

// KeyNoun names what a resource pins: an SSH host key or a TLS
// certificate.
func (v ResourceFormView) KeyNoun() string {
	if v.Protocol == "ssh" || v.Protocol == "" {
		return "host key"
	}
	return "TLS certificate"
}

// KeyTitle heads the pinned-key section.
func (v ResourceFormView) KeyTitle() string {
	if v.Protocol == "ssh" || v.Protocol == "" {
		return "SSH host key"
	}
	return "Server TLS certificate"
}

// Resolutions are the screen sizes an RDP resource can have, with sel
// ("fit" or WIDTHxHEIGHT) selected.
func Resolutions(sel string) []Option {
	opts := []Option{{Value: "fit", Label: "Fit the browser window (resized with it where the server can)"}}
	for _, r := range []string{"1024x768", "1280x720", "1280x800", "1280x1024", "1366x768", "1440x900", "1600x900", "1680x1050", "1920x1080", "1920x1200", "2560x1440"} {
		opts = append(opts, Option{Value: r, Label: strings.Replace(r, "x", " × ", 1)})
	}
	found := false
	for i := range opts {
		if opts[i].Value == sel || (sel == "" && opts[i].Value == "fit") {
			opts[i].Selected, found = true, true
		}
	}
	if !found { // a size set through the API
		opts = append(opts, Option{Value: sel, Label: strings.Replace(sel, "x", " × ", 1), Selected: true})
	}
	return opts
}

// KeyboardLayouts are the keyboard layouts an RDP resource can have, with
// sel selected.
func KeyboardLayouts(sel string) []Option {
	opts := []Option{
		{Value: "en-us", Label: "English (US)"}, {Value: "en-gb", Label: "English (UK)"}, {Value: "de-de", Label: "German"},
		{Value: "de-ch", Label: "German (Switzerland)"}, {Value: "fr-fr", Label: "French"}, {Value: "fr-ch", Label: "French (Switzerland)"},
		{Value: "es-es", Label: "Spanish"}, {Value: "it-it", Label: "Italian"}, {Value: "pt-br", Label: "Portuguese (Brazil)"},
		{Value: "sv-se", Label: "Swedish"}, {Value: "nl-nl", Label: "Dutch"}, {Value: "ja-jp", Label: "Japanese"},
	}
	for i := range opts {
		opts[i].Selected = opts[i].Value == sel || (sel == "" && opts[i].Value == "en-us")
	}
	return opts
}

// SpecialKey is a key combination the desktop page's Keys menu sends,
// because the browser or the local system would take it: keysyms in
// press order, comma-separated.
type SpecialKey struct {
	Label   string
	Keysyms string
}

// SpecialKeys are the Keys menu's combinations.
var SpecialKeys = []SpecialKey{
	{"Ctrl+Alt+Del", "0xffe3,0xffe9,0xffff"},
	{"Ctrl+Shift+Esc (Task Manager)", "0xffe3,0xffe1,0xff1b"},
	{"Windows key", "0xffeb"},
	{"Ctrl+Esc (Start menu)", "0xffe3,0xff1b"},
	{"Alt+Tab", "0xffe9,0xff09"},
	{"Alt+F4", "0xffe9,0xffc1"},
	{"Ctrl+W", "0xffe3,0x77"},
	{"Ctrl+T", "0xffe3,0x74"},
	{"Ctrl+N", "0xffe3,0x6e"},
	{"Ctrl+Alt+Backspace", "0xffe3,0xffe9,0xff08"},
	{"Print Screen", "0xff61"},
	{"F11", "0xffc8"},
}

// SessionRow is one running session.
type SessionRow struct {
	ID, User, Resource, Protocol, Gateway, ClientAddr string
	Start                                             time.Time
	// Duration is how long it has run, and Idle how long since its user
	// last typed or used the mouse (zero for file transfers).
	Duration, Idle time.Duration
	// Watchable sessions (terminals) can be watched read-only.
	Watchable bool
	// Posture is what the connection authorization hook reported about
	// the client.
	Posture []string
	// Tunnel is a native client's TCP stream, from Device (empty for an
	// API token) to Target (host:port).
	Tunnel         bool
	Device, Target string
}

// SessionsView is the live sessions page.
type SessionsView struct {
	Sessions     []SessionRow
	CanTerminate bool
	// Users, Resources and Gateways are those of the running sessions,
	// to end all sessions of one.
	Users, Resources, Gateways []string
}

// FilesView is the file browser's listing of one folder on an SSH
// resource.
type FilesView struct {
	ResourceID   int64
	ResourceName string
	Address      string
	// Dir is the folder shown, as the target resolved it.
	Dir    string
	Crumbs []Crumb
	// HereHref lists Dir again (after an upload); ParentHref lists its
	// parent ("" at the root); HiddenHref toggles hidden files.
	HereHref    string
	UploadHref  string
	ParentHref  string
	HiddenHref  string
	ShowHidden  bool
	HiddenCount int
	Entries     []FileRow
	// Sort is the column sorted by ("" is name), Desc its order; SortHref
	// links each column's header.
	Sort     string
	Desc     bool
	SortHref map[string]string
	// Error is the target's refusal to list Dir, in words.
	Error       string
	CanUpload   bool
	CanDownload bool
	// ProtectDotfiles: dotfiles can be downloaded, not changed.
	ProtectDotfiles bool
	// MaxUpload is the largest upload in bytes; 0 is no limit.
	MaxUpload int64
}

// Crumb is one folder of the path above a listing.
type Crumb struct {
	Name string
	Href string
}

// FileRow is one file or folder in a listing.
type FileRow struct {
	Name string
	Path string
	// Href opens a folder or downloads a file; DownloadHref downloads (a
	// folder as a zip); both empty when downloads are off.
	Href         string
	DownloadHref string
	IsDir        bool
	// Link is a symlink's target; Broken marks one that leads nowhere.
	Link     string
	Broken   bool
	Size     int64
	Modified time.Time
	// Mode is the permissions as ls shows them, Octal as chmod takes them.
	Mode  string
	Octal string
	Owner string
}
