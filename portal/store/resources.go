package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Resource protocols besides the session ones (wire.ProtocolSSH, …): a
// tcp resource is a host and port only native clients reach, a network
// resource a set of addresses and ports (Options.Networks) reached through
// the gateways of its segment (its tag).
const (
	ProtocolTCP     = "tcp"
	ProtocolNetwork = "network"
)

// Resource is a target users connect to.
type Resource struct {
	ID          int64
	Name        string
	Description string
	Protocol    string
	Host        string
	Port        int
	Login       string
	Tags        []string
	// HostKey is the pinned SSH host key in authorized_keys form; "" until
	// the first successful connection pins it.
	HostKey         string
	HostKeyPinnedAt time.Time
	HasPassword     bool
	HasPrivateKey   bool
	Options         Options
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Options are a resource's session options.
type Options struct {
	// ViewOnly desktops show the screen but take no keyboard or mouse.
	ViewOnly bool `json:"view_only,omitempty"`
	// Clipboard is "both" (the default), "to-remote", "from-remote" or
	// "none".
	Clipboard string `json:"clipboard,omitempty"`
	// ColorDepth is the desktop's colour depth in bits: for VNC 24 (the
	// default when 0), 16 or 8; for RDP 32 (the default), 24 or 16. Fewer
	// colours need less bandwidth.
	ColorDepth int `json:"color_depth,omitempty"`

	// RDP only.
	Domain string `json:"domain,omitempty"`
	// Security is "any" (the default), "nla", "tls" or "rdp".
	Security string `json:"security,omitempty"`
	// IgnoreCert accepts any server certificate instead of pinning it on
	// first use.
	IgnoreCert bool `json:"ignore_cert,omitempty"`
	// Width and Height fix the desktop size; 0 fits the browser window.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// KeyboardLayout is the desktop's keyboard layout, e.g. "en-us" (the
	// default).
	KeyboardLayout string `json:"keyboard_layout,omitempty"`

	// Recording is "on" (the default when empty), "required" (a session
	// that cannot be recorded does not start) or "off".
	Recording string `json:"recording,omitempty"`
	// RecordInput records what users type too, passwords included.
	RecordInput bool `json:"record_input,omitempty"`

	// SSH file browser (SFTP).
	// MaxUploadBytes bounds one uploaded file; 0 is no limit.
	MaxUploadBytes int64 `json:"max_upload_bytes,omitempty"`
	// NoUpload and NoDownload switch uploads and downloads off; browsing
	// and the other file operations stay available.
	NoUpload   bool `json:"no_upload,omitempty"`
	NoDownload bool `json:"no_download,omitempty"`
	// AllowDotfileChanges lets users upload, rename, delete and chmod
	// dotfiles (.bashrc, .ssh/authorized_keys) through the browser; off,
	// the default, keeps a files grant from changing how the shared login
	// signs in or starts.
	AllowDotfileChanges bool `json:"allow_dotfile_changes,omitempty"`

	// Terminal and desktop sessions: IdleTimeoutSeconds ends a session
	// without input from its user for that long, and MaxSessionSeconds one
	// that has run that long, each after a warning a minute before; zero is
	// no limit.
	IdleTimeoutSeconds int `json:"idle_timeout_seconds,omitempty"`
	MaxSessionSeconds  int `json:"max_session_seconds,omitempty"`

	// StepUpMinutes, when positive, asks for an MFA check passed within
	// the last that many minutes (1..MaxStepUpMinutes) before each
	// connection, for every kind of session; 0 is off.
	StepUpMinutes int `json:"step_up_minutes,omitempty"`

	// Native clients (keyway). Tunnel, on an SSH, RDP or VNC resource,
	// lets `keyway tunnel` reach its host and port raw: the user's own
	// credentials, no recording. Networks, on a network resource, is the
	// text of its wire.NetRules, one rule per line.
	Tunnel   bool   `json:"tunnel,omitempty"`
	Networks string `json:"networks,omitempty"`
}

// MaxStepUpMinutes bounds StepUpMinutes of resources and policies: a day.
const MaxStepUpMinutes = 1440

// Recording modes of a resource.
const (
	RecordingOn       = "on"
	RecordingRequired = "required"
	RecordingOff      = "off"
)

// RecordingMode returns the resource's recording mode, "on" by default.
func (o Options) RecordingMode() string {
	if o.Recording == "" {
		return RecordingOn
	}
	return o.Recording
}

// ClipboardIn reports whether text may go from the browser to the target.
func (o Options) ClipboardIn() bool {
	return o.Clipboard == "" || o.Clipboard == "both" || o.Clipboard == "to-remote"
}

// ClipboardOut reports whether text may come from the target to the browser.
func (o Options) ClipboardOut() bool {
	return o.Clipboard == "" || o.Clipboard == "both" || o.Clipboard == "from-remote"
}

func optionsJSON(o Options) string {
	b, _ := json.Marshal(o)
	return string(b)
}

// Secrets are a resource's credentials. They print redacted.
type Secrets struct {
	Password   string `json:"password,omitempty"`
	PrivateKey string `json:"private_key,omitempty"`
}

// String redacts the secrets.
func (Secrets) String() string { return "[redacted]" }

// LogValue redacts the secrets in logs.
func (s Secrets) LogValue() slog.Value { return slog.StringValue(s.String()) }

// sealAD binds sealed credentials to their resource row.
func sealAD(id int64) []byte { return []byte("resource:" + strconv.FormatInt(id, 10)) }

func (s *Store) sealSecrets(id int64, sec Secrets) ([]byte, error) {
	plain, err := json.Marshal(sec)
	if err != nil {
		return nil, err
	}
	return s.sealer.Seal(plain, sealAD(id))
}

func (s *Store) writeSecrets(ctx context.Context, tx *sql.Tx, id int64, sec Secrets) error {
	sealed, err := s.sealSecrets(id, sec)
	if err != nil {
		return fmt.Errorf("seal credentials: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE resources SET secrets = ?, has_password = ?, has_private_key = ? WHERE id = ?`,
		sealed, sec.Password != "", sec.PrivateKey != "", id)
	return err
}

func tagsJSON(tags []string) string {
	if tags == nil {
		tags = []string{}
	}
	b, _ := json.Marshal(tags)
	return string(b)
}

// CreateResource inserts r with its credentials sealed.
func (s *Store) CreateResource(ctx context.Context, r Resource, sec *Secrets) (Resource, error) {
	now := millis(s.now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO resources (name, description, protocol, host, port, login, tags, options, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			r.Name, r.Description, r.Protocol, r.Host, r.Port, r.Login, tagsJSON(r.Tags), optionsJSON(r.Options), now, now).Scan(&r.ID)
		if err != nil {
			return conflict(err, fmt.Sprintf("a resource named %s already exists", r.Name))
		}
		if sec != nil {
			return s.writeSecrets(ctx, tx, r.ID, *sec)
		}
		return nil
	})
	if err != nil {
		return Resource{}, fmt.Errorf("create resource %s: %w", r.Name, err)
	}
	return s.ResourceByID(ctx, r.ID)
}

// UpdateResource saves r's fields; sec replaces the stored credentials
// unless it is nil. The pinned host key is changed only by PinHostKey,
// ReplaceHostKey and ForgetHostKey.
func (s *Store) UpdateResource(ctx context.Context, r Resource, sec *Secrets) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE resources SET name = ?, description = ?, protocol = ?, host = ?, port = ?, login = ?, tags = ?, options = ?, updated_at = ? WHERE id = ?`,
			r.Name, r.Description, r.Protocol, r.Host, r.Port, r.Login, tagsJSON(r.Tags), optionsJSON(r.Options), millis(s.now()), r.ID)
		if err != nil {
			return conflict(err, fmt.Sprintf("a resource named %s already exists", r.Name))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if sec != nil {
			return s.writeSecrets(ctx, tx, r.ID, *sec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update resource %d: %w", r.ID, err)
	}
	return nil
}

// DeleteResource deletes a resource and its grants.
func (s *Store) DeleteResource(ctx context.Context, id int64) error {
	return deleteByID(ctx, s.db, "resources", id)
}

const resourceColumns = `r.id, r.name, r.description, r.protocol, r.host, r.port, r.login, r.tags, r.host_key, r.host_key_pinned_at, r.has_password, r.has_private_key, r.options, r.created_at, r.updated_at`

func scanResource(row interface{ Scan(...any) error }) (Resource, error) {
	var r Resource
	var tags, options string
	var pinned, created, updated int64
	if err := row.Scan(&r.ID, &r.Name, &r.Description, &r.Protocol, &r.Host, &r.Port, &r.Login, &tags, &r.HostKey, &pinned,
		&r.HasPassword, &r.HasPrivateKey, &options, &created, &updated); err != nil {
		return Resource{}, err
	}
	if err := json.Unmarshal([]byte(options), &r.Options); err != nil {
		return Resource{}, fmt.Errorf("options of resource %d: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(tags), &r.Tags); err != nil {
		return Resource{}, fmt.Errorf("tags of resource %d: %w", r.ID, err)
	}
	r.HostKeyPinnedAt, r.CreatedAt, r.UpdatedAt = fromMillis(pinned), fromMillis(created), fromMillis(updated)
	return r, nil
}

func (s *Store) queryResources(ctx context.Context, query string, args ...any) ([]Resource, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Resource
	for rows.Next() {
		r, err := scanResource(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ResourceByID returns the resource with id.
func (s *Store) ResourceByID(ctx context.Context, id int64) (Resource, error) {
	r, err := scanResource(s.db.QueryRowContext(ctx, `SELECT `+resourceColumns+` FROM resources r WHERE r.id = ?`, id))
	if err != nil {
		return Resource{}, fmt.Errorf("resource %d: %w", id, notFound(err))
	}
	return r, nil
}

// ResourceByName returns the resource named name (case-insensitively).
func (s *Store) ResourceByName(ctx context.Context, name string) (Resource, error) {
	r, err := scanResource(s.db.QueryRowContext(ctx, `SELECT `+resourceColumns+` FROM resources r WHERE r.name = ?`, name))
	if err != nil {
		return Resource{}, fmt.Errorf("resource %s: %w", name, notFound(err))
	}
	return r, nil
}

// ListResources returns all resources by name.
func (s *Store) ListResources(ctx context.Context) ([]Resource, error) {
	rs, err := s.queryResources(ctx, `SELECT `+resourceColumns+` FROM resources r ORDER BY r.name`)
	if err != nil {
		return nil, fmt.Errorf("list resources: %w", err)
	}
	return rs, nil
}

// grantedTo selects the resources a user may use: granted to them or to a
// group they are in, and only while the user is not disabled.
const grantedTo = `r.id IN (
	SELECT g.resource_id FROM grants g JOIN users u ON u.id = ? AND u.disabled = 0
	WHERE g.user_id = u.id OR g.group_id IN (SELECT group_id FROM group_members WHERE user_id = u.id))`

// ResourcesForUser returns the resources userID may use, by name.
func (s *Store) ResourcesForUser(ctx context.Context, userID int64) ([]Resource, error) {
	rs, err := s.queryResources(ctx, `SELECT `+resourceColumns+` FROM resources r WHERE `+grantedTo+` ORDER BY r.name`, userID)
	if err != nil {
		return nil, fmt.Errorf("resources of user %d: %w", userID, err)
	}
	return rs, nil
}

// Access is what a user's grants allow on a resource.
type Access struct {
	// Terminal allows sessions: a terminal, or a desktop.
	Terminal bool
	// Files allows the SFTP file browser.
	Files bool
}

// Any reports whether a allows anything.
func (a Access) Any() bool { return a.Terminal || a.Files }

// add returns a with what a grant of mode allows added.
func (a Access) add(mode GrantMode) Access {
	a.Terminal = a.Terminal || mode == GrantTerminal || mode == GrantBoth
	a.Files = a.Files || mode == GrantFiles || mode == GrantBoth
	return a
}

// userGrants selects the modes of the grants that apply to a user (first
// argument, only while not disabled) on resources.
const userGrants = `SELECT g.resource_id, g.mode FROM grants g JOIN users u ON u.id = ? AND u.disabled = 0
	WHERE g.user_id = u.id OR g.group_id IN (SELECT group_id FROM group_members WHERE user_id = u.id)`

// AccessTo returns what userID's grants, direct and through groups, allow
// on resourceID; the grants add up.
func (s *Store) AccessTo(ctx context.Context, userID, resourceID int64) (Access, error) {
	all, err := s.access(ctx, userGrants+` AND g.resource_id = ?`, userID, resourceID)
	if err != nil {
		return Access{}, err
	}
	return all[resourceID], nil
}

// AccessState is what one read says of a user and a resource.
type AccessState struct {
	// UserExists and UserDisabled are the user's; ResourceExists the
	// resource's.
	UserExists, UserDisabled, ResourceExists bool
	// UserCreated and ResourceCreated tell the rows apart from earlier
	// ones with the same id (SQLite reuses the highest id after a
	// deletion); zero when missing.
	UserCreated, ResourceCreated time.Time
	// Access is what the user's grants allow on the resource.
	Access Access
}

// ResourceAccess reads in one statement whether userID and resourceID
// exist and what userID's grants allow on resourceID, so that a user or
// resource deleted meanwhile (their grants go with them) is never taken
// for a grant removed: separate reads can see the two on either side of
// the deletion.
func (s *Store) ResourceAccess(ctx context.Context, userID, resourceID int64) (AccessState, error) {
	var st AccessState
	var modes sql.NullString
	var userCreated, resCreated sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM users WHERE id = ?2),
		(SELECT COUNT(*) FROM users WHERE id = ?2 AND disabled <> 0),
		(SELECT COUNT(*) FROM resources WHERE id = ?1),
		(SELECT created_at FROM users WHERE id = ?2),
		(SELECT created_at FROM resources WHERE id = ?1),
		(SELECT string_agg(g.mode, ',') FROM grants g JOIN users u ON u.id = ?2 AND u.disabled = 0
			WHERE g.resource_id = ?1 AND (g.user_id = u.id OR g.group_id IN (SELECT group_id FROM group_members WHERE user_id = u.id)))`,
		resourceID, userID).Scan(&st.UserExists, &st.UserDisabled, &st.ResourceExists, &userCreated, &resCreated, &modes)
	if err != nil {
		return AccessState{}, fmt.Errorf("read access of user %d to resource %d: %w", userID, resourceID, err)
	}
	if userCreated.Valid {
		st.UserCreated = fromMillis(userCreated.Int64)
	}
	if resCreated.Valid {
		st.ResourceCreated = fromMillis(resCreated.Int64)
	}
	for _, m := range strings.Split(modes.String, ",") {
		if m != "" {
			st.Access = st.Access.add(GrantMode(m))
		}
	}
	return st, nil
}

