package httpui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/identity/ldap"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// maxLDAPForm bounds an LDAP directory form (the CA bundle is most of it).
const maxLDAPForm = 512 << 10

// ldapTestTimeout bounds an admin's Test of a directory, beyond the
// directory's own timeouts.
const ldapTestTimeout = 60 * time.Second

// ldapRoutes registers the routes of LDAP admin pages (sign-in goes through
// the password form).
func (s *Server) ldapRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
	admin("GET /admin/identity/ldap/new", s.ldapNewPage)
	admin("POST /admin/identity/ldap", s.ldapCreateForm)
	admin("GET /admin/identity/ldap/{id}", s.ldapEditPage)
	admin("POST /admin/identity/ldap/{id}", s.ldapUpdateForm)
	admin("POST /admin/identity/ldap/{id}/test", s.ldapTestForm)
}

// ldapView is the form of a stored directory.
func ldapView(p store.IdentityProvider, c ldap.Config) ui.LDAPFormView {
	return ui.LDAPFormView{ID: p.ID, Name: p.Name, DisplayName: p.DisplayName, Enabled: p.Enabled,
		URL: c.URL, StartTLS: c.StartTLS, CAPEM: c.CAPEM, BindDN: c.BindDN, BindPasswordSet: c.BindPassword != "",
		UserDNTemplate: c.UserDNTemplate, UserBase: c.UserBase, UserFilter: c.UserFilter,
		UsernameAttr: c.UsernameAttr, DisplayNameAttr: c.DisplayNameAttr, MailAttr: c.MailAttr,
		GroupBase: c.GroupBase, GroupFilter: c.GroupFilter, GroupMemberAttr: c.GroupMemberAttr, GroupNameAttr: c.GroupNameAttr,
		Nested: c.Nested, MaxGroups: strconv.Itoa(c.MaxGroups), ConnectTimeout: strconv.Itoa(c.ConnectTimeout), Timeout: strconv.Itoa(c.Timeout)}
}

func (s *Server) renderLDAP(w http.ResponseWriter, r *http.Request, status int, v ui.LDAPFormView) {
	title := "Add LDAP directory"
	if v.ID != 0 {
		title = "LDAP directory " + v.Name
	}
	s.render(w, r, status, ui.LDAPForm(s.page(r, title, "identity"), v))
}

func (s *Server) ldapNewPage(w http.ResponseWriter, r *http.Request) {
	var c ldap.Config
	c.Defaults()
	c.Nested = ldap.NestedSearch
	v := ldapView(store.IdentityProvider{Enabled: true}, c)
	s.renderLDAP(w, r, http.StatusOK, v)
}

// ldapProvider is the LDAP directory of the request's {id}, with its
// configuration; a provider of another kind is not found.
func (s *Server) ldapProvider(r *http.Request) (store.IdentityProvider, ldap.Config, error) {
	p, err := s.providerFromPath(r, store.KindLDAP)
	if err != nil {
		return store.IdentityProvider{}, ldap.Config{}, err
	}
	// A stored configuration that no longer parses (a newer version's, or
	// edited by hand) is shown as far as it decodes, to be fixed.
	var c ldap.Config
	json.Unmarshal(p.Config, &c)
	c.Defaults()
	return p, c, nil
}

func (s *Server) ldapEditPage(w http.ResponseWriter, r *http.Request) {
	p, c, err := s.ldapProvider(r)
	if err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	s.renderLDAP(w, r, http.StatusOK, ldapView(p, c))
}

