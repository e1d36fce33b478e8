package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"
)

// Limits on what a directory answers, checked before it is used.
const (
	// maxUsername bounds a user name typed at sign-in.
	maxUsername = 256
	// maxValue bounds an attribute value kept (names, DNs, mail); longer
	// values are refused as names and skipped as groups.
	maxValue = 1024
	// groupBatch is how many group DNs one search of a breadth-first
	// nested expansion asks about, OR-ed in its filter.
	groupBatch = 32
)

// Steps of a sign-in or lookup, named in errors and test reports.
const (
	StepConnect  = "connect"
	StepStartTLS = "StartTLS"
	StepBind     = "bind"
	StepSearch   = "search"
	StepUserBind = "user bind"
	StepGroups   = "groups"
)

// Errors of Authenticate and Lookup.
var (
	// ErrInvalidCredentials: the directory refused the user's password.
	ErrInvalidCredentials = errors.New("the directory refused the password")
	// ErrNoSuchUser: the user search found nobody.
	ErrNoSuchUser = errors.New("the directory has no such user")
	// ErrEmptyPassword is refused before any bind: an empty password would
	// be an unauthenticated bind, which many directories accept as a
	// success without checking anything.
	ErrEmptyPassword = errors.New("a password is needed")
)

// StepError is a failure at one step of talking to the directory.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Unreachable reports whether the directory did not answer at all (no
// connection, TLS handshake failed, timeout, connection lost), as opposed
// to answering with an error.
func (e *StepError) Unreachable() bool {
	if e.Step == StepConnect || e.Step == StepStartTLS {
		return true
	}
	var le *goldap.Error
	if errors.As(e.Err, &le) && le.ResultCode == goldap.ErrorNetwork {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) || errors.Is(e.Err, context.DeadlineExceeded)
}

// Group is a group the user is in.
type Group struct {
	DN   string
	Name string
}

// Identity is what the directory says about a user.
type Identity struct {
	DN          string
	Username    string
	DisplayName string
	Email       string
	Groups      []Group
}

// GroupValues are the values group mappings match: each group's DN and
// name.
func (id Identity) GroupValues() []string {
	var out []string
	for _, g := range id.Groups {
		out = append(out, g.DN)
		if g.Name != "" {
			out = append(out, g.Name)
		}
	}
	return out
}

// Step is one step of a Check, for the admin's Test report.
type Step struct {
	Name     string
	Detail   string
	Err      error
	Duration time.Duration
}

// Directory talks to one LDAP directory. Each sign-in uses its own
// connection, closed before it returns.
type Directory struct {
	cfg    Config
	tls    *tls.Config
	host   string
	ldaps  bool
	dialer *net.Dialer
}

// New returns a Directory for cfg, which must be valid.
func New(cfg Config) (*Directory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hostPort, ldaps, err := cfg.endpoint()
	if err != nil {
		return nil, err
	}
	pool, err := cfg.certPool()
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(hostPort)
	return &Directory{cfg: cfg, host: hostPort, ldaps: ldaps, dialer: &net.Dialer{Timeout: cfg.connectTimeout()},
		tls: cfg.TLS.Client(&tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12})}, nil
}

// Authenticate checks username's password by binding as the user, and
// returns who the directory says they are, with their groups.
func (d *Directory) Authenticate(ctx context.Context, username, password string) (Identity, error) {
	return d.run(ctx, username, password, true, nil)
}

// Check is Authenticate (or, with an empty password, a lookup with the
// service account, which checks no password) reporting each step, for an
// admin testing the configuration.
func (d *Directory) Check(ctx context.Context, username, password string) (Identity, []Step, error) {
	var steps []Step
	id, err := d.run(ctx, username, password, password != "", func(s Step) { steps = append(steps, s) })
	return id, steps, err
}

// session is one connection's work, reporting steps to trace.
type session struct {
	d     *Directory
	conn  *goldap.Conn
	trace func(Step)
}

// do runs one step, timing it, and wraps its error with the step's name.
func (s *session) do(name string, detail func() string, f func() error) error {
	start := time.Now()
	err := f()
	if s.trace != nil {
		st := Step{Name: name, Err: err, Duration: time.Since(start)}
		if err == nil && detail != nil {
			st.Detail = detail()
		}
		s.trace(st)
	}
	if err != nil {
		var se *StepError
		if errors.As(err, &se) || errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrNoSuchUser) {
			return err
		}
		return &StepError{Step: name, Err: err}
	}
	return nil
}

