package ldap

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// testConfig is a configuration for the test directory, searching with
// its service account over StartTLS.
func testConfig(s *targets.Slapd) Config {
	c := Config{URL: s.URL, StartTLS: true, CAPEM: string(s.CAPEM),
		BindDN: targets.SlapdServiceDN, BindPassword: s.ServicePassword,
		UserBase: targets.SlapdPeople, GroupBase: targets.SlapdGroups, Nested: NestedSearch}
	c.Defaults()
	return c
}

func newDirectory(t *testing.T, c Config) *Directory {
	t.Helper()
	d, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func groupNames(id Identity) []string {
	var out []string
	for _, g := range id.Groups {
		out = append(out, g.Name)
	}
	slices.Sort(out)
	return out
}

// TestAuthenticate signs the test directory's users in over StartTLS and
// LDAPS, with a service account or a DN template, with nested groups
// expanded or not.
func TestAuthenticate(t *testing.T) {
	t.Parallel()
	s := targets.NewSlapd(t)
	ldaps := testConfig(s)
	ldaps.URL, ldaps.StartTLS = s.LDAPSURL, false
	template := testConfig(s)
	template.BindDN, template.BindPassword = "", ""
	template.UserDNTemplate = "uid={username}," + targets.SlapdPeople
	flat := testConfig(s)
	flat.Nested = NestedNone
	cases := []struct {
		name   string
		cfg    Config
		user   targets.SlapdUser
		groups []string
	}{
		{"starttls nested", testConfig(s), targets.SlapdAlice, []string{"ops", "staff"}},
		{"ldaps", ldaps, targets.SlapdAlice, []string{"ops", "staff"}},
		{"dn template, searching as the user", template, targets.SlapdAlice, []string{"ops", "staff"}},
		{"direct groups only", flat, targets.SlapdAlice, []string{"ops"}},
		{"other user", testConfig(s), targets.SlapdBob, []string{"dev"}},
		{"no groups", testConfig(s), targets.SlapdCarol, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := newDirectory(t, c.cfg).Authenticate(context.Background(), c.user.UID, c.user.Password)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id.DN != c.user.DN() || id.Username != c.user.UID || id.DisplayName != c.user.DisplayName || id.Email != c.user.Mail {
				t.Errorf("identity %+v, want %s", id, c.user.DN())
			}
			if got := groupNames(id); !slices.Equal(got, c.groups) {
				t.Errorf("groups %v, want %v", got, c.groups)
			}
			for _, g := range c.groups {
				if !slices.Contains(id.GroupValues(), targets.SlapdGroupDN(g)) || !slices.Contains(id.GroupValues(), g) {
					t.Errorf("group values %v lack %s's DN or name", id.GroupValues(), g)
				}
			}
		})
	}
}

// TestAuthenticateRefusals: wrong and empty passwords, unknown users and
// filter injection are refused with the error that says which.
func TestAuthenticateRefusals(t *testing.T) {
	t.Parallel()
	s := targets.NewSlapd(t)
	d := newDirectory(t, testConfig(s))
	template := testConfig(s)
	template.BindDN, template.BindPassword = "", ""
	template.UserDNTemplate = "uid={username}," + targets.SlapdPeople
	dt := newDirectory(t, template)
	cases := []struct {
		name     string
		d        *Directory
		user, pw string
		want     error
	}{
		{"wrong password", d, "alice", "not-her-password", ErrInvalidCredentials},
		{"wrong password, dn template", dt, "alice", "not-her-password", ErrInvalidCredentials},
		// An empty password would be an unauthenticated bind, which
		// slapd (and AD) answer with success.
		{"empty password", d, "alice", "", ErrEmptyPassword},
		{"empty password, dn template", dt, "alice", "", ErrEmptyPassword},
		{"unknown user", d, "mallory", "whatever-password", ErrNoSuchUser},
		{"unknown user, dn template", dt, "mallory", "whatever-password", ErrInvalidCredentials},
		// Escaped, the star is a literal: it matches nobody, where
		// unescaped (uid=*) would match every user.
		{"filter wildcard", d, "*", "alice-password-1", ErrNoSuchUser},
		{"filter injection", d, "alice)(uid=*", "alice-password-1", ErrNoSuchUser},
		{"filter injection with or", d, "*)(|(uid=*", "alice-password-1", ErrNoSuchUser},
		{"dn injection", dt, "alice,ou=people", "alice-password-1", ErrInvalidCredentials},
		{"empty user", d, "", "x", ErrNoSuchUser},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := c.d.Authenticate(context.Background(), c.user, c.pw)
			if !errors.Is(err, c.want) {
				t.Fatalf("Authenticate(%q) = %+v, %v; want %v", c.user, id, err, c.want)
			}
		})
	}
}