// ldapInput reads the directory form: the provider's fields and the
// configuration. The bind password is kept from old when left blank, and
// dropped with the bind DN.
func ldapInput(r *http.Request, old ldap.Config) (store.IdentityProvider, ldap.Config, ui.LDAPFormView) {
	f := r.PostForm
	p := store.IdentityProvider{Kind: store.KindLDAP, Name: strings.TrimSpace(f.Get("name")), DisplayName: strings.TrimSpace(f.Get("display_name")),
		Enabled: f.Get("enabled") == "on"}
	num := func(k string) int {
		n, err := strconv.Atoi(strings.TrimSpace(f.Get(k)))
		if err != nil {
			return -1 // refused by Validate, unless empty (the default)
		}
		return n
	}
	c := ldap.Config{URL: f.Get("url"), StartTLS: f.Get("start_tls") == "on", CAPEM: strings.TrimSpace(f.Get("ca_pem")),
		BindDN: f.Get("bind_dn"), BindPassword: f.Get("bind_password"), UserDNTemplate: f.Get("user_dn_template"),
		UserBase: f.Get("user_base"), UserFilter: f.Get("user_filter"), UsernameAttr: f.Get("username_attr"),
		DisplayNameAttr: f.Get("display_name_attr"), MailAttr: f.Get("mail_attr"), GroupBase: f.Get("group_base"),
		GroupFilter: f.Get("group_filter"), GroupMemberAttr: f.Get("group_member_attr"), GroupNameAttr: f.Get("group_name_attr"),
		Nested: f.Get("nested_groups")}
	for k, dst := range map[string]*int{"max_groups": &c.MaxGroups, "connect_timeout": &c.ConnectTimeout, "timeout": &c.Timeout} {
		if strings.TrimSpace(f.Get(k)) != "" {
			*dst = num(k)
		}
	}
	if strings.TrimSpace(c.BindDN) == "" {
		c.BindPassword = ""
	} else if c.BindPassword == "" {
		c.BindPassword = old.BindPassword
	}
	v := ldapView(p, c)
	// As typed, for the form shown again.
	v.MaxGroups, v.ConnectTimeout, v.Timeout = f.Get("max_groups"), f.Get("connect_timeout"), f.Get("timeout")
	return p, c, v
}

// validateLDAP checks the directory form; the errors are by field.
func validateLDAP(p *store.IdentityProvider, c *ldap.Config) fieldErrors {
	fe := fieldErrors{}
	if err := store.ValidProviderName(p.Name); err != nil {
		fe["name"] = capitalize(err.Error()) + "."
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		var ce *ldap.FieldError
		field := "form"
		if errors.As(err, &ce) && ce.Field != "" {
			field = ce.Field
		}
		fe[field] = upperFirst(err.Error()) + "."
	}
	if len(fe) > 0 {
		return fe
	}
	b, err := json.Marshal(c)
	if err != nil {
		fe["form"] = "The settings cannot be saved: " + err.Error()
		return fe
	}
	p.Config = b
	return nil
}