func (d *Directory) run(ctx context.Context, username, password string, checkPassword bool, trace func(Step)) (Identity, error) {
	if err := checkUsername(username); err != nil {
		return Identity{}, err
	}
	if checkPassword && password == "" {
		return Identity{}, ErrEmptyPassword
	}
	if !checkPassword && d.cfg.BindDN == "" {
		return Identity{}, &StepError{Step: StepBind, Err: errors.New("without a service account the directory can be searched only as the user: give their password")}
	}
	s := &session{d: d, trace: trace}
	if err := s.do(StepConnect, func() string { return d.cfg.URL }, func() error { return s.connect(ctx) }); err != nil {
		return Identity{}, err
	}
	defer s.conn.Close()
	// The connection's operations have their own timeout; closing it when
	// ctx ends stops one under way.
	defer context.AfterFunc(ctx, func() { s.conn.Close() })()
	if d.cfg.StartTLS {
		if err := s.do(StepStartTLS, nil, func() error { return s.conn.StartTLS(d.tls) }); err != nil {
			return Identity{}, err
		}
	}
	var id Identity
	var err error
	if d.cfg.BindDN != "" {
		id, err = s.withService(username, password, checkPassword)
	} else {
		id, err = s.asUser(username, password)
	}
	if err != nil {
		return Identity{}, err
	}
	if err := s.do(StepGroups, func() string { return fmt.Sprintf("%d groups", len(id.Groups)) }, func() error {
		var err error
		id.Groups, err = s.groups(id.DN)
		return err
	}); err != nil {
		return Identity{}, err
	}
	return id, nil
}

func (s *session) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.connectTimeout())
	defer cancel()
	c, err := s.d.dialer.DialContext(ctx, "tcp", s.d.host)
	if err != nil {
		return err
	}
	if s.d.ldaps {
		tc := tls.Client(c, s.d.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		c = tc
	}
	s.conn = goldap.NewConn(c, s.d.ldaps)
	s.conn.Start()
	s.conn.SetTimeout(s.d.cfg.timeout())
	return nil
}

// withService finds the user with the service account, binds as them to
// check the password, then binds as the service again to read groups.
func (s *session) withService(username, password string, checkPassword bool) (Identity, error) {
	cfg := s.d.cfg
	if err := s.do(StepBind, func() string { return "as " + cfg.BindDN }, func() error { return s.conn.Bind(cfg.BindDN, cfg.BindPassword) }); err != nil {
		return Identity{}, err
	}
	var id Identity
	if err := s.do(StepSearch, func() string { return "found " + id.DN }, func() error {
		var err error
		id, err = s.findUser(username)
		return err
	}); err != nil {
		return Identity{}, err
	}
	if !checkPassword {
		return id, nil
	}
	if err := s.do(StepUserBind, func() string { return "as " + id.DN }, func() error { return s.userBind(id.DN, password) }); err != nil {
		return Identity{}, err
	}
	if cfg.GroupBase != "" {
		if err := s.do(StepBind, func() string { return "as " + cfg.BindDN + " again" }, func() error { return s.conn.Bind(cfg.BindDN, cfg.BindPassword) }); err != nil {
			return Identity{}, err
		}
	}
	return id, nil
}

// asUser binds with the DN template, then reads the user's entry as them.
func (s *session) asUser(username, password string) (Identity, error) {
	bindName := strings.ReplaceAll(s.d.cfg.UserDNTemplate, "{username}", escapeDNValue(s.d.cfg.UserDNTemplate, username))
	if err := s.do(StepUserBind, func() string { return "as " + bindName }, func() error { return s.userBind(bindName, password) }); err != nil {
		return Identity{}, err
	}
	var id Identity
	err := s.do(StepSearch, func() string { return "found " + id.DN }, func() error {
		var err error
		id, err = s.findUser(username)
		return err
	})
	return id, err
}

// escapeDNValue escapes username for the template: as a DN attribute
// value, unless the template is not a DN (a user principal name such as
// {username}@corp.example), where only characters a DN or UPN cannot hold
// unescaped are refused by checkUsername.
func escapeDNValue(template, username string) string {
	if strings.Contains(template, "=") {
		return goldap.EscapeDN(username)
	}
	return username
}

func (s *session) userBind(dn, password string) error {
	if password == "" {
		return ErrEmptyPassword
	}
	err := s.conn.Bind(dn, password)
	if goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
		return ErrInvalidCredentials
	}
	return err
}

// checkUsername refuses names no directory user should have before they
// reach a filter or DN (where they are escaped anyway).
func checkUsername(name string) error {
	if name == "" || len(name) > maxUsername || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return ErrNoSuchUser
	}
	return nil
}

