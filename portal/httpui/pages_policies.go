package httpui

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// The Policies pages: a list, and a form to create, edit or delete one.

func (s *Server) policiesPage(w http.ResponseWriter, r *http.Request) {
	ps, err := s.Store.ListPolicies(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.PoliciesView{}
	for _, p := range ps {
		row := ui.PolicyRow{ID: p.ID, Name: p.Name, Description: p.Description, AppliesTo: appliesTo(p), TimeZone: p.TimeZone,
			MaxSessions: p.MaxSessionsPerUser, StepUpMinutes: p.StepUpMinutes, Enabled: p.Enabled}
		for _, n := range p.Networks {
			row.Networks = append(row.Networks, n.String())
		}
		for _, w := range p.Windows {
			row.Windows = append(row.Windows, policy.FormatWindow(w))
		}
		if p.MaxSession > 0 {
			row.MaxSession = fmt.Sprintf("%d min", int(p.MaxSession/time.Minute))
		}
		row.Allows = allowNames(p.Allow)
		row.Denies = allowNames(store.PolicyAllow{Terminal: !p.Allow.Terminal, Upload: !p.Allow.Upload, Download: !p.Allow.Download,
			ClipboardIn: !p.Allow.ClipboardIn, ClipboardOut: !p.Allow.ClipboardOut})
		v.Policies = append(v.Policies, row)
	}
	s.render(w, r, http.StatusOK, ui.Policies(s.page(r, "Policies", "policies"), v))
}

// appliesTo says whom a policy applies to, for the list.
func appliesTo(p store.Policy) string {
	switch p.ScopeKind {
	case store.ScopeGroup:
		return "Members of group " + quote(p.ScopeName)
	case store.ScopeResource:
		return "Connections to " + quote(p.ScopeName)
	}
	return "Everyone"
}

// policyForm renders the form with the resources and groups to choose
// from.
func (s *Server) policyForm(w http.ResponseWriter, r *http.Request, status int, v ui.PolicyFormView) {
	ctx := r.Context()
	rs, err := s.Store.ListResources(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	gs, err := s.Store.ListGroups(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, g := range gs {
		val := fmt.Sprintf("group:%d", g.ID)
		v.Groups = append(v.Groups, ui.Option{Value: val, Label: "Group " + g.Name, Selected: val == v.Scope})
	}
	for _, res := range rs {
		val := fmt.Sprintf("resource:%d", res.ID)
		v.Resources = append(v.Resources, ui.Option{Value: val, Label: "Resource " + res.Name, Selected: val == v.Scope})
	}
	title := "New policy"
	if !v.IsNew {
		title = "Edit " + v.Name
	}
	s.render(w, r, status, ui.PolicyForm(s.page(r, title, "policies"), v))
}

// policyFormView fills the form from an input (a policy read back, or
// what was posted).
func policyFormView(in policyInput, windowsText, networksText string) ui.PolicyFormView {
	v := ui.PolicyFormView{Name: in.Name, Description: in.Description, Scope: in.ScopeKind, Networks: networksText, Windows: windowsText,
		TimeZone: in.TimeZone, AllowTerminal: in.Allow.Terminal, AllowUpload: in.Allow.Upload, AllowDownload: in.Allow.Download,
		AllowClipboardIn: in.Allow.ClipboardIn, AllowClipboardOut: in.Allow.ClipboardOut, Enabled: in.Enabled}
	if in.ScopeKind != store.ScopeEveryone {
		v.Scope = fmt.Sprintf("%s:%d", in.ScopeKind, in.ScopeID)
	}
	if in.MaxSessionMinutes != 0 {
		v.MaxSession = strconv.Itoa(in.MaxSessionMinutes)
	}
	if in.MaxSessionsPerUser != 0 {
		v.MaxSessions = strconv.Itoa(in.MaxSessionsPerUser)
	}
	if in.StepUpMinutes != 0 {
		v.StepUp = strconv.Itoa(in.StepUpMinutes)
	}
	return v
}

// storedFormView fills the form from a stored policy.
func storedFormView(p store.Policy) ui.PolicyFormView {
	wins := make([]string, 0, len(p.Windows))
	for _, w := range p.Windows {
		wins = append(wins, policy.FormatWindow(w))
	}
	in := policyInputOf(p)
	v := policyFormView(in, strings.Join(wins, "\n"), strings.Join(in.Networks, "\n"))
	v.ID = p.ID
	return v
}

// policyFromForm reads the posted form. Numbers that do not parse become
// -1, which validation reports.
func policyFromForm(r *http.Request) (policyInput, ui.PolicyFormView) {
	f := r.PostForm
	number := func(field string) int {
		v := strings.TrimSpace(f.Get(field))
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return -1
		}
		return n
	}
	windows := f.Get("windows")
	in := policyInput{Name: f.Get("name"), Description: f.Get("description"), Networks: []string{f.Get("networks")},
		windowsText: &windows, TimeZone: f.Get("time_zone"), MaxSessionMinutes: number("max_session_minutes"),
		MaxSessionsPerUser: number("max_sessions_per_user"), StepUpMinutes: number("step_up_minutes"), Enabled: f.Get("enabled") == "on",
		Allow: allowInput{Terminal: f.Get("allow_terminal") == "on", Upload: f.Get("allow_upload") == "on",
			Download: f.Get("allow_download") == "on", ClipboardIn: f.Get("allow_clipboard_in") == "on",
			ClipboardOut: f.Get("allow_clipboard_out") == "on"}}
	scope := f.Get("scope")
	kind, id, _ := strings.Cut(scope, ":")
	in.ScopeKind = kind
	in.ScopeID, _ = strconv.ParseInt(id, 10, 64)
	v := policyFormView(in, windows, f.Get("networks"))
	v.Scope = scope
	// What was typed goes back as typed, even when it is not a number.
	v.MaxSession, v.MaxSessions = strings.TrimSpace(f.Get("max_session_minutes")), strings.TrimSpace(f.Get("max_sessions_per_user"))
	v.StepUp = strings.TrimSpace(f.Get("step_up_minutes"))
	return in, v
}

func (s *Server) newPolicyPage(w http.ResponseWriter, r *http.Request) {
	v := policyFormView(newPolicyInput(), "", "")
	v.IsNew = true
	s.policyForm(w, r, http.StatusOK, v)
}

func (s *Server) createPolicyForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	in, v := policyFromForm(r)
	p, err := s.createPolicy(r, actor, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		v.IsNew, v.Errors = true, errs
		s.policyForm(w, r, http.StatusUnprocessableEntity, v)
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("Policy %s was created; it applies to new connections and running sessions.", quote(p.Name)), "/admin/policies")
}

func (s *Server) editPolicyPage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	var p store.Policy
	if err == nil {
		p, err = s.Store.PolicyByID(r.Context(), id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/policies")
		return
	}
	s.policyForm(w, r, http.StatusOK, storedFormView(p))
}

func (s *Server) updatePolicyForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/policies")
		return
	}
	in, v := policyFromForm(r)
	p, err := s.updatePolicy(r, actor, id, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		v.ID, v.Errors = id, errs
		s.policyForm(w, r, http.StatusUnprocessableEntity, v)
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("Policy %s was saved; it applies to new connections and running sessions.", quote(p.Name)), "/admin/policies")
}

func (s *Server) deletePolicyForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var p store.Policy
	if err == nil {
		p, err = s.deletePolicy(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/policies")
		return
	}
	s.done(w, r, fmt.Sprintf("Policy %s was deleted.", quote(p.Name)), "/admin/policies")
}