func (s *Server) ldapCreateForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLDAPForm)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is over %d KiB.", maxLDAPForm>>10))
		return
	}
	p, c, v := ldapInput(r, ldap.Config{})
	if fe := validateLDAP(&p, &c); fe != nil {
		v.Errors = ui.Errors(fe)
		s.renderLDAP(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	p, err := s.Store.CreateIdentityProvider(r.Context(), p)
	if err != nil {
		if errs := asFieldErrors(conflictOrErr(err, "name")); errs != nil {
			v.Errors = errs
			s.renderLDAP(w, r, http.StatusUnprocessableEntity, v)
			return
		}
		s.serverError(w, r, err)
		return
	}
	s.providerSaved(w, r, p, true, map[string]string{"url": c.URL},
		"Directory "+p.Name+" added. Choose who it may create and map its groups here; test it from its page.")
}

func (s *Server) ldapUpdateForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLDAPForm)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is over %d KiB.", maxLDAPForm>>10))
		return
	}
	old, oldCfg, err := s.ldapProvider(r)
	if err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	p, c, v := ldapInput(r, oldCfg)
	v.ID, v.BindPasswordSet = old.ID, c.BindPassword != ""
	if fe := validateLDAP(&p, &c); fe != nil {
		v.Errors = ui.Errors(fe)
		s.renderLDAP(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	p.ID, p.JITCreate, p.JITRole = old.ID, old.JITCreate, old.JITRole
	if err := s.Store.UpdateIdentityProvider(r.Context(), p); err != nil {
		if errs := asFieldErrors(conflictOrErr(err, "name")); errs != nil {
			v.Errors = errs
			s.renderLDAP(w, r, http.StatusUnprocessableEntity, v)
			return
		}
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	s.providerSaved(w, r, p, false, map[string]string{"url": c.URL, "enabled": strconv.FormatBool(p.Enabled)}, "Directory "+p.Name+" saved.")
}

// ldapTestForm looks a user up in the saved directory (binding as them
// when a password is given) and shows each step, their entry and groups.
func (s *Server) ldapTestForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	r.Body = http.MaxBytesReader(w, r.Body, maxLDAPForm)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is over %d KiB.", maxLDAPForm>>10))
		return
	}
	p, c, err := s.ldapProvider(r)
	if err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	v := ldapView(p, c)
	username, password := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	t := &ui.LDAPTestView{Username: username, PasswordChecked: password != ""}
	v.Test = t
	if username == "" {
		t.Error = "Enter the user name to look up."
		s.renderLDAP(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	id, steps, err := s.ldapCheck(r.Context(), p, username, password)
	for _, st := range steps {
		ts := ui.LDAPTestStep{Name: st.Name, Detail: st.Detail, Elapsed: elapsedText(st.Duration)}
		if st.Err != nil {
			ts.Error = ldapStepMessage(st.Err)
		}
		t.Steps = append(t.Steps, ts)
	}
	outcome, reason := audit.OutcomeSuccess, ""
	if err != nil {
		outcome, reason = audit.OutcomeFailure, err.Error()
		t.Error = ldapTestError(err)
	} else {
		t.DN, t.Name, t.DisplayName, t.Email = id.DN, id.Username, id.DisplayName, id.Email
		for _, g := range id.Groups {
			t.Groups = append(t.Groups, ui.LDAPTestGroup{DN: g.DN, Name: g.Name})
		}
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionIdPTest, Target: p.Source(), Outcome: outcome, Reason: reason,
		Details: map[string]string{"username": auditName(username), "password_checked": strconv.FormatBool(password != "")}})
	s.renderLDAP(w, r, http.StatusOK, v)
}

func (s *Server) ldapCheck(ctx context.Context, p store.IdentityProvider, username, password string) (ldap.Identity, []ldap.Step, error) {
	c, err := ldap.ParseConfig(p.Config)
	if err != nil {
		return ldap.Identity{}, nil, fmt.Errorf("the saved settings are not valid: %w", err)
	}
	c.TLS = s.ClientTLS
	d, err := ldap.New(c)
	if err != nil {
		return ldap.Identity{}, nil, fmt.Errorf("the saved settings are not valid: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, ldapTestTimeout)
	defer cancel()
	return d.Check(ctx, username, password)
}

// ldapTestError says what a failed Test means.
func ldapTestError(err error) string {
	var se *ldap.StepError
	switch {
	case errors.Is(err, ldap.ErrNoSuchUser):
		return "The user search found nobody with that name (check the user search base and filter)."
	case errors.Is(err, ldap.ErrInvalidCredentials):
		return "The directory refused that password."
	case errors.As(err, &se):
		return "Failed at " + se.Step + ": " + ldapStepMessage(se.Err)
	}
	return upperFirst(err.Error()) + "."
}

// upperFirst capitalizes s's first letter, keeping all of it (capitalize
// keeps only the last part of a wrapped error).
func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToUpper(string(r)) + s[n:]
}

// ldapStepMessage is a step's error as shown.
func ldapStepMessage(err error) string {
	var se *ldap.StepError
	if errors.As(err, &se) {
		err = se.Err
	}
	return err.Error()
}