// AccessByResource returns what userID may do on each resource granted to
// them.
func (s *Store) AccessByResource(ctx context.Context, userID int64) (map[int64]Access, error) {
	return s.access(ctx, userGrants, userID)
}

func (s *Store) access(ctx context.Context, query string, args ...any) (map[int64]Access, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read grants: %w", err)
	}
	defer rows.Close()
	out := map[int64]Access{}
	for rows.Next() {
		var id int64
		var mode GrantMode
		if err := rows.Scan(&id, &mode); err != nil {
			return nil, fmt.Errorf("read grants: %w", err)
		}
		out[id] = out[id].add(mode)
	}
	return out, rows.Err()
}

// CanUse reports whether userID may use resourceID.
func (s *Store) CanUse(ctx context.Context, userID, resourceID int64) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM resources r WHERE r.id = ? AND `+grantedTo, resourceID, userID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("check grant: %w", err)
	}
	return n > 0, nil
}

// ResourceSecrets decrypts a resource's credentials.
func (s *Store) ResourceSecrets(ctx context.Context, id int64) (Secrets, error) {
	var sealed []byte
	if err := s.db.QueryRowContext(ctx, `SELECT secrets FROM resources WHERE id = ?`, id).Scan(&sealed); err != nil {
		return Secrets{}, fmt.Errorf("credentials of resource %d: %w", id, notFound(err))
	}
	if len(sealed) == 0 {
		return Secrets{}, nil
	}
	plain, err := s.sealer.Open(sealed, sealAD(id))
	if err != nil {
		return Secrets{}, fmt.Errorf("credentials of resource %d: %w", id, err)
	}
	var sec Secrets
	if err := json.Unmarshal(plain, &sec); err != nil {
		return Secrets{}, fmt.Errorf("credentials of resource %d: %w", id, err)
	}
	return sec, nil
}

// PinHostKey records key as the resource's host key if none is pinned yet;
// an already pinned key is left alone.
func (s *Store) PinHostKey(ctx context.Context, id int64, key string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE resources SET host_key = ?, host_key_pinned_at = ? WHERE id = ? AND host_key = ''`, key, millis(s.now()), id)
	if err != nil {
		return fmt.Errorf("pin host key of resource %d: %w", id, err)
	}
	return nil
}