// TestTLSRefusals: a certificate from another CA is refused, at StartTLS
// and at the LDAPS handshake; a directory that is down is unreachable.
func TestTLSRefusals(t *testing.T) {
	t.Parallel()
	s := targets.NewSlapd(t)
	wrongCA := string(targets.TestCAPEM(t))
	starttls := testConfig(s)
	starttls.CAPEM = wrongCA
	ldaps := testConfig(s)
	ldaps.URL, ldaps.StartTLS, ldaps.CAPEM = s.LDAPSURL, false, wrongCA
	for _, c := range []struct {
		name string
		cfg  Config
		step string
	}{{"starttls", starttls, StepStartTLS}, {"ldaps", ldaps, StepConnect}} {
		t.Run(c.name, func(t *testing.T) {
			_, err := newDirectory(t, c.cfg).Authenticate(context.Background(), "alice", targets.SlapdAlice.Password)
			var se *StepError
			if !errors.As(err, &se) || se.Step != c.step || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("Authenticate with a wrong CA: %v; want a %s certificate error", err, c.step)
			}
		})
	}
	t.Run("down", func(t *testing.T) {
		d := newDirectory(t, testConfig(s))
		s.Stop()
		_, err := d.Authenticate(context.Background(), "alice", targets.SlapdAlice.Password)
		var se *StepError
		if !errors.As(err, &se) || !se.Unreachable() {
			t.Fatalf("Authenticate against a stopped directory: %v; want unreachable", err)
		}
	})
}

// TestGroupsFollowDirectory: a change of membership in the directory is
// seen at the next sign-in.
func TestGroupsFollowDirectory(t *testing.T) {
	t.Parallel()
	s := targets.NewSlapd(t)
	d := newDirectory(t, testConfig(s))
	ldif := "dn: " + targets.SlapdGroupDN("staff") + "\nchangetype: modify\ndelete: member\nmember: " + targets.SlapdGroupDN("ops") +
		"\n-\nadd: member\nmember: " + targets.SlapdGroupDN("dev") + "\n"
	if err := s.Modify(context.Background(), ldif); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user   targets.SlapdUser
		groups []string
	}{{targets.SlapdAlice, []string{"ops"}}, {targets.SlapdBob, []string{"dev", "staff"}}} {
		id, err := d.Authenticate(context.Background(), c.user.UID, c.user.Password)
		if err != nil {
			t.Fatal(err)
		}
		if got := groupNames(id); !slices.Equal(got, c.groups) {
			t.Errorf("%s's groups after the change: %v, want %v", c.user.UID, got, c.groups)
		}
	}
}

// TestGroupLimits: a nested expansion stops at MaxGroups, and a cycle of
// groups (staff in ops, ops in staff) ends.
func TestGroupLimits(t *testing.T) {
	t.Parallel()
	s := targets.NewSlapd(t)
	ldif := "dn: " + targets.SlapdGroupDN("ops") + "\nchangetype: modify\nadd: member\nmember: " + targets.SlapdGroupDN("staff") + "\n"
	if err := s.Modify(context.Background(), ldif); err != nil {
		t.Fatal(err)
	}
	id, err := newDirectory(t, testConfig(s)).Authenticate(context.Background(), "alice", targets.SlapdAlice.Password)
	if err != nil || !slices.Equal(groupNames(id), []string{"ops", "staff"}) {
		t.Fatalf("alice with a cycle of groups: %v, %v", groupNames(id), err)
	}
	c := testConfig(s)
	c.MaxGroups = 1
	if _, err := newDirectory(t, c).Authenticate(context.Background(), "alice", targets.SlapdAlice.Password); err == nil || !strings.Contains(err.Error(), "more than 1 groups") {
		t.Fatalf("alice in 2 groups with a limit of 1: %v", err)
	}
}

