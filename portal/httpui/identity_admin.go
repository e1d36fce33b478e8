package httpui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// Bounds on the provisioning form.
const (
	// blankMappingRows are the empty rows offered below the mappings.
	blankMappingRows = 3
	// maxMappingRows bounds the rows a posted form may have (the store
	// keeps at most 500 mappings; room for blanks and removals).
	maxMappingRows = 600
)

// identityAdminRoutes registers the routes of the Sign-in page (providers, provisioning, local passwords) — identity-core helper.
func (s *Server) identityAdminRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
	admin("GET /admin/identity", s.identityPage)
	admin("POST /admin/identity/local", s.localPasswordsForm)
	admin("GET /admin/identity/providers/{id}/provisioning", s.provisioningPage)
	admin("POST /admin/identity/providers/{id}/provisioning", s.provisioningForm)
	admin("POST /admin/identity/providers/{id}/delete", s.deleteProviderForm)
}

// providerKindLabel names a provider kind for people.
func providerKindLabel(kind string) string {
	switch kind {
	case store.KindOIDC:
		return "OpenID Connect"
	case store.KindSAML:
		return "SAML"
	case store.KindLDAP:
		return "LDAP"
	}
	return kind
}

// claimLabel names what a mapping of this kind of provider matches.
func claimLabel(kind string) string {
	switch kind {
	case store.KindSAML:
		return "Group attribute value"
	case store.KindLDAP:
		return "LDAP group (DN or name)"
	}
	return "Group claim value"
}

func (s *Server) identityPage(w http.ResponseWriter, r *http.Request) {
	s.renderIdentity(w, r, http.StatusOK, nil, nil)
}

// renderIdentity renders the overview; lp overrides the saved local
// password settings (to show a refused form as it was sent).
func (s *Server) renderIdentity(w http.ResponseWriter, r *http.Request, status int, lp *store.LocalPasswords, errs ui.Errors) {
	ctx := r.Context()
	ps, err := s.Store.ListIdentityProviders(ctx, "")
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	counts, err := s.Store.CountUsersBySource(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if lp == nil {
		saved, err := s.Store.LocalPasswordSettings(ctx)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		lp = &saved
	}
	users, err := s.Store.ListUsers(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.IdentityView{LocalEnabled: lp.Enabled, LocalErrors: errs}
	for _, p := range ps {
		v.Providers = append(v.Providers, ui.IdentityProviderRow{ID: p.ID, Kind: p.Kind, KindLabel: providerKindLabel(p.Kind), Name: p.Name,
			DisplayName: p.DisplayName, Enabled: p.Enabled, Users: counts[p.Source()]})
	}
	for _, u := range users {
		if u.Role != store.RoleAdmin || u.Source != store.SourceLocal || u.Disabled {
			continue
		}
		label := u.Name
		if u.DisplayName != "" && u.DisplayName != u.Name {
			label += " (" + u.DisplayName + ")"
		}
		v.BreakGlass = append(v.BreakGlass, ui.Option{Value: u.Name, Label: label, Selected: strings.EqualFold(u.Name, lp.BreakGlassUser)})
	}
	s.render(w, r, status, ui.Identity(s.page(r, "Sign-in & MFA", "identity"), v))
}

func (s *Server) localPasswordsForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	lp := store.LocalPasswords{Enabled: r.PostForm.Get("enabled") == "on", BreakGlassUser: strings.TrimSpace(r.PostForm.Get("break_glass"))}
	if err := s.Store.SetLocalPasswordSettings(r.Context(), lp); err != nil {
		var bg *store.BreakGlassError
		if errors.As(err, &bg) {
			s.renderIdentity(w, r, http.StatusUnprocessableEntity, &lp, ui.Errors{"break_glass": bg.Msg})
			return
		}
		s.serverError(w, r, err)
		return
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSettingsLocalPasswords, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"enabled": strconv.FormatBool(lp.Enabled), "break_glass": lp.BreakGlassUser}})
	msg := "Local passwords are on."
	if !lp.Enabled {
		msg = fmt.Sprintf("Local passwords are off: only %s signs in with a password kept by Keyway.", quote(lp.BreakGlassUser))
	}
	s.done(w, r, msg, "/admin/identity")
}