// ReplaceHostKey pins key in place of the current one (an admin accepted it).
func (s *Store) ReplaceHostKey(ctx context.Context, id int64, key string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE resources SET host_key = ?, host_key_pinned_at = ? WHERE id = ?`, key, millis(s.now()), id)
	if err != nil {
		return fmt.Errorf("replace host key of resource %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ForgetHostKey unpins the host key; the next connection pins anew.
func (s *Store) ForgetHostKey(ctx context.Context, id int64) error {
	return s.ReplaceHostKey(ctx, id, "")
}

// Grant lets a user, or every member of a group, use a resource.
type Grant struct {
	ID           int64
	ResourceID   int64
	ResourceName string
	SubjectKind  string // "user" or "group"
	SubjectID    int64
	SubjectName  string
	Mode         GrantMode
	CreatedAt    time.Time
}

// GrantMode is what a grant allows.
type GrantMode string

// Grant modes.
const (
	// GrantTerminal allows sessions: a terminal or a desktop.
	GrantTerminal GrantMode = "terminal"
	// GrantFiles allows the SFTP file browser of an SSH resource.
	GrantFiles GrantMode = "files"
	// GrantBoth allows both.
	GrantBoth GrantMode = "both"
)

// Valid reports whether m is a known mode.
func (m GrantMode) Valid() bool { return m == GrantTerminal || m == GrantFiles || m == GrantBoth }

// CreateGrant grants resourceID's sessions (GrantTerminal) to the user or
// group subjectID.
func (s *Store) CreateGrant(ctx context.Context, resourceID int64, subjectKind string, subjectID int64) (Grant, error) {
	return s.CreateGrantMode(ctx, resourceID, subjectKind, subjectID, GrantTerminal)
}

// CreateGrantMode grants resourceID to the user or group subjectID for
// what mode allows.
func (s *Store) CreateGrantMode(ctx context.Context, resourceID int64, subjectKind string, subjectID int64, mode GrantMode) (Grant, error) {
	col := map[string]string{"user": "user_id", "group": "group_id"}[subjectKind]
	if col == "" {
		return Grant{}, fmt.Errorf("grant subject kind %q: want user or group", subjectKind)
	}
	if !mode.Valid() {
		return Grant{}, fmt.Errorf("grant mode %q: want terminal, files or both", mode)
	}
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO grants (resource_id, `+col+`, mode, created_at) VALUES (?, ?, ?, ?) RETURNING id`, resourceID, subjectID, string(mode), millis(s.now())).Scan(&id)
	if err != nil {
		return Grant{}, fmt.Errorf("create grant: %w", conflict(err, "this grant already exists"))
	}
	gs, err := s.listGrants(ctx, `WHERE gr.id = ?`, id)
	if err != nil || len(gs) == 0 {
		return Grant{}, fmt.Errorf("read new grant: %w", err)
	}
	return gs[0], nil
}