// TestCheckSteps: the admin's test names each step, and the failing one.
func TestCheckSteps(t *testing.T) {
	t.Parallel()
	s := targets.NewSlapd(t)
	id, steps, err := newDirectory(t, testConfig(s)).Check(context.Background(), "alice", "")
	if err != nil || id.DN != targets.SlapdAlice.DN() || len(id.Groups) != 2 {
		t.Fatalf("lookup of alice: %+v, %v", id, err)
	}
	var names []string
	for _, st := range steps {
		names = append(names, st.Name)
	}
	if want := []string{StepConnect, StepStartTLS, StepBind, StepSearch, StepGroups}; !slices.Equal(names, want) {
		t.Errorf("steps %v, want %v", names, want)
	}
	c := testConfig(s)
	c.BindPassword = "wrong"
	_, steps, err = newDirectory(t, c).Check(context.Background(), "alice", "")
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepBind || steps[len(steps)-1].Err == nil {
		t.Fatalf("lookup with a wrong service password: %v; want a bind error", err)
	}
}

// TestParseConfig: what an admin may get wrong is refused with a message
// naming it.
func TestParseConfig(t *testing.T) {
	t.Parallel()
	ok := `{"url":"ldaps://dc1.corp.example","bind_dn":"cn=svc,dc=corp","bind_password":"pw","user_base":"dc=corp"}`
	c, err := ParseConfig([]byte(ok))
	if err != nil || c.UserFilter != defaultUserFilter || c.Timeout != defaultTimeout {
		t.Fatalf("ParseConfig(%s) = %+v, %v", ok, c, err)
	}
	for _, c := range []struct{ json, want string }{
		{`{"url":"ldap://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x"}`, "in clear"},
		{`{"url":"ldaps://dc1","start_tls":true,"bind_dn":"cn=a","bind_password":"p","user_base":"dc=x"}`, "StartTLS is for"},
		{`{"url":"http://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x"}`, "ldap://"},
		{`{"url":"ldaps://dc1","user_base":"dc=x"}`, "user DN template is needed"},
		{`{"url":"ldaps://dc1","bind_dn":"cn=a","user_base":"dc=x"}`, "both"},
		{`{"url":"ldaps://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x","user_filter":"(uid=x)"}`, "{username}"},
		{`{"url":"ldaps://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x","user_filter":"(uid={username}"}`, "not an LDAP filter"},
		{`{"url":"ldaps://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x","ca_pem":"junk"}`, "no PEM certificate"},
		{`{"url":"ldaps://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x","nested_groups":"deep"}`, "nested groups"},
		{`{"url":"ldaps://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x","username_attr":"u id"}`, "not an attribute"},
		{`{"url":"ldaps://dc1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x","timeout":600}`, "timeouts"},
		{`{"url":"ldaps://dc1","bogus":1}`, "unknown field"},
	} {
		if _, err := ParseConfig([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseConfig(%s) = %v; want an error with %q", c.json, err, c.want)
		}
	}
}

// FuzzParseConfig: no configuration panics, and an accepted one makes a
// Directory.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"url":"ldaps://dc1.corp.example","bind_dn":"cn=svc,dc=corp","bind_password":"pw","user_base":"dc=corp","group_base":"dc=corp","nested_groups":"ad"}`))
	f.Add([]byte(`{"url":"ldap://127.0.0.1:1","start_tls":true,"user_dn_template":"{username}@corp","user_base":"dc=corp"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if _, err := New(c); err != nil {
			t.Fatalf("ParseConfig accepted %s but New refuses it: %v", b, err)
		}
	})
}

// TestHungDirectory: a directory that accepts connections and never
// answers is unreachable within the configured timeouts, at the TLS
// handshake (ldaps) or the StartTLS request (an operation).
func TestHungDirectory(t *testing.T) {
	t.Parallel()
	addr := targets.NewSilent(t)
	base := Config{BindDN: "cn=svc", BindPassword: "pw", UserBase: "dc=x", ConnectTimeout: 1, Timeout: 1}
	for _, c := range []struct {
		name, url string
		starttls  bool
		step      string
	}{{"ldaps", "ldaps://" + addr, false, StepConnect}, {"starttls", "ldap://" + addr, true, StepStartTLS}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			cfg.URL, cfg.StartTLS = c.url, c.starttls
			cfg.Defaults()
			start := time.Now()
			_, err := newDirectory(t, cfg).Authenticate(context.Background(), "alice", "password")
			var se *StepError
			if !errors.As(err, &se) || se.Step != c.step || !se.Unreachable() {
				t.Fatalf("hung directory: %v; want unreachable at %s", err, c.step)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("gave up after %s with 1 s timeouts", took)
			}
		})
	}
}