// providerFromPath loads the provider named by the {id} path value; kind,
// unless "", is the kind it must be (one of another kind is not found).
func (s *Server) providerFromPath(r *http.Request, kind string) (store.IdentityProvider, error) {
	id, err := pathID(r)
	if err != nil {
		return store.IdentityProvider{}, err
	}
	p, err := s.Store.IdentityProviderByID(r.Context(), id)
	if err == nil && kind != "" && p.Kind != kind {
		return store.IdentityProvider{}, store.ErrNotFound
	}
	return p, err
}

// providerOr404 is providerFromPath for a page: when there is no such
// provider it answers the request (404, or 500 on a store failure) and
// returns false.
func (s *Server) providerOr404(w http.ResponseWriter, r *http.Request, kind string) (store.IdentityProvider, bool) {
	p, err := s.providerFromPath(r, kind)
	if err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return store.IdentityProvider{}, false
	}
	return p, true
}

// providerSaved ends a kind's add or edit form once p is stored: it audits
// idp.create (created) or idp.update with details, and sends the admin on
// with msg: after an add to the provisioning page (who may sign in), after
// an edit back to the kind's page.
func (s *Server) providerSaved(w http.ResponseWriter, r *http.Request, p store.IdentityProvider, created bool, details map[string]string, msg string) {
	actor, _ := currentUser(r)
	action, to := audit.ActionIdPUpdate, fmt.Sprintf("/admin/identity/%s/%d", p.Kind, p.ID)
	if created {
		action, to = audit.ActionIdPCreate, fmt.Sprintf("/admin/identity/providers/%d/provisioning", p.ID)
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: action, Target: p.Source(), Outcome: audit.OutcomeSuccess, Details: details})
	s.done(w, r, msg, to)
}

func (s *Server) provisioningView(ctx context.Context, p store.IdentityProvider) (ui.ProvisioningView, error) {
	v := ui.ProvisioningView{ID: p.ID, Kind: p.Kind, KindLabel: providerKindLabel(p.Kind), Name: p.Name, DisplayName: p.DisplayName,
		JITCreate: p.JITCreate, JITRole: string(p.JITRole), ClaimLabel: claimLabel(p.Kind)}
	groups, err := s.Store.ListGroups(ctx)
	if err != nil {
		return v, err
	}
	for _, g := range groups {
		v.Groups = append(v.Groups, g.Name)
	}
	counts, err := s.Store.CountUsersBySource(ctx)
	if err != nil {
		return v, err
	}
	v.Users = counts[p.Source()]
	for _, m := range p.Mappings {
		v.Mappings = append(v.Mappings, ui.MappingRow{ClaimValue: m.ClaimValue, Group: m.Group})
	}
	return v, nil
}

// addBlankRows offers n empty mapping rows, within the form's bound.
func addBlankRows(v *ui.ProvisioningView, n int) {
	for range n {
		if len(v.Mappings) >= maxMappingRows {
			return
		}
		v.Mappings = append(v.Mappings, ui.MappingRow{})
	}
}

func (s *Server) provisioningPage(w http.ResponseWriter, r *http.Request) {
	p, err := s.providerFromPath(r, "")
	if err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	v, err := s.provisioningView(r.Context(), p)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	addBlankRows(&v, blankMappingRows)
	s.render(w, r, http.StatusOK, ui.Provisioning(s.page(r, "Provisioning: "+p.DisplayName, "identity"), v))
}