// DeleteGrant removes a grant.
func (s *Store) DeleteGrant(ctx context.Context, id int64) error {
	return deleteByID(ctx, s.db, "grants", id)
}

// SetGrantMode changes what grant id allows.
func (s *Store) SetGrantMode(ctx context.Context, id int64, mode GrantMode) (Grant, error) {
	if !mode.Valid() {
		return Grant{}, fmt.Errorf("grant mode %q: want terminal, files or both", mode)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE grants SET mode = ? WHERE id = ?`, string(mode), id)
	if err != nil {
		return Grant{}, fmt.Errorf("change grant %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Grant{}, fmt.Errorf("change grant %d: %w", id, ErrNotFound)
	}
	return s.GrantByID(ctx, id)
}

// GrantByID returns one grant.
func (s *Store) GrantByID(ctx context.Context, id int64) (Grant, error) {
	gs, err := s.listGrants(ctx, `WHERE gr.id = ?`, id)
	if err != nil {
		return Grant{}, err
	}
	if len(gs) == 0 {
		return Grant{}, fmt.Errorf("grant %d: %w", id, ErrNotFound)
	}
	return gs[0], nil
}

// ListGrants returns all grants by resource and subject.
func (s *Store) ListGrants(ctx context.Context) ([]Grant, error) {
	return s.listGrants(ctx, "")
}

// GrantsForResource returns the grants of one resource.
func (s *Store) GrantsForResource(ctx context.Context, resourceID int64) ([]Grant, error) {
	return s.listGrants(ctx, `WHERE gr.resource_id = ?`, resourceID)
}

func (s *Store) listGrants(ctx context.Context, where string, args ...any) ([]Grant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT gr.id, gr.resource_id, r.name,
		CASE WHEN gr.user_id IS NOT NULL THEN 'user' ELSE 'group' END,
		COALESCE(gr.user_id, gr.group_id), COALESCE(u.name, g.name), gr.mode, gr.created_at
		FROM grants gr JOIN resources r ON r.id = gr.resource_id
		LEFT JOIN users u ON u.id = gr.user_id LEFT JOIN groups g ON g.id = gr.group_id `+where+`
		ORDER BY r.name, 4, 6`, args...)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		var g Grant
		var created int64
		if err := rows.Scan(&g.ID, &g.ResourceID, &g.ResourceName, &g.SubjectKind, &g.SubjectID, &g.SubjectName, &g.Mode, &created); err != nil {
			return nil, err
		}
		g.CreatedAt = fromMillis(created)
		out = append(out, g)
	}
	return out, rows.Err()
}
