package store

// Identity providers, linked accounts and MFA factors (issue 20).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds on what an admin or a provider gives the store.
const (
	// maxProviderName is the longest provider name (a URL path segment).
	maxProviderName = 32
	// maxDisplayName bounds a provider's or user's display name.
	maxDisplayName = 200
	// maxProviderConfig bounds a provider's config JSON.
	maxProviderConfig = 256 << 10
	// maxClaimValue bounds a mapping's claim value (an LDAP DN can be long).
	maxClaimValue = 1024
	// maxMappings bounds a provider's group mappings.
	maxMappings = 500
	// maxSubject bounds a provider's user id.
	maxSubject = 1024
	// maxProvisionName is the longest user name a provider may create
	// (as auth.ValidUsername allows for sign-in).
	maxProvisionName = 64
	// maxFactorName bounds an MFA factor's name.
	maxFactorName = 100
	// maxRecoveryCodes bounds a user's recovery codes.
	maxRecoveryCodes = 50
)

// Provider kinds.
const (
	KindOIDC = "oidc"
	KindSAML = "saml"
	KindLDAP = "ldap"
)

// SourceLocal is the source of users whose password is kept here.
const SourceLocal = "local"

// ProviderSource is users.source for a provider: kind + ":" + name.
func ProviderSource(kind, name string) string { return kind + ":" + name }

