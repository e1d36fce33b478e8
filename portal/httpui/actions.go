package httpui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// The admin actions below are shared by the web forms and the JSON API so
// both validate, store and audit the same way.

// fieldErrors maps a form field to what is wrong with it, in words a user
// understands. A non-empty map means nothing was saved.
type fieldErrors map[string]string

func (fe fieldErrors) Error() string {
	parts := make([]string, 0, len(fe))
	for k, v := range fe {
		parts = append(parts, k+": "+v)
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	tagPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	hostPattern = regexp.MustCompile(`^[A-Za-z0-9.:_\[\]-]{1,253}$`)
)

const (
	maxTags        = 16
	maxDescription = 500
	maxPrivateKey  = 16 << 10
	maxSecret      = 1024
)

func checkName(fe fieldErrors, field, v string) {
	if !namePattern.MatchString(v) {
		fe[field] = "Use 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit."
	}
}

// conflictOrErr turns a store conflict into a field error on field.
func conflictOrErr(err error, field string) error {
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		return fieldErrors{field: capitalize(ce.Msg) + "."}
	}
	return err
}

func capitalize(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToUpper(string(r)) + s[n:]
}

type userInput struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"display_name"`
	Role        string   `json:"role"`
	Groups      []string `json:"groups"`
	Password    string   `json:"password,omitempty"`
	Disabled    bool     `json:"disabled"`
	// Source is how the user signs in: "local" or a provider's
	// "kind:name"; "" is local for a new user, unchanged for an update.
	Source string `json:"source,omitempty"`
}

func (s *Server) validateUser(ctx context.Context, in *userInput, isNew bool) (store.Role, fieldErrors, error) {
	fe := fieldErrors{}
	in.Name = strings.TrimSpace(in.Name)
	in.DisplayName = strings.TrimSpace(in.DisplayName)
	if store.ValidUserName(in.Name) != nil {
		fe["name"] = "Use 1 to 64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit."
	}
	if utf8.RuneCountInString(in.DisplayName) > 100 {
		fe["display_name"] = "Keep the display name under 100 characters."
	}
	role, err := store.ParseRole(in.Role)
	if err != nil {
		fe["role"] = "Choose admin, auditor or user."
	}
	in.Source = strings.TrimSpace(in.Source)
	if isNew && in.Source == "" {
		in.Source = store.SourceLocal
	}
	if err := s.checkUserSource(ctx, fe, in); err != nil {
		return "", nil, err
	}
	// A provider's user has no password here; a local one needs one when
	// made (an update to local from a provider is checked in updateUser).
	if in.Source != "" && in.Source != store.SourceLocal && in.Password != "" {
		fe["password"] = "Users who sign in through a provider have no password here: leave it blank."
	} else if isNew && in.Source == store.SourceLocal || in.Password != "" {
		if err := auth.ValidatePassword(in.Password); err != nil {
			fe["password"] = capitalize(err.Error())
		}
	}
	groups, err := s.Store.ListGroups(ctx)
	if err != nil {
		return "", nil, err
	}
	known := map[string]bool{}
	for _, g := range groups {
		known[g.Name] = true
	}
	for _, g := range in.Groups {
		if !known[g] {
			fe["groups"] = fmt.Sprintf("There is no group named %q.", g)
		}
	}
	return role, fe, nil
}

func (s *Server) createUser(r *http.Request, actor store.User, in userInput) (store.User, error) {
	ctx := r.Context()
	role, fe, err := s.validateUser(ctx, &in, true)
	if err != nil {
		return store.User{}, err
	}
	if len(fe) > 0 {
		return store.User{}, fe
	}
	hash := "" // a provider's user has no usable password
	if in.Source == store.SourceLocal {
		if hash, err = auth.HashPassword(in.Password); err != nil {
			return store.User{}, err
		}
	}
	u, err := s.Store.CreateUser(ctx, store.User{Name: in.Name, DisplayName: in.DisplayName, Role: role, Groups: in.Groups, Disabled: in.Disabled, Source: in.Source}, hash)
	if err != nil {
		return store.User{}, conflictOrErr(err, "name")
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionUserCreate, Target: u.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"role": string(u.Role), "groups": strings.Join(u.Groups, ","), "source": u.Source}})
	return u, nil
}

func (s *Server) updateUser(r *http.Request, actor store.User, id int64, in userInput) (store.User, error) {
	ctx := r.Context()
	old, err := s.Store.UserByID(ctx, id)
	if err != nil {
		return store.User{}, err
	}
	role, fe, err := s.validateUser(ctx, &in, false)
	if err != nil {
		return store.User{}, err
	}
	if old.ID == actor.ID && (role != store.RoleAdmin || in.Disabled) {
		fe["role"] = "You cannot remove your own admin role or disable yourself; ask another admin."
	}
	if in.Source == "" {
		in.Source = old.Source
	}
	if old.ID == actor.ID && in.Source != old.Source {
		fe["source"] = "You cannot change how you sign in yourself; ask another admin."
	}
	// Moving a provider's user to local passwords needs a password: they
	// have none.
	if in.Source == store.SourceLocal && old.Source != store.SourceLocal && in.Password == "" {
		fe["password"] = "Set a password: this user had none, signing in through a provider."
	}
	if err := s.checkBreakGlassKept(ctx, fe, old, role, in); err != nil {
		return store.User{}, err
	}
	if len(fe) > 0 {
		return store.User{}, fe
	}
	u := old
	u.Name, u.DisplayName, u.Role, u.Groups, u.Disabled, u.Source = in.Name, in.DisplayName, role, in.Groups, in.Disabled, in.Source
	if err := s.Store.UpdateUser(ctx, u); err != nil {
		return store.User{}, conflictOrErr(err, "name")
	}
	details := map[string]string{"role": string(u.Role), "groups": strings.Join(u.Groups, ","), "disabled": strconv.FormatBool(u.Disabled)}
	if u.Source != old.Source {
		details["source"] = u.Source
		if u.Source != store.SourceLocal {
			// A password kept here would still work if the user came back
			// to local passwords; it is dropped (and their web sessions
			// end, as at any password change).
			if err := s.Store.SetPasswordHash(ctx, u.ID, ""); err != nil {
				return store.User{}, err
			}
			details["password"] = "removed"
		}
	}
	if in.Password != "" {
		hash, err := auth.HashPassword(in.Password)
		if err != nil {
			return store.User{}, err
		}
		if err := s.Store.SetPasswordHash(ctx, u.ID, hash); err != nil {
			return store.User{}, err
		}
		details["password"] = "changed"
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionUserUpdate, Target: u.Name, Outcome: audit.OutcomeSuccess, Details: details})
	s.kickGuard() // running sessions may have lost their access
	return u, nil
}

func (s *Server) deleteUser(r *http.Request, actor store.User, id int64) error {
	u, err := s.Store.UserByID(r.Context(), id)
	if err != nil {
		return err
	}
	if u.ID == actor.ID {
		return fieldErrors{"user": "You cannot delete your own account."}
	}
	fe := fieldErrors{}
	if err := s.checkBreakGlassKept(r.Context(), fe, u, "", userInput{}); err != nil {
		return err
	}
	if len(fe) > 0 {
		return fe
	}
	if err := s.Store.DeleteUser(r.Context(), id); err != nil {
		return err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionUserDelete, Target: u.Name, Outcome: audit.OutcomeSuccess})
	s.kickGuard() // running sessions may have lost their access
	return nil
}

// unlockUser forgets a user's failed sign-ins, lifting any lock.
func (s *Server) unlockUser(r *http.Request, actor store.User, id int64) (store.User, error) {
	u, err := s.Store.UserByID(r.Context(), id)
	if err != nil {
		return store.User{}, err
	}
	l, err := s.Store.SignInLock(r.Context(), id)
	if err != nil {
		return store.User{}, err
	}
	if err := s.Store.ClearSignInLock(r.Context(), id); err != nil {
		return store.User{}, err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionUserUnlock, Target: u.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"failures": strconv.Itoa(l.Failures), "was_locked": strconv.FormatBool(l.Locked(s.Now()))}})
	return u, nil
}

type groupInput struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

func (s *Server) createGroup(r *http.Request, actor store.User, in groupInput) (store.Group, error) {
	fe := fieldErrors{}
	in.Name, in.Description = strings.TrimSpace(in.Name), strings.TrimSpace(in.Description)
	checkName(fe, "name", in.Name)
	if utf8.RuneCountInString(in.Description) > maxDescription {
		fe["description"] = "Keep the description under 500 characters."
	}
	if len(fe) > 0 {
		return store.Group{}, fe
	}
	g, err := s.Store.CreateGroup(r.Context(), store.Group{Name: in.Name, Description: in.Description})
	if err != nil {
		return store.Group{}, conflictOrErr(err, "name")
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGroupCreate, Target: g.Name, Outcome: audit.OutcomeSuccess})
	return g, nil
}

func (s *Server) deleteGroup(r *http.Request, actor store.User, id int64) error {
	g, err := s.Store.GroupByID(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.Store.DeleteGroup(r.Context(), id); err != nil {
		return err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGroupDelete, Target: g.Name, Outcome: audit.OutcomeSuccess})
	s.kickGuard() // running sessions may have lost their access
	return nil
}

type resourceInput struct {
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	Protocol        string   `json:"protocol"`
	Host            string   `json:"host"`
	Port            int      `json:"port"`
	Login           string   `json:"login"`
	Password        string   `json:"password,omitempty"`
	PrivateKey      string   `json:"private_key,omitempty"`
	ClearPassword   bool     `json:"clear_password,omitempty"`
	ClearPrivateKey bool     `json:"clear_private_key,omitempty"`
	Tags            []string `json:"tags"`
	// Desktop options.
	ViewOnly   bool   `json:"view_only,omitempty"`
	Clipboard  string `json:"clipboard,omitempty"`
	ColorDepth int    `json:"color_depth,omitempty"`
	// Recording: "on" (default), "required" or "off"; RecordInput records
	// typed input too.
	Recording   string `json:"recording,omitempty"`
	RecordInput bool   `json:"record_input,omitempty"`
	// File browser options (SSH): the largest file a user may upload (0:
	// no limit), and uploads or downloads switched off.
	MaxUploadBytes int64 `json:"max_upload_bytes,omitempty"`
	NoUpload       bool  `json:"no_upload,omitempty"`
	NoDownload     bool  `json:"no_download,omitempty"`
	// AllowDotfileChanges lifts the protection of dotfiles.
	AllowDotfileChanges bool `json:"allow_dotfile_changes,omitempty"`
	// RDP options.
	Domain         string `json:"domain,omitempty"`
	Security       string `json:"security,omitempty"`
	IgnoreCert     bool   `json:"ignore_cert,omitempty"`
	Width          int    `json:"width,omitempty"`
	Height         int    `json:"height,omitempty"`
	KeyboardLayout string `json:"keyboard_layout,omitempty"`
	// Session limits in minutes, terminal and desktop; 0 is none.
	IdleTimeoutMinutes int `json:"idle_timeout_minutes,omitempty"`
	MaxSessionMinutes  int `json:"max_session_minutes,omitempty"`
	// Native clients: Tunnel lets them reach an SSH, RDP or VNC
	// resource's port raw; Networks are a network resource's rules.
	Tunnel   bool   `json:"tunnel,omitempty"`
	Networks string `json:"networks,omitempty"`
	// StepUpMinutes asks for an MFA check within the last that many
	// minutes before each connection, every protocol; 0 is off.
	StepUpMinutes int `json:"step_up_minutes,omitempty"`
}

// Bounds of a resource's session limits, in minutes. The least leaves room
// for the warning a minute before the end.
const (
	minSessionLimit = 2
	maxSessionLimit = 7 * 24 * 60
)

func (in *resourceInput) options() store.Options {
	return store.Options{ViewOnly: in.ViewOnly, Clipboard: in.Clipboard, ColorDepth: in.ColorDepth,
		Recording: in.Recording, RecordInput: in.RecordInput,
		MaxUploadBytes: in.MaxUploadBytes, NoUpload: in.NoUpload, NoDownload: in.NoDownload, AllowDotfileChanges: in.AllowDotfileChanges,
		Domain: in.Domain, Security: in.Security, IgnoreCert: in.IgnoreCert, Width: in.Width, Height: in.Height,
		KeyboardLayout: in.KeyboardLayout, IdleTimeoutSeconds: in.IdleTimeoutMinutes * 60, MaxSessionSeconds: in.MaxSessionMinutes * 60,
		Tunnel: in.Tunnel, Networks: in.Networks, StepUpMinutes: in.StepUpMinutes}
}

func (in *resourceInput) validate(isNew bool) fieldErrors {
	fe := fieldErrors{}
	in.Name, in.Host, in.Login = strings.TrimSpace(in.Name), strings.TrimSpace(in.Host), strings.TrimSpace(in.Login)
	in.Description = strings.TrimSpace(in.Description)
	checkName(fe, "name", in.Name)
	if utf8.RuneCountInString(in.Description) > maxDescription {
		fe["description"] = "Keep the description under 500 characters."
	}
	if in.Protocol == "" {
		in.Protocol = "ssh"
	}
	if in.Protocol != "ssh" && in.Protocol != "vnc" && in.Protocol != "rdp" && in.Protocol != store.ProtocolTCP && in.Protocol != store.ProtocolNetwork {
		fe["protocol"] = "Choose SSH, RDP, VNC, TCP or network."
	}
	if m := in.StepUpMinutes; m < 0 || m > store.MaxStepUpMinutes {
		fe["step_up"] = stepUpError
	}
	if in.Protocol == store.ProtocolTCP || in.Protocol == store.ProtocolNetwork {
		in.validateNative(fe)
		return in.validateTags(fe)
	}
	in.Networks = ""
	if !hostPattern.MatchString(in.Host) {
		fe["host"] = "Enter a host name or IP address."
	}
	if in.Port == 0 {
		in.Port = map[string]int{"ssh": 22, "vnc": 5900, "rdp": 3389}[in.Protocol]
	}
	if in.Port < 1 || in.Port > 65535 {
		fe["port"] = "Enter a port from 1 to 65535."
	}
	// VNC servers mostly ask for a password only; the login is optional.
	if (in.Login == "" && in.Protocol == "ssh") || len(in.Login) > 64 || strings.ContainsAny(in.Login, " \t\r\n") {
		fe["login"] = "Enter the login name on the target (no spaces, up to 64 characters)."
	}
	if len(in.Password) > maxSecret {
		fe["password"] = "The password is too long."
	}
	if in.PrivateKey = strings.TrimSpace(in.PrivateKey); in.PrivateKey != "" {
		if len(in.PrivateKey) > maxPrivateKey {
			fe["private_key"] = "The private key is too large."
		} else if _, err := ssh.ParsePrivateKey([]byte(in.PrivateKey)); err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				fe["private_key"] = "This key is protected by a passphrase; store an unencrypted key (it is encrypted at rest here)."
			} else {
				fe["private_key"] = "This is not a private key in OpenSSH or PEM format."
			}
		}
	}
	if in.Protocol != "ssh" && strings.TrimSpace(in.PrivateKey) != "" {
		fe["private_key"] = strings.ToUpper(in.Protocol) + " servers take a password, not a private key."
	}
	if isNew && in.Protocol == "ssh" && in.Password == "" && in.PrivateKey == "" {
		fe["password"] = "Give a password or a private key so the portal can sign in to the target."
	}
	switch in.Clipboard {
	case "":
		in.Clipboard = "both"
	case "both", "to-remote", "from-remote", "none":
	default:
		fe["clipboard"] = "Choose both, to-remote, from-remote or none."
	}
	if in.Protocol == "rdp" {
		in.validateRDP(fe)
	} else {
		switch in.ColorDepth {
		case 0:
			in.ColorDepth = 24
		case 8, 16, 24:
		default:
			fe["color_depth"] = "Choose a colour depth of 24, 16 or 8 bits for VNC."
		}
		in.Domain, in.Security, in.IgnoreCert, in.Width, in.Height, in.KeyboardLayout = "", "", false, 0, 0, ""
	}
	switch in.Recording {
	case "":
		in.Recording = store.RecordingOn
	case store.RecordingOn, store.RecordingRequired, store.RecordingOff:
	default:
		fe["recording"] = "Choose on, required or off."
	}
	if in.Recording == store.RecordingOff {
		in.RecordInput = false
	}
	if in.MaxUploadBytes < 0 {
		fe["max_upload"] = "Enter the largest upload in megabytes, or leave it blank for no limit."
	}
	if in.Protocol != "ssh" {
		in.MaxUploadBytes, in.NoUpload, in.NoDownload, in.AllowDotfileChanges = 0, false, false, false
	}
	for field, m := range map[string]int{"idle_timeout": in.IdleTimeoutMinutes, "max_session": in.MaxSessionMinutes} {
		if m != 0 && (m < minSessionLimit || m > maxSessionLimit) {
			fe[field] = fmt.Sprintf("Enter whole minutes from %d to %d (a week), or leave it blank for no limit.", minSessionLimit, maxSessionLimit)
		}
	}
	return in.validateTags(fe)
}

// validateNative checks a tcp or network resource, which only native
// clients reach: an address (tcp) or rules (network), and none of the
// session options, credentials or login.
func (in *resourceInput) validateNative(fe fieldErrors) {
	if in.Protocol == store.ProtocolTCP {
		in.Networks = ""
		if !hostPattern.MatchString(in.Host) {
			fe["host"] = "Enter a host name or IP address."
		}
		if in.Port < 1 || in.Port > 65535 {
			fe["port"] = "Enter the port of the service, from 1 to 65535."
		}
	} else {
		if in.Host != "" {
			fe["host"] = "A network resource has no host: its addresses are in the rules below."
		}
		if in.Port > 0 {
			fe["port"] = "A network resource has no port: its ports are in the rules below."
		}
		in.Port = 0
		if len(in.Networks) > maxNetworksText {
			fe["networks"] = fmt.Sprintf("Keep the rules under %d characters.", maxNetworksText)
			in.Networks = ""
		}
		rules, err := wire.ParseNetRules(in.Networks)
		switch {
		case fe["networks"] != "":
		case err != nil:
			fe["networks"] = capitalizeFirst(err.Error()) + "."
		case len(rules) == 0:
			fe["networks"] = "Enter at least one rule, such as 10.20.0.0/16 tcp/5432,6379."
		default:
			in.Networks = rules.String()
		}
	}
	what := map[string]string{store.ProtocolTCP: "A TCP resource", store.ProtocolNetwork: "A network resource"}[in.Protocol]
	if in.Login != "" {
		fe["login"] = what + " has no login: users sign in to the service with their own."
	}
	if in.Password != "" || strings.TrimSpace(in.PrivateKey) != "" {
		fe["password"] = what + " keeps no credentials: users sign in to the service with their own."
	}
	// Native streams are neither recorded nor limited like sessions: the
	// options of other protocols are dropped.
	in.ViewOnly, in.Clipboard, in.ColorDepth, in.Recording, in.RecordInput = false, "", 0, store.RecordingOff, false
	in.Domain, in.Security, in.IgnoreCert, in.Width, in.Height, in.KeyboardLayout = "", "", false, 0, 0, ""
	in.MaxUploadBytes, in.NoUpload, in.NoDownload, in.AllowDotfileChanges = 0, false, false, false
	in.IdleTimeoutMinutes, in.MaxSessionMinutes, in.Tunnel = 0, 0, false
}

// maxNetworksText bounds a network resource's rules as typed.
const maxNetworksText = 16 << 10

// validateTags checks and tidies the tags, and returns the errors found.
func (in *resourceInput) validateTags(fe fieldErrors) fieldErrors {
	var tags []string
	seen := map[string]bool{}
	for _, t := range in.Tags {
		t = strings.TrimSpace(t)
		if t == "" || seen[t] {
			continue
		}
		if !tagPattern.MatchString(t) {
			fe["tags"] = fmt.Sprintf("Tag %q: use letters, digits, dots, dashes or underscores.", t)
		}
		seen[t] = true
		tags = append(tags, t)
	}
	if len(tags) > maxTags {
		fe["tags"] = "Use at most 16 tags."
	}
	in.Tags = tags
	return fe
}

// validateRDP checks and completes an RDP resource's options.
func (in *resourceInput) validateRDP(fe fieldErrors) {
	switch in.ColorDepth {
	case 0:
		in.ColorDepth = 32
	case 16, 24, 32:
	default:
		fe["color_depth"] = "Choose a colour depth of 32, 24 or 16 bits for RDP."
	}
	in.Domain = strings.TrimSpace(in.Domain)
	if len(in.Domain) > 255 || strings.ContainsFunc(in.Domain, unicode.IsControl) {
		fe["domain"] = "Enter the sign-in domain (up to 255 characters), or leave it blank."
	}
	switch in.Security {
	case "":
		in.Security = "any"
	case "any", "nla", "tls", "rdp":
	default:
		fe["security"] = "Choose any, nla, tls or rdp."
	}
	if (in.Width != 0 || in.Height != 0) && (in.Width < wire.MinDesktopSize || in.Height < wire.MinDesktopSize ||
		in.Width > wire.MaxDesktopSize || in.Height > wire.MaxDesktopSize) {
		fe["resolution"] = fmt.Sprintf("Choose a size from %d to %d pixels each way, or fit to the browser.", wire.MinDesktopSize, wire.MaxDesktopSize)
	}
	if in.KeyboardLayout == "" {
		in.KeyboardLayout = "en-us"
	}
	if _, ok := sessions.KeyboardLayouts[in.KeyboardLayout]; !ok {
		fe["keyboard_layout"] = "Choose one of the keyboard layouts offered."
	}
}

func splitTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })
}

func (s *Server) createResource(r *http.Request, actor store.User, in resourceInput) (store.Resource, error) {
	if fe := in.validate(true); len(fe) > 0 {
		return store.Resource{}, fe
	}
	res, err := s.Store.CreateResource(r.Context(), store.Resource{
		Name: in.Name, Description: in.Description, Protocol: in.Protocol, Host: in.Host, Port: in.Port,
		Login: in.Login, Tags: in.Tags, Options: in.options(),
	}, &store.Secrets{Password: in.Password, PrivateKey: in.PrivateKey})
	if err != nil {
		return store.Resource{}, conflictOrErr(err, "name")
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionResourceCreate, Target: res.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"address": fmt.Sprintf("%s:%d", res.Host, res.Port), "login": res.Login, "recording": recordingDetail(res.Options)}})
	return res, nil
}

func (s *Server) updateResource(r *http.Request, actor store.User, id int64, in resourceInput) (store.Resource, error) {
	ctx := r.Context()
	old, err := s.Store.ResourceByID(ctx, id)
	if err != nil {
		return store.Resource{}, err
	}
	fe := in.validate(false)
	if in.Protocol == store.ProtocolTCP || in.Protocol == store.ProtocolNetwork {
		// A resource that became one native clients reach keeps no
		// credentials.
		in.ClearPassword, in.ClearPrivateKey = old.HasPassword, old.HasPrivateKey
	}
	// Stored credentials go only to the address they were entered for:
	// otherwise an admin could point a resource at a server of their own,
	// forget its host key and have the portal sign in there.
	moved := !strings.EqualFold(in.Host, old.Host) || in.Port != old.Port
	movedPassword := moved && old.HasPassword && in.Password == "" && !in.ClearPassword
	movedKey := moved && old.HasPrivateKey && in.PrivateKey == "" && !in.ClearPrivateKey
	in.ClearPassword = in.ClearPassword || movedPassword
	in.ClearPrivateKey = in.ClearPrivateKey || movedKey
	hasPassword := (old.HasPassword && !in.ClearPassword) || in.Password != ""
	hasKey := (old.HasPrivateKey && !in.ClearPrivateKey) || in.PrivateKey != ""
	if in.Protocol == "ssh" && !hasPassword && !hasKey {
		fe["password"] = "Keep a password or a private key so the portal can sign in to the target."
		if movedPassword || movedKey {
			fe["password"] = "The host or port changed, so the stored password and private key are not kept: enter them again."
		}
	}
	if len(fe) > 0 {
		return store.Resource{}, fe
	}
	res := old
	res.Name, res.Description, res.Protocol, res.Host, res.Port, res.Login, res.Tags =
		in.Name, in.Description, in.Protocol, in.Host, in.Port, in.Login, in.Tags
	res.Options = in.options()
	var secrets *store.Secrets
	changed := []string{}
	if in.Password != "" || in.PrivateKey != "" || in.ClearPassword || in.ClearPrivateKey {
		cur, err := s.Store.ResourceSecrets(ctx, id)
		if err != nil {
			return store.Resource{}, err
		}
		switch {
		case movedPassword:
			cur.Password = ""
			changed = append(changed, "password cleared (host or port changed)")
		case in.ClearPassword:
			cur.Password = ""
			changed = append(changed, "password cleared")
		}
		switch {
		case movedKey:
			cur.PrivateKey = ""
			changed = append(changed, "private key cleared (host or port changed)")
		case in.ClearPrivateKey:
			cur.PrivateKey = ""
			changed = append(changed, "private key cleared")
		}
		if in.Password != "" {
			cur.Password = in.Password
			changed = append(changed, "password changed")
		}
		if in.PrivateKey != "" {
			cur.PrivateKey = in.PrivateKey
			changed = append(changed, "private key changed")
		}
		secrets = &cur
	}
	if err := s.Store.UpdateResource(ctx, res, secrets); err != nil {
		return store.Resource{}, conflictOrErr(err, "name")
	}
	details := map[string]string{"address": fmt.Sprintf("%s:%d", res.Host, res.Port), "login": res.Login, "recording": recordingDetail(res.Options)}
	if len(changed) > 0 {
		details["credentials"] = strings.Join(changed, ", ")
	}
	if moved {
		details["previous_address"] = net.JoinHostPort(old.Host, strconv.Itoa(old.Port))
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionResourceUpdate, Target: res.Name, Outcome: audit.OutcomeSuccess, Details: details})
	s.kickGuard() // running sessions may have lost their access
	return s.Store.ResourceByID(ctx, id)
}

func (s *Server) deleteResource(r *http.Request, actor store.User, id int64) error {
	res, err := s.Store.ResourceByID(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.Store.DeleteResource(r.Context(), id); err != nil {
		return err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionResourceDelete, Target: res.Name, Outcome: audit.OutcomeSuccess})
	s.kickGuard() // running sessions may have lost their access
	return nil
}

// hostKeyAction accepts the host key a target offered in a refused
// connection, or forgets the pinned key so the next connection pins anew.
func (s *Server) hostKeyAction(r *http.Request, actor store.User, id int64, action string) error {
	ctx := r.Context()
	res, err := s.Store.ResourceByID(ctx, id)
	if err != nil {
		return err
	}
	switch action {
	case "accept":
		offered, err := s.Store.GetSetting(ctx, sessions.OfferedKeySetting(id))
		if err != nil || offered == "" {
			return fieldErrors{"action": "No new host key has been offered by this target."}
		}
		if err := s.Store.ReplaceHostKey(ctx, id, offered); err != nil {
			return err
		}
		s.Store.SetSetting(ctx, sessions.OfferedKeySetting(id), "")
		s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionHostKeyAccept, Target: res.Name, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"old": fingerprint(res.HostKey), "new": fingerprint(offered)}})
	case "forget":
		if err := s.Store.ForgetHostKey(ctx, id); err != nil {
			return err
		}
		s.Store.SetSetting(ctx, sessions.OfferedKeySetting(id), "")
		s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionHostKeyForget, Target: res.Name, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"old": fingerprint(res.HostKey)}})
	default:
		return fieldErrors{"action": "Choose accept or forget."}
	}
	return nil
}

// fingerprint is the SHA256 fingerprint of an authorized_keys line, or ""
// when there is none.
func fingerprint(authorizedKey string) string {
	if authorizedKey == "" {
		return ""
	}
	if fp, ok := strings.CutPrefix(authorizedKey, wire.CertPrefix); ok {
		return fp
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return "unreadable key"
	}
	return ssh.FingerprintSHA256(k)
}

type grantInput struct {
	ResourceID  int64  `json:"resource_id"`
	SubjectKind string `json:"subject_kind"`
	SubjectID   int64  `json:"subject_id"`
	// Mode is "terminal" (sessions; the default), "files" or "both".
	Mode store.GrantMode `json:"mode"`
}

func (s *Server) createGrant(r *http.Request, actor store.User, in grantInput) (store.Grant, error) {
	ctx := r.Context()
	fe := fieldErrors{}
	res, err := s.Store.ResourceByID(ctx, in.ResourceID)
	if err != nil {
		fe["resource_id"] = "Choose a resource."
	}
	switch in.SubjectKind {
	case "user":
		if _, err := s.Store.UserByID(ctx, in.SubjectID); err != nil {
			fe["subject"] = "Choose a user or a group."
		}
	case "group":
		if _, err := s.Store.GroupByID(ctx, in.SubjectID); err != nil {
			fe["subject"] = "Choose a user or a group."
		}
	default:
		fe["subject"] = "Choose a user or a group."
	}
	if in.Mode == "" {
		in.Mode = store.GrantTerminal
	}
	switch {
	case !in.Mode.Valid():
		fe["mode"] = "Choose what the grant allows: terminal, files, or both."
	case in.Mode != store.GrantTerminal && res.ID != 0 && res.Protocol != wire.ProtocolSSH:
		fe["mode"] = "Only SSH resources have files to browse; choose terminal (sessions) for this resource."
	}
	if len(fe) > 0 {
		return store.Grant{}, fe
	}
	g, err := s.Store.CreateGrantMode(ctx, in.ResourceID, in.SubjectKind, in.SubjectID, in.Mode)
	if err != nil {
		return store.Grant{}, conflictOrErr(err, "subject")
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGrantCreate, Target: res.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"subject": g.SubjectKind + ":" + g.SubjectName, "mode": string(g.Mode)}})
	return g, nil
}

// updateGrant changes what grant id allows.
func (s *Server) updateGrant(r *http.Request, actor store.User, id int64, mode store.GrantMode) (store.Grant, error) {
	ctx := r.Context()
	old, err := s.Store.GrantByID(ctx, id)
	if err != nil {
		return store.Grant{}, err
	}
	res, err := s.Store.ResourceByID(ctx, old.ResourceID)
	if err != nil {
		return store.Grant{}, err
	}
	switch {
	case !mode.Valid():
		return store.Grant{}, fieldErrors{"mode": "Choose what the grant allows: terminal, files, or both."}
	case mode != store.GrantTerminal && res.Protocol != wire.ProtocolSSH:
		return store.Grant{}, fieldErrors{"mode": "Only SSH resources have files to browse; choose terminal (sessions) for this resource."}
	}
	g, err := s.Store.SetGrantMode(ctx, id, mode)
	if err != nil {
		return store.Grant{}, err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGrantUpdate, Target: g.ResourceName, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"subject": g.SubjectKind + ":" + g.SubjectName, "mode": string(g.Mode), "was": string(old.Mode)}})
	return g, nil
}

func (s *Server) deleteGrant(r *http.Request, actor store.User, id int64) error {
	grants, err := s.Store.ListGrants(r.Context())
	if err != nil {
		return err
	}
	for _, g := range grants {
		if g.ID != id {
			continue
		}
		if err := s.Store.DeleteGrant(r.Context(), id); err != nil {
			return err
		}
		s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGrantDelete, Target: g.ResourceName, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"subject": g.SubjectKind + ":" + g.SubjectName}})
		s.kickGuard() // running sessions may have lost their access
		return nil
	}
	return store.ErrNotFound
}