// findUser searches for the one entry of username.
func (s *session) findUser(username string) (Identity, error) {
	cfg := s.d.cfg
	filter := userFilter(cfg.UserFilter, username)
	// Two entries are enough to know the filter is ambiguous.
	req := goldap.NewSearchRequest(cfg.UserBase, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 2, cfg.Timeout, false,
		filter, []string{cfg.UsernameAttr, cfg.DisplayNameAttr, cfg.MailAttr}, nil)
	req.EnforceSizeLimit = true
	res, err := s.conn.Search(req)
	switch {
	case errors.Is(err, goldap.ErrSizeLimitExceeded) || goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded):
		return Identity{}, fmt.Errorf("the user filter matches more than one entry for %q", username)
	case goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject):
		// A base the account may not see answers "no such object".
		return Identity{}, ErrNoSuchUser
	case err != nil:
		return Identity{}, err
	}
	switch len(res.Entries) {
	case 0:
		return Identity{}, ErrNoSuchUser
	case 1:
	default:
		return Identity{}, fmt.Errorf("the user filter matches more than one entry for %q", username)
	}
	return identityOf(res.Entries[0], cfg)
}

// identityOf reads a user entry, bounding what it keeps.
func identityOf(e *goldap.Entry, cfg Config) (Identity, error) {
	id := Identity{DN: e.DN,
		Username:    first(e, cfg.UsernameAttr),
		DisplayName: first(e, cfg.DisplayNameAttr),
		Email:       first(e, cfg.MailAttr)}
	if id.DN == "" || len(id.DN) > maxValue {
		return Identity{}, errors.New("the directory answered an entry without a usable DN")
	}
	if id.Username == "" {
		return Identity{}, fmt.Errorf("the entry %s has no %s (the user name attribute)", id.DN, cfg.UsernameAttr)
	}
	return id, nil
}

// first is an entry's first value of attr that is short, valid text;
// "" if none.
func first(e *goldap.Entry, attr string) string {
	for _, v := range e.GetEqualFoldAttributeValues(attr) {
		if v != "" && len(v) <= maxValue && utf8.ValidString(v) && !strings.ContainsFunc(v, unicode.IsControl) {
			return v
		}
	}
	return ""
}

// groups returns the groups of the user dn: direct, or nested as the
// configuration asks, at most MaxGroups.
func (s *session) groups(userDN string) ([]Group, error) {
	cfg := s.d.cfg
	if cfg.GroupBase == "" {
		return nil, nil
	}
	member := cfg.GroupMemberAttr
	if cfg.Nested == NestedAD {
		member += ":" + matchingRuleInChain + ":"
	}
	var out []Group
	seen := map[string]bool{strings.ToLower(userDN): true}
	frontier := []string{userDN}
	depth := 1
	if cfg.Nested == NestedSearch {
		depth = maxNestDepth
	}
	for level := 0; level < depth && len(frontier) > 0; level++ {
		var next []string
		for i := 0; i < len(frontier); i += groupBatch {
			batch := frontier[i:min(i+groupBatch, len(frontier))]
			found, err := s.searchGroups(member, batch, cfg.MaxGroups-len(out))
			if err != nil {
				return nil, err
			}
			for _, g := range found {
				k := strings.ToLower(g.DN)
				if seen[k] {
					continue
				}
				seen[k] = true
				out = append(out, g)
				next = append(next, g.DN)
				if len(out) > cfg.MaxGroups {
					return nil, fmt.Errorf("the user is in more than %d groups (the configured limit)", cfg.MaxGroups)
				}
			}
		}
		frontier = next
	}
	return out, nil
}

// groupFilter is the filter of groups with any of dns as a member:
// (&FILTER(MEMBER=dn)) or (&FILTER(|(MEMBER=dn1)(MEMBER=dn2)...)), each
// DN escaped (a DN may hold parentheses, stars and backslashes).
func groupFilter(filter, member string, dns []string) string {
	var b strings.Builder
	b.WriteString("(&" + filter)
	if len(dns) > 1 {
		b.WriteString("(|")
	}
	for _, dn := range dns {
		b.WriteString("(" + member + "=" + goldap.EscapeFilter(dn) + ")")
	}
	if len(dns) > 1 {
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}

// userFilter is the user filter with {username} escaped.
func userFilter(filter, username string) string {
	return strings.ReplaceAll(filter, "{username}", goldap.EscapeFilter(username))
}

// searchGroups finds the groups with any of dns as a member, at most
// limit (one more means too many).
func (s *session) searchGroups(member string, dns []string, limit int) ([]Group, error) {
	cfg := s.d.cfg
	req := goldap.NewSearchRequest(cfg.GroupBase, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, limit+1, cfg.Timeout, false,
		groupFilter(cfg.GroupFilter, member, dns), []string{cfg.GroupNameAttr}, nil)
	req.EnforceSizeLimit = true
	res, err := s.conn.Search(req)
	if errors.Is(err, goldap.ErrSizeLimitExceeded) || goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
		return nil, fmt.Errorf("the user is in more than %d groups (the configured limit)", cfg.MaxGroups)
	}
	if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Group
	for _, e := range res.Entries {
		if e.DN == "" || len(e.DN) > maxValue || !utf8.ValidString(e.DN) {
			continue
		}
		out = append(out, Group{DN: e.DN, Name: first(e, cfg.GroupNameAttr)})
	}
	return out, nil
}