// mappingsFromForm reads the mapping rows: each row's claim value and
// group, skipping rows ticked for removal and blank rows. errs says which
// rows are half filled or name an unknown group.
func mappingsFromForm(r *http.Request, groups []string) (rows []ui.MappingRow, keep []store.GroupMapping, errs ui.Errors) {
	errs = ui.Errors{}
	n, err := strconv.Atoi(r.PostForm.Get("rows"))
	if err != nil || n < 0 {
		n = 0
	}
	n = min(n, maxMappingRows)
	seen := map[store.GroupMapping]bool{}
	for i := range n {
		row := ui.MappingRow{
			ClaimValue: strings.TrimSpace(r.PostForm.Get(fmt.Sprintf("m%d_claim", i))),
			Group:      r.PostForm.Get(fmt.Sprintf("m%d_group", i)),
			Remove:     r.PostForm.Get(fmt.Sprintf("m%d_remove", i)) == "on",
		}
		rows = append(rows, row)
		key := fmt.Sprintf("m%d", i)
		switch {
		case row.Remove || row.ClaimValue == "" && row.Group == "":
			continue
		case row.ClaimValue == "":
			errs[key] = fmt.Sprintf("Row %d: enter the provider's value, or tick Remove.", i+1)
		case len(row.ClaimValue) > 1024:
			errs[key] = fmt.Sprintf("Row %d: the value may have at most 1024 characters.", i+1)
		case row.Group == "":
			errs[key] = fmt.Sprintf("Row %d: choose the Keyway group for %s.", i+1, quote(row.ClaimValue))
		case !slices.Contains(groups, row.Group):
			errs[key] = fmt.Sprintf("Row %d: there is no group named %s any more.", i+1, quote(row.Group))
		default:
			m := store.GroupMapping{ClaimValue: row.ClaimValue, Group: row.Group}
			if !seen[m] {
				seen[m] = true
				keep = append(keep, m)
			}
		}
	}
	return rows, keep, errs
}

func (s *Server) provisioningForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	p, err := s.providerFromPath(r, "")
	if err == nil {
		err = r.ParseForm()
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	ctx := r.Context()
	v, err := s.provisioningView(ctx, p)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v.JITCreate = r.PostForm.Get("jit_create") == "on"
	v.JITRole = r.PostForm.Get("jit_role")
	rows, mappings, errs := mappingsFromForm(r, v.Groups)
	if len(v.Groups) > 0 {
		v.Mappings = rows
	}
	role, err := store.ParseRole(v.JITRole)
	if err != nil {
		errs["jit_role"] = "Choose user, auditor or admin."
	}
	if len(mappings) > 500 {
		errs["mappings"] = "A provider may have at most 500 group mappings."
	}
	page := s.page(r, "Provisioning: "+p.DisplayName, "identity")
	if r.PostForm.Get("action") == "more" {
		// Not saved: the same form with more empty rows.
		addBlankRows(&v, 5)
		s.render(w, r, http.StatusOK, ui.Provisioning(page, v))
		return
	}
	if len(errs) > 0 {
		v.Errors = errs
		s.render(w, r, http.StatusUnprocessableEntity, ui.Provisioning(page, v))
		return
	}
	p.JITCreate, p.JITRole = v.JITCreate, role
	if err := s.Store.UpdateIdentityProvider(ctx, p); err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	if err := s.Store.SetGroupMappings(ctx, p.ID, mappings); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// A group was deleted since the form was read.
			v.Errors = ui.Errors{"mappings": capitalize(err.Error()) + ": choose another group."}
			s.render(w, r, http.StatusUnprocessableEntity, ui.Provisioning(page, v))
			return
		}
		s.serverError(w, r, err)
		return
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionIdPProvisioning, Target: p.Source(), Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"jit_create": strconv.FormatBool(p.JITCreate), "jit_role": string(p.JITRole), "mappings": mappingsText(mappings)}})
	s.done(w, r, fmt.Sprintf("Provisioning of %s was saved.", quote(p.DisplayName)), fmt.Sprintf("/admin/identity/providers/%d/provisioning", p.ID))
}

// mappingsText is the mappings as the audit log keeps them.
func mappingsText(ms []store.GroupMapping) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.ClaimValue + "=>" + m.Group
	}
	return strings.Join(parts, "; ")
}

func (s *Server) deleteProviderForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	p, err := s.providerFromPath(r, "")
	if err == nil {
		err = s.Store.DeleteIdentityProvider(r.Context(), p.ID)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/identity")
		return
	}
	counts, err := s.Store.CountUsersBySource(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	n := counts[p.Source()]
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionIdPDelete, Target: p.Source(), Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"kind": p.Kind, "users": strconv.Itoa(n)}})
	msg := fmt.Sprintf("Provider %s was deleted.", quote(p.DisplayName))
	if n > 0 {
		msg += fmt.Sprintf(" Its %d users stay and cannot sign in until you change how they sign in (Users page).", n)
	}
	s.done(w, r, msg, "/admin/identity")
}

// sourceLabels names each users.source for people: "Local password", a
// provider's display name, or a note that its provider is gone or off.
type sourceLabels map[string]string