// IdentityProvider is an OIDC, SAML or LDAP provider. Config is the kind's
// own JSON (kept sealed at rest; plaintext here); each kind's package
// parses it.
type IdentityProvider struct {
	ID          int64
	Kind        string
	Name        string // slug: [a-z0-9-], 1-32 characters
	DisplayName string
	Enabled     bool
	Config      []byte
	// JITCreate makes a user at first sign-in with JITRole; otherwise
	// only users created with this provider as source may sign in.
	JITCreate bool
	JITRole   Role
	// Mappings make the provider's group values Keyway group memberships.
	Mappings  []GroupMapping
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Source is the users.source of this provider's users.
func (p IdentityProvider) Source() string { return ProviderSource(p.Kind, p.Name) }

// GroupMapping makes users whose provider groups include ClaimValue
// members of the Keyway group Group (by name).
type GroupMapping struct {
	ClaimValue string
	Group      string
}

// userNamePattern is what a user name may be: letters, digits, '.', '_',
// '-' and '@' (providers often name users by e-mail address), starting
// with a letter or digit, at most 64 characters.
var userNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ErrInvalidUserName: a name no Keyway user may have.
var ErrInvalidUserName = errors.New("a user name has 1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit")

// ValidUserName checks a user name against userNamePattern.
func ValidUserName(name string) error {
	if !userNamePattern.MatchString(name) {
		return ErrInvalidUserName
	}
	return nil
}

// ValidProviderName checks a provider name: 1-32 of a-z, 0-9 and '-'.
func ValidProviderName(name string) error {
	if name == "" {
		return errors.New("the name is required")
	}
	if len(name) > maxProviderName {
		return fmt.Errorf("the name may have at most %d characters", maxProviderName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return errors.New("the name may have only lower-case letters a-z, digits and '-'")
		}
	}
	return nil
}

// validKind reports whether kind is a provider kind.
func validKind(kind string) bool {
	return kind == KindOIDC || kind == KindSAML || kind == KindLDAP
}

// validateProvider checks p's fields before it is stored.
func validateProvider(p *IdentityProvider) error {
	if !validKind(p.Kind) {
		return fmt.Errorf("unknown provider kind %q", p.Kind)
	}
	if err := ValidProviderName(p.Name); err != nil {
		return err
	}
	p.DisplayName = strings.TrimSpace(p.DisplayName)
	if p.DisplayName == "" {
		p.DisplayName = p.Name
	}
	if utf8.RuneCountInString(p.DisplayName) > maxDisplayName || !utf8.ValidString(p.DisplayName) {
		return fmt.Errorf("the display name may have at most %d characters", maxDisplayName)
	}
	if len(p.Config) > maxProviderConfig {
		return fmt.Errorf("the provider's settings are larger than %d KiB", maxProviderConfig>>10)
	}
	if p.JITRole == "" {
		p.JITRole = RoleUser
	}
	if _, err := ParseRole(string(p.JITRole)); err != nil {
		return fmt.Errorf("the default role: %w", err)
	}
	return nil
}

// providerConfigAD binds a provider's sealed config to its row.
func providerConfigAD(id int64) []byte {
	return []byte("identity_provider:" + strconv.FormatInt(id, 10) + ":config")
}

// writeProviderConfig seals config for provider id and stores it.
func (s *Store) writeProviderConfig(ctx context.Context, tx *sql.Tx, id int64, config []byte) error {
	if config == nil {
		config = []byte{}
	}
	sealed, err := s.sealer.Seal(config, providerConfigAD(id))
	if err != nil {
		return fmt.Errorf("seal provider settings: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE identity_providers SET config = ? WHERE id = ?`, sealed, id)
	return err
}

// CreateIdentityProvider inserts p (with its mappings).
func (s *Store) CreateIdentityProvider(ctx context.Context, p IdentityProvider) (IdentityProvider, error) {
	if err := validateProvider(&p); err != nil {
		return IdentityProvider{}, fmt.Errorf("create provider %s: %w", p.Name, err)
	}
	now := millis(s.now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The config is sealed below, bound to the new row's id.
		err := tx.QueryRowContext(ctx, `INSERT INTO identity_providers (kind, name, display_name, enabled, config, jit_create, jit_role, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			p.Kind, p.Name, p.DisplayName, p.Enabled, []byte{}, p.JITCreate, string(p.JITRole), now, now).Scan(&p.ID)
		if err != nil {
			return conflict(err, fmt.Sprintf("a provider named %s already exists", p.Name))
		}
		if err := s.writeProviderConfig(ctx, tx, p.ID, p.Config); err != nil {
			return err
		}
		return setMappings(ctx, tx, p.ID, p.Mappings)
	})
	if err != nil {
		return IdentityProvider{}, fmt.Errorf("create provider %s: %w", p.Name, err)
	}
	return s.IdentityProviderByID(ctx, p.ID)
}

// UpdateIdentityProvider saves p's name, display name, enabled flag,
// config and JIT settings (not its mappings). Renaming a provider moves
// its users' source along, so they keep signing in.
func (s *Store) UpdateIdentityProvider(ctx context.Context, p IdentityProvider) error {
	if err := validateProvider(&p); err != nil {
		return fmt.Errorf("update provider %d: %w", p.ID, err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var oldKind, oldName string
		if err := tx.QueryRowContext(ctx, `SELECT kind, name FROM identity_providers WHERE id = ?`, p.ID).Scan(&oldKind, &oldName); err != nil {
			return notFound(err)
		}
		if oldKind != p.Kind {
			return fmt.Errorf("a provider's kind cannot change (it is %s)", oldKind)
		}
		_, err := tx.ExecContext(ctx, `UPDATE identity_providers SET name = ?, display_name = ?, enabled = ?, jit_create = ?, jit_role = ?, updated_at = ? WHERE id = ?`,
			p.Name, p.DisplayName, p.Enabled, p.JITCreate, string(p.JITRole), millis(s.now()), p.ID)
		if err != nil {
			return conflict(err, fmt.Sprintf("a provider named %s already exists", p.Name))
		}
		if oldName != p.Name {
			if _, err := tx.ExecContext(ctx, `UPDATE users SET source = ? WHERE source = ?`, p.Source(), ProviderSource(oldKind, oldName)); err != nil {
				return err
			}
		}
		return s.writeProviderConfig(ctx, tx, p.ID, p.Config)
	})
	if err != nil {
		return fmt.Errorf("update provider %d: %w", p.ID, err)
	}
	return nil
}

// SetGroupMappings replaces a provider's group mappings; a group that
// does not exist is ErrNotFound (wrapped, naming it).
func (s *Store) SetGroupMappings(ctx context.Context, providerID int64, m []GroupMapping) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM identity_providers WHERE id = ?`, providerID).Scan(&one); err != nil {
			return notFound(err)
		}
		return setMappings(ctx, tx, providerID, m)
	})
	if err != nil {
		return fmt.Errorf("set group mappings of provider %d: %w", providerID, err)
	}
	return nil
}

func setMappings(ctx context.Context, tx *sql.Tx, providerID int64, m []GroupMapping) error {
	if len(m) > maxMappings {
		return fmt.Errorf("a provider may have at most %d group mappings", maxMappings)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM identity_group_mappings WHERE provider_id = ?`, providerID); err != nil {
		return err
	}
	for _, gm := range m {
		if gm.ClaimValue == "" || len(gm.ClaimValue) > maxClaimValue || !utf8.ValidString(gm.ClaimValue) {
			return fmt.Errorf("a group value must have 1 to %d characters", maxClaimValue)
		}
		var gid int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM groups WHERE name = ?`, gm.Group).Scan(&gid); err != nil {
			return fmt.Errorf("group %s: %w", gm.Group, notFound(err))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identity_group_mappings (provider_id, claim_value, group_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, providerID, gm.ClaimValue, gid); err != nil {
			return err
		}
	}
	return nil
}

// DeleteIdentityProvider deletes a provider, its mappings and links. Its
// users stay, with their source, and cannot sign in until changed.
func (s *Store) DeleteIdentityProvider(ctx context.Context, id int64) error {
	return deleteByID(ctx, s.db, "identity_providers", id)
}

const providerColumns = `id, kind, name, display_name, enabled, config, jit_create, jit_role, created_at, updated_at`

func (s *Store) scanProvider(row interface{ Scan(...any) error }) (IdentityProvider, error) {
	var p IdentityProvider
	var sealed []byte
	var role string
	var created, updated int64
	if err := row.Scan(&p.ID, &p.Kind, &p.Name, &p.DisplayName, &p.Enabled, &sealed, &p.JITCreate, &role, &created, &updated); err != nil {
		return IdentityProvider{}, err
	}
	p.JITRole, p.CreatedAt, p.UpdatedAt = Role(role), fromMillis(created), fromMillis(updated)
	plain, err := s.sealer.Open(sealed, providerConfigAD(p.ID))
	if err != nil {
		return IdentityProvider{}, fmt.Errorf("settings of provider %s: %w", p.Name, err)
	}
	if len(plain) > 0 {
		p.Config = plain
	}
	return p, nil
}

// loadMappings fills ps' mappings, by claim value then group.
func (s *Store) loadMappings(ctx context.Context, ps []IdentityProvider) error {
	if len(ps) == 0 {
		return nil
	}
	idx := map[int64]int{}
	for i, p := range ps {
		idx[p.ID] = i
	}
	rows, err := s.db.QueryContext(ctx, `SELECT m.provider_id, m.claim_value, g.name FROM identity_group_mappings m JOIN groups g ON g.id = m.group_id ORDER BY m.claim_value, g.name`)
	if err != nil {
		return fmt.Errorf("read group mappings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var gm GroupMapping
		if err := rows.Scan(&id, &gm.ClaimValue, &gm.Group); err != nil {
			return err
		}
		if i, ok := idx[id]; ok {
			ps[i].Mappings = append(ps[i].Mappings, gm)
		}
	}
	return rows.Err()
}

func (s *Store) oneProvider(ctx context.Context, what, where string, args ...any) (IdentityProvider, error) {
	p, err := s.scanProvider(s.db.QueryRowContext(ctx, `SELECT `+providerColumns+` FROM identity_providers WHERE `+where, args...))
	if err != nil {
		return IdentityProvider{}, fmt.Errorf("provider %s: %w", what, notFound(err))
	}
	ps := []IdentityProvider{p}
	if err := s.loadMappings(ctx, ps); err != nil {
		return IdentityProvider{}, err
	}
	return ps[0], nil
}

// IdentityProviderByID returns a provider with its mappings.
func (s *Store) IdentityProviderByID(ctx context.Context, id int64) (IdentityProvider, error) {
	return s.oneProvider(ctx, strconv.FormatInt(id, 10), `id = ?`, id)
}

// IdentityProviderByName returns the provider of kind called name.
func (s *Store) IdentityProviderByName(ctx context.Context, kind, name string) (IdentityProvider, error) {
	return s.oneProvider(ctx, ProviderSource(kind, name), `kind = ? AND name = ?`, kind, name)
}

// ListIdentityProviders returns the providers of kind ("" for all) by
// kind then name, with their mappings.
func (s *Store) ListIdentityProviders(ctx context.Context, kind string) ([]IdentityProvider, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+providerColumns+` FROM identity_providers WHERE ? = '' OR kind = ? ORDER BY kind, name`, kind, kind)
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	var out []IdentityProvider
	for rows.Next() {
		p, err := s.scanProvider(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list providers: %w", err)
		}
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	if err := s.loadMappings(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// CountUsersBySource returns how many users each source has.
func (s *Store) CountUsersBySource(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, COUNT(*) FROM users GROUP BY source`)
	if err != nil {
		return nil, fmt.Errorf("count users by source: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var src string
		var n int
		if err := rows.Scan(&src, &n); err != nil {
			return nil, err
		}
		out[src] = n
	}
	return out, rows.Err()
}

// ExternalLogin is what a provider says about a user who just signed in.
type ExternalLogin struct {
	// Subject is the provider's stable id of the user (OIDC sub, SAML
	// NameID, LDAP DN).
	Subject     string
	Username    string
	DisplayName string
	Email       string
	// Groups are the provider's group values (claim values, DNs or
	// names), matched against the provider's mappings.
	Groups []string
}

// Provision errors.
var (
	// ErrNotProvisioned: no linked or matching user, and the provider does
	// not create users.
	ErrNotProvisioned = errors.New("no Keyway account is set up for this identity")
	// ErrSourceMismatch: a user with this name exists but signs in
	// elsewhere (locally or through another provider); never linked.
	ErrSourceMismatch = errors.New("an account with this name signs in another way")
)

// ProvisionResult is what Provision did: the user, whether it was made
// now, and the Keyway groups the mappings added and removed.
type ProvisionResult struct {
	User           User
	Created        bool
	Added, Removed []string
}

// Provision finds or creates the Keyway user for a provider's sign-in,
// links the subject, and re-applies the group mappings: the user's
// memberships of groups that any of p's mappings name become exactly those
// the mappings give for in.Groups; other memberships stay. A user is found
// by the link (provider, subject), else by name with source p.Source();
// else created when p.JITCreate. A disabled user is ErrDisabled-like:
// returned with Disabled set, the caller refuses. created says a user was
// made now.
func (s *Store) Provision(ctx context.Context, p IdentityProvider, in ExternalLogin) (u User, created bool, err error) {
	r, err := s.ProvisionChanges(ctx, p, in)
	return r.User, r.Created, err
}

// validExternalLogin bounds what a provider says before it is looked up
// or stored.
func validExternalLogin(in ExternalLogin) error {
	if in.Subject == "" || len(in.Subject) > maxSubject || !utf8.ValidString(in.Subject) {
		return fmt.Errorf("the provider's user id must have 1 to %d bytes of text", maxSubject)
	}
	if len(in.Username) > maxProvisionName || !utf8.ValidString(in.Username) || strings.IndexFunc(in.Username, unicode.IsControl) >= 0 {
		return fmt.Errorf("the provider's user name must be text of at most %d bytes", maxProvisionName)
	}
	if len(in.DisplayName) > maxDisplayName*4 || !utf8.ValidString(in.DisplayName) {
		return errors.New("the provider's display name is too long or not text")
	}
	return nil
}

// ProvisionChanges is Provision that also says which groups the mappings
// added and removed (for the audit log).
func (s *Store) ProvisionChanges(ctx context.Context, p IdentityProvider, in ExternalLogin) (ProvisionResult, error) {
	var r ProvisionResult
	if err := validExternalLogin(in); err != nil {
		return r, fmt.Errorf("provision %s: %w", in.Username, err)
	}
	now := s.now()
	var uid int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The provider as stored now, not as the caller read it.
		var kind, name, jitRole string
		var jit bool
		if err := tx.QueryRowContext(ctx, `SELECT kind, name, jit_create, jit_role FROM identity_providers WHERE id = ?`, p.ID).Scan(&kind, &name, &jit, &jitRole); err != nil {
			return fmt.Errorf("provider %d: %w", p.ID, notFound(err))
		}
		source := ProviderSource(kind, name)
		var src string
		err := tx.QueryRowContext(ctx, `SELECT u.id, u.source FROM external_identities e JOIN users u ON u.id = e.user_id WHERE e.provider_id = ? AND e.subject = ?`, p.ID, in.Subject).Scan(&uid, &src)
		switch {
		case err == nil:
			// An admin moved the linked user to another source: the
			// link no longer signs them in.
			if src != source {
				return ErrSourceMismatch
			}
		case errors.Is(err, sql.ErrNoRows):
			if in.Username == "" {
				return fmt.Errorf("%w (the provider gave no user name)", ErrNotProvisioned)
			}
			err := tx.QueryRowContext(ctx, `SELECT id, source FROM users WHERE name = ?`, in.Username).Scan(&uid, &src)
			switch {
			case err == nil:
				// Only a user made for this provider is matched by name:
				// a local account (or another provider's) with the same
				// name is never taken over.
				if src != source {
					return ErrSourceMismatch
				}
				var other string
				err := tx.QueryRowContext(ctx, `SELECT subject FROM external_identities WHERE provider_id = ? AND user_id = ? LIMIT 1`, p.ID, uid).Scan(&other)
				if err == nil {
					return fmt.Errorf("%w: the account is linked to another identity at this provider", ErrSourceMismatch)
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			case errors.Is(err, sql.ErrNoRows):
				if !jit {
					return ErrNotProvisioned
				}
				if err := ValidUserName(in.Username); err != nil {
					return fmt.Errorf("the provider's user name %q cannot be used: %w", in.Username, err)
				}
				display := strings.TrimSpace(in.DisplayName)
				if display == "" {
					display = in.Username
				}
				// No password hash: the account has no usable password.
				uid, err = insertUser(ctx, tx, User{Name: in.Username, DisplayName: display, Role: Role(jitRole), Source: source}, "", now)
				if err != nil {
					return err
				}
				r.Created = true
			default:
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO external_identities (provider_id, subject, user_id, created_at) VALUES (?, ?, ?, ?)`, p.ID, in.Subject, uid, millis(now)); err != nil {
				return err
			}
		default:
			return err
		}
		var disabled bool
		if err := tx.QueryRowContext(ctx, `SELECT disabled FROM users WHERE id = ?`, uid).Scan(&disabled); err != nil {
			return err
		}
		if disabled {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE external_identities SET last_login_at = ? WHERE provider_id = ? AND subject = ?`, millis(now), p.ID, in.Subject); err != nil {
			return err
		}
		if d := strings.TrimSpace(in.DisplayName); d != "" && !r.Created {
			if _, err := tx.ExecContext(ctx, `UPDATE users SET display_name = ? WHERE id = ? AND display_name != ?`, d, uid, d); err != nil {
				return err
			}
		}
		r.Added, r.Removed, err = applyMappings(ctx, tx, p.ID, kind, uid, in.Groups)
		return err
	})
	if err != nil {
		return ProvisionResult{}, fmt.Errorf("provision %s: %w", in.Username, err)
	}
	if r.User, err = s.UserByID(ctx, uid); err != nil {
		return ProvisionResult{}, err
	}
	return r, nil
}

// applyMappings makes the user's memberships of the groups the provider's
// mappings name exactly those the provider's groups give.
func applyMappings(ctx context.Context, tx *sql.Tx, providerID int64, kind string, userID int64, groups []string) (added, removed []string, err error) {
	// LDAP DNs and group names compare without case; claim values as sent.
	norm := func(v string) string { return v }
	if kind == KindLDAP {
		norm = strings.ToLower
	}
	have := make(map[string]bool, len(groups))
	for _, g := range groups {
		have[norm(g)] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT m.claim_value, g.id, g.name FROM identity_group_mappings m JOIN groups g ON g.id = m.group_id WHERE m.provider_id = ?`, providerID)
	if err != nil {
		return nil, nil, err
	}
	managed := map[int64]string{}
	want := map[int64]bool{}
	for rows.Next() {
		var claim, gname string
		var gid int64
		if err := rows.Scan(&claim, &gid, &gname); err != nil {
			rows.Close()
			return nil, nil, err
		}
		managed[gid] = gname
		if have[norm(claim)] {
			want[gid] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for gid, gname := range managed {
		if want[gid] {
			res, err := tx.ExecContext(ctx, `INSERT INTO group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, gid, userID)
			if err != nil {
				return nil, nil, err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				added = append(added, gname)
			}
			continue
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_id = ? AND user_id = ?`, gid, userID)
		if err != nil {
			return nil, nil, err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			removed = append(removed, gname)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed, nil
}

// Setting keys of the identity settings (JSON).
const (
	SettingLocalPasswords = "identity.local_passwords"
	SettingMFARequirement = "identity.mfa_requirement"
)

// Local password sign-in (settings): Enabled false lets only the
// break-glass admin sign in with a password kept here.
type LocalPasswords struct {
	Enabled        bool   `json:"enabled"`
	BreakGlassUser string `json:"break_glass_user,omitempty"`
}

// Allows reports whether u may sign in with a password kept here: a local
// user while local passwords are on, else only the break-glass admin.
func (lp LocalPasswords) Allows(u User) bool {
	if u.Source != SourceLocal && u.Source != "" {
		return false
	}
	if lp.Enabled {
		return true
	}
	return lp.BreakGlassUser != "" && strings.EqualFold(u.Name, lp.BreakGlassUser) && u.Role == RoleAdmin
}

// LocalPasswordSettings returns the local password settings (enabled by
// default).
func (s *Store) LocalPasswordSettings(ctx context.Context) (LocalPasswords, error) {
	lp := LocalPasswords{Enabled: true}
	text, err := s.GetSetting(ctx, SettingLocalPasswords)
	if err != nil || text == "" {
		return lp, err
	}
	if err := json.Unmarshal([]byte(text), &lp); err != nil {
		return LocalPasswords{Enabled: true}, fmt.Errorf("read setting %s: %w", SettingLocalPasswords, err)
	}
	return lp, nil
}

// BreakGlassError says why a break-glass user cannot be one.
type BreakGlassError struct{ Msg string }

func (e *BreakGlassError) Error() string { return e.Msg }

// SetLocalPasswordSettings saves them; turning passwords off needs a
// break-glass user who exists, is an admin and is local.
func (s *Store) SetLocalPasswordSettings(ctx context.Context, lp LocalPasswords) error {
	lp.BreakGlassUser = strings.TrimSpace(lp.BreakGlassUser)
	if !lp.Enabled || lp.BreakGlassUser != "" {
		if lp.BreakGlassUser == "" {
			return &BreakGlassError{"Choose a break-glass admin before turning local passwords off: without one nobody could sign in if the identity providers fail."}
		}
		u, err := s.UserByName(ctx, lp.BreakGlassUser)
		switch {
		case errors.Is(err, ErrNotFound):
			return &BreakGlassError{fmt.Sprintf("There is no user named %s.", lp.BreakGlassUser)}
		case err != nil:
			return err
		case u.Role != RoleAdmin:
			return &BreakGlassError{fmt.Sprintf("%s is not an admin: the break-glass user must be one.", u.Name)}
		case u.Source != SourceLocal:
			return &BreakGlassError{fmt.Sprintf("%s signs in through a provider: the break-glass user must have a local password.", u.Name)}
		case u.Disabled:
			return &BreakGlassError{fmt.Sprintf("%s is disabled.", u.Name)}
		}
		lp.BreakGlassUser = u.Name
	}
	b, err := json.Marshal(lp)
	if err != nil {
		return err
	}
	return s.SetSetting(ctx, SettingLocalPasswords, string(b))
}

// MFARequirement says who must use MFA at sign-in (local and LDAP users).
type MFARequirement struct {
	Everyone bool     `json:"everyone,omitempty"`
	Roles    []Role   `json:"roles,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// MFARequirementSettings returns it (nobody by default).
func (s *Store) MFARequirementSettings(ctx context.Context) (MFARequirement, error) {
	var m MFARequirement
	text, err := s.GetSetting(ctx, SettingMFARequirement)
	if err != nil || text == "" {
		return m, err
	}
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		return MFARequirement{}, fmt.Errorf("read setting %s: %w", SettingMFARequirement, err)
	}
	return m, nil
}

// SetMFARequirementSettings saves it.
func (s *Store) SetMFARequirementSettings(ctx context.Context, m MFARequirement) error {
	for _, r := range m.Roles {
		if _, err := ParseRole(string(r)); err != nil {
			return err
		}
	}
	for _, g := range m.Groups {
		var one int
		if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM groups WHERE name = ?`, g).Scan(&one); err != nil {
			return fmt.Errorf("group %s: %w", g, notFound(err))
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.SetSetting(ctx, SettingMFARequirement, string(b))
}

// Requires reports whether m asks u to use MFA. OpenID Connect and SAML
// users are never asked: their provider does MFA.
func (m MFARequirement) Requires(u User) bool {
	if strings.HasPrefix(u.Source, KindOIDC+":") || strings.HasPrefix(u.Source, KindSAML+":") {
		return false
	}
	if m.Everyone || slices.Contains(m.Roles, u.Role) {
		return true
	}
	for _, g := range u.Groups {
		if slices.ContainsFunc(m.Groups, func(x string) bool { return strings.EqualFold(x, g) }) {
			return true
		}
	}
	return false
}

// MFA factor kinds.
const (
	FactorTOTP     = "totp"
	FactorWebAuthn = "webauthn"
)

// MFAFactor is a user's TOTP key or WebAuthn credential. Secret is the
// TOTP key (plaintext here, sealed at rest); CredentialID and Data are a
// WebAuthn credential's id and JSON.
type MFAFactor struct {
	ID           int64
	UserID       int64
	Kind         string
	Name         string
	Secret       string
	CredentialID []byte
	Data         string
	LastStep     int64
	CreatedAt    time.Time
	LastUsedAt   time.Time
}

// factorSecretAD binds a sealed TOTP key to its factor and user.
func factorSecretAD(id, userID int64) []byte {
	return []byte("mfa_factor:" + strconv.FormatInt(id, 10) + ":user:" + strconv.FormatInt(userID, 10))
}

// AddMFAFactor stores a factor.
func (s *Store) AddMFAFactor(ctx context.Context, f MFAFactor) (MFAFactor, error) {
	f.Name = strings.TrimSpace(f.Name)
	switch {
	case f.Kind != FactorTOTP && f.Kind != FactorWebAuthn:
		return MFAFactor{}, fmt.Errorf("unknown factor kind %q", f.Kind)
	case f.Name == "" || utf8.RuneCountInString(f.Name) > maxFactorName || !utf8.ValidString(f.Name):
		return MFAFactor{}, fmt.Errorf("a factor's name must have 1 to %d characters", maxFactorName)
	case f.Kind == FactorTOTP && f.Secret == "":
		return MFAFactor{}, errors.New("a TOTP factor needs its key")
	case f.Kind == FactorWebAuthn && len(f.CredentialID) == 0:
		return MFAFactor{}, errors.New("a WebAuthn factor needs its credential id")
	}
	var credID any
	if f.Kind == FactorWebAuthn {
		credID = f.CredentialID
	}
	now := s.now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO mfa_factors (user_id, kind, name, credential_id, data, last_step, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			f.UserID, f.Kind, f.Name, credID, f.Data, f.LastStep, millis(now)).Scan(&f.ID)
		if err != nil {
			return conflict(err, "this security key is already registered")
		}
		if f.Kind != FactorTOTP {
			return nil
		}
		sealed, err := s.sealer.Seal([]byte(f.Secret), factorSecretAD(f.ID, f.UserID))
		if err != nil {
			return fmt.Errorf("seal TOTP key: %w", err)
		}
		_, err = tx.ExecContext(ctx, `UPDATE mfa_factors SET secret = ? WHERE id = ?`, sealed, f.ID)
		return err
	})
	if err != nil {
		return MFAFactor{}, fmt.Errorf("add %s factor for user %d: %w", f.Kind, f.UserID, err)
	}
	f.CreatedAt = fromMillis(millis(now))
	return f, nil
}

const factorColumns = `id, user_id, kind, name, secret, credential_id, data, last_step, created_at, last_used_at`

func (s *Store) scanFactor(row interface{ Scan(...any) error }) (MFAFactor, error) {
	var f MFAFactor
	var sealed []byte
	var created, used int64
	if err := row.Scan(&f.ID, &f.UserID, &f.Kind, &f.Name, &sealed, &f.CredentialID, &f.Data, &f.LastStep, &created, &used); err != nil {
		return MFAFactor{}, err
	}
	f.CreatedAt, f.LastUsedAt = fromMillis(created), fromMillis(used)
	if len(sealed) > 0 {
		plain, err := s.sealer.Open(sealed, factorSecretAD(f.ID, f.UserID))
		if err != nil {
			return MFAFactor{}, fmt.Errorf("key of factor %d: %w", f.ID, err)
		}
		f.Secret = string(plain)
	}
	return f, nil
}

// MFAFactors returns a user's factors, oldest first.
func (s *Store) MFAFactors(ctx context.Context, userID int64) ([]MFAFactor, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+factorColumns+` FROM mfa_factors WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("factors of user %d: %w", userID, err)
	}
	defer rows.Close()
	var out []MFAFactor
	for rows.Next() {
		f, err := s.scanFactor(rows)
		if err != nil {
			return nil, fmt.Errorf("factors of user %d: %w", userID, err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// MFAFactorKinds returns each user's factor kinds (sorted, once each), for
// the Users page.
func (s *Store) MFAFactorKinds(ctx context.Context) (map[int64][]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT user_id, kind FROM mfa_factors ORDER BY user_id, kind`)
	if err != nil {
		return nil, fmt.Errorf("factor kinds: %w", err)
	}
	defer rows.Close()
	out := map[int64][]string{}
	for rows.Next() {
		var id int64
		var kind string
		if err := rows.Scan(&id, &kind); err != nil {
			return nil, err
		}
		out[id] = append(out[id], kind)
	}
	return out, rows.Err()
}

// MFAFactorByCredentialID returns the WebAuthn factor with that id.
func (s *Store) MFAFactorByCredentialID(ctx context.Context, credID []byte) (MFAFactor, error) {
	f, err := s.scanFactor(s.db.QueryRowContext(ctx, `SELECT `+factorColumns+` FROM mfa_factors WHERE kind = 'webauthn' AND credential_id = ?`, credID))
	if err != nil {
		return MFAFactor{}, fmt.Errorf("security key: %w", notFound(err))
	}
	return f, nil
}

// UseTOTPStep records that a TOTP factor accepted time step step; it
// reports false (and changes nothing) when step is not after the last one
// accepted, so that a code works once.
func (s *Store) UseTOTPStep(ctx context.Context, factorID, step int64) (bool, error) {
	// One statement: two sign-ins racing with the same code cannot both
	// move the step on.
	res, err := s.db.ExecContext(ctx, `UPDATE mfa_factors SET last_step = ?, last_used_at = ? WHERE id = ? AND kind = 'totp' AND last_step < ?`,
		step, millis(s.now()), factorID, step)
	if err != nil {
		return false, fmt.Errorf("use TOTP step of factor %d: %w", factorID, err)
	}
	n, _ := res.RowsAffected()
	if n == 1 {
		return true, nil
	}
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM mfa_factors WHERE id = ? AND kind = 'totp'`, factorID).Scan(&one); err != nil {
		return false, fmt.Errorf("TOTP factor %d: %w", factorID, notFound(err))
	}
	return false, nil
}

// UpdateWebAuthnFactor saves a credential's new data (sign count) and
// marks it used.
func (s *Store) UpdateWebAuthnFactor(ctx context.Context, factorID int64, data string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE mfa_factors SET data = ?, last_used_at = ? WHERE id = ? AND kind = 'webauthn'`, data, millis(s.now()), factorID)
	if err != nil {
		return fmt.Errorf("update security key %d: %w", factorID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("security key %d: %w", factorID, ErrNotFound)
	}
	return nil
}

// DeleteMFAFactor removes one of a user's factors.
func (s *Store) DeleteMFAFactor(ctx context.Context, userID, factorID int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM mfa_factors WHERE id = ? AND user_id = ?`, factorID, userID)
	if err != nil {
		return fmt.Errorf("delete factor %d: %w", factorID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("factor %d of user %d: %w", factorID, userID, ErrNotFound)
	}
	return nil
}

// ResetMFA removes all of a user's factors and recovery codes.
func (s *Store) ResetMFA(ctx context.Context, userID int64) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_factors WHERE user_id = ?`, userID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM mfa_recovery_codes WHERE user_id = ?`, userID)
		return err
	})
	if err != nil {
		return fmt.Errorf("reset MFA of user %d: %w", userID, err)
	}
	return nil
}

// SetRecoveryCodes replaces a user's recovery codes by those hashes.
func (s *Store) SetRecoveryCodes(ctx context.Context, userID int64, hashes []string) error {
	if len(hashes) > maxRecoveryCodes {
		return fmt.Errorf("at most %d recovery codes", maxRecoveryCodes)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_recovery_codes WHERE user_id = ?`, userID); err != nil {
			return err
		}
		for _, h := range hashes {
			if h == "" {
				return errors.New("an empty recovery code hash")
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO mfa_recovery_codes (user_id, hash) VALUES (?, ?)`, userID, h); err != nil {
				return conflict(err, "two recovery codes are the same")
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set recovery codes of user %d: %w", userID, err)
	}
	return nil
}

// UseRecoveryCode marks the unused code with that hash used; false when
// there is none.
func (s *Store) UseRecoveryCode(ctx context.Context, userID int64, hash string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE mfa_recovery_codes SET used_at = ? WHERE user_id = ? AND hash = ? AND used_at = 0`,
		max(millis(s.now()), 1), userID, hash)
	if err != nil {
		return false, fmt.Errorf("use recovery code of user %d: %w", userID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// RecoveryCodesLeft counts a user's unused recovery codes.
func (s *Store) RecoveryCodesLeft(ctx context.Context, userID int64) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = ? AND used_at = 0`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count recovery codes of user %d: %w", userID, err)
	}
	return n, nil
}

// SetDeviceMFA records when a device's user last passed an MFA check for
// it (at approval, or a later step-up).
func (s *Store) SetDeviceMFA(ctx context.Context, deviceID int64, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET mfa_at = ? WHERE id = ?`, millis(at), deviceID)
	if err != nil {
		return fmt.Errorf("record MFA of device %d: %w", deviceID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("device %d: %w", deviceID, ErrNotFound)
	}
	return nil
}