func (s *Server) sourceLabels(ctx context.Context) (sourceLabels, []store.IdentityProvider, error) {
	ps, err := s.Store.ListIdentityProviders(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	l := sourceLabels{store.SourceLocal: "Local password"}
	for _, p := range ps {
		label := p.DisplayName + " (" + providerKindLabel(p.Kind) + ")"
		if !p.Enabled {
			label += ", provider disabled"
		}
		l[p.Source()] = label
	}
	return l, ps, nil
}

// label names src; unknown reports a source whose provider is gone, whose
// users cannot sign in.
func (l sourceLabels) label(src string) (label string, unknown bool) {
	if v, ok := l[src]; ok {
		return v, false
	}
	return src + " (provider deleted: cannot sign in)", true
}

// validSource checks a user form's "Signs in with": local or an existing
// provider's source ("" means local).
func validSource(src string, ps []store.IdentityProvider) bool {
	if src == "" || src == store.SourceLocal {
		return true
	}
	return slices.ContainsFunc(ps, func(p store.IdentityProvider) bool { return p.Source() == src })
}

// factorLabel names an MFA factor kind for people.
func factorLabel(kind string) string {
	switch kind {
	case store.FactorTOTP:
		return "authenticator app"
	case store.FactorWebAuthn:
		return "passkey or security key"
	}
	return kind
}

// localPasswordsOffHint is added to a refused password sign-in while local
// passwords are off: it describes the portal's setting, not the account.
func (s *Server) localPasswordsOffHint(ctx context.Context) string {
	lp, err := s.Store.LocalPasswordSettings(ctx)
	if err != nil || lp.Enabled {
		return ""
	}
	return " Passwords kept by Keyway are turned off here: sign in with your organisation's account."
}

// sourceOptions are the user form's "Signs in with" choices; current is
// kept as a choice even when its provider is gone.
func (s *Server) sourceOptions(ctx context.Context, current string) ([]ui.Option, error) {
	if current == "" {
		current = store.SourceLocal
	}
	labels, ps, err := s.sourceLabels(ctx)
	if err != nil {
		return nil, err
	}
	opts := []ui.Option{{Value: store.SourceLocal, Label: labels[store.SourceLocal], Selected: current == store.SourceLocal}}
	found := current == store.SourceLocal
	for _, p := range ps {
		src := p.Source()
		found = found || src == current
		opts = append(opts, ui.Option{Value: src, Label: labels[src], Selected: src == current})
	}
	if !found {
		label, _ := labels.label(current)
		opts = append(opts, ui.Option{Value: current, Label: label, Selected: true})
	}
	return opts, nil
}

// checkUserSource checks a user's "Signs in with": local or an existing
// provider ("" leaves it unchanged).
func (s *Server) checkUserSource(ctx context.Context, fe fieldErrors, in *userInput) error {
	if in.Source == "" || in.Source == store.SourceLocal {
		return nil
	}
	ps, err := s.Store.ListIdentityProviders(ctx, "")
	if err != nil {
		return err
	}
	if !validSource(in.Source, ps) {
		fe["source"] = fmt.Sprintf("There is no identity provider %s: choose one from the list.", quote(in.Source))
	}
	return nil
}

// checkBreakGlassKept refuses, while local passwords are off, a change
// that would leave nobody able to sign in with a password: deleting (role
// "") the break-glass admin, or making them a non-admin, disabled or a
// provider's user.
func (s *Server) checkBreakGlassKept(ctx context.Context, fe fieldErrors, old store.User, role store.Role, in userInput) error {
	lp, err := s.Store.LocalPasswordSettings(ctx)
	if err != nil {
		return err
	}
	if lp.Enabled || !strings.EqualFold(lp.BreakGlassUser, old.Name) {
		return nil
	}
	const why = " is the break-glass admin while local passwords are off: choose another one on the Sign-in & MFA page first."
	switch {
	case role == "":
		fe["user"] = quote(old.Name) + why
	case role != store.RoleAdmin:
		fe["role"] = quote(old.Name) + why
	case in.Disabled:
		fe["disabled"] = quote(old.Name) + why
	case in.Source != store.SourceLocal:
		fe["source"] = quote(old.Name) + why
	case !strings.EqualFold(in.Name, old.Name):
		fe["name"] = quote(old.Name) + why
	}
	return nil
}
