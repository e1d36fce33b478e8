package httpui

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// formFailed re-renders a form with its field errors, or handles any other
// error; it reports whether err was handled.
func (s *Server) formFailed(w http.ResponseWriter, r *http.Request, err error, rerender func(ui.Errors)) bool {
	if err == nil {
		return false
	}
	if errs := asFieldErrors(err); errs != nil {
		rerender(errs)
		return true
	}
	s.actionError(w, r, err, r.URL.Path)
	return true
}

func (s *Server) done(w http.ResponseWriter, r *http.Request, msg, to string) {
	s.setFlash(r, "success", msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// --- users

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request) {
	us, err := s.Store.ListUsers(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	labels, _, err := s.sourceLabels(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	factors, err := s.Store.MFAFactorKinds(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.UsersView{}
	for _, u := range us {
		row := ui.UserRow{ID: u.ID, Name: u.Name, DisplayName: u.DisplayName, Role: string(u.Role),
			Groups: u.Groups, Disabled: u.Disabled, CreatedAt: u.CreatedAt}
		row.Source, row.NoSignIn = labels.label(u.Source)
		for _, k := range factors[u.ID] {
			row.MFA = append(row.MFA, factorLabel(k))
		}
		v.Users = append(v.Users, row)
	}
	s.render(w, r, http.StatusOK, ui.Users(s.page(r, "Users", "users"), v))
}

func (s *Server) userForm(w http.ResponseWriter, r *http.Request, status int, v ui.UserFormView, selected []string, source string) {
	groups, err := s.Store.ListGroups(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, g := range groups {
		v.Groups = append(v.Groups, ui.Option{Value: g.Name, Label: g.Name, Selected: slices.Contains(selected, g.Name)})
	}
	if v.Sources, err = s.sourceOptions(r.Context(), source); err != nil {
		s.serverError(w, r, err)
		return
	}
	title := "New user"
	if !v.IsNew {
		title = "Edit " + v.Name
		l, err := s.Store.SignInLock(r.Context(), v.ID)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		v.Lock = ui.SignInLockView{Failures: l.Failures, LastFailure: l.LastFailure, LastAddr: l.LastAddr,
			Locked: l.Locked(s.Now()), LockedUntil: l.LockedUntil}
		if v.Devices, err = s.deviceRows(r.Context(), v.ID, true); err != nil {
			s.serverError(w, r, err)
			return
		}
		if v.MFA, err = s.userMFAView(r, v.ID); err != nil { // mfa.go
			s.serverError(w, r, err)
			return
		}
	}
	s.render(w, r, status, ui.UserForm(s.page(r, title, "users"), v))
}

func (s *Server) newUserPage(w http.ResponseWriter, r *http.Request) {
	s.userForm(w, r, http.StatusOK, ui.UserFormView{IsNew: true, Role: "user"}, nil, store.SourceLocal)
}

func userFromForm(r *http.Request) userInput {
	return userInput{
		Name: r.PostForm.Get("name"), DisplayName: r.PostForm.Get("display_name"), Role: r.PostForm.Get("role"),
		Groups: r.PostForm["groups"], Password: r.PostForm.Get("password"), Disabled: r.PostForm.Get("disabled") == "on",
		Source: r.PostForm.Get("source"),
	}
}

func (s *Server) createUserForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	in := userFromForm(r)
	u, err := s.createUser(r, actor, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		s.userForm(w, r, http.StatusUnprocessableEntity, ui.UserFormView{IsNew: true, Name: in.Name, DisplayName: in.DisplayName,
			Role: in.Role, Disabled: in.Disabled, Errors: errs}, in.Groups, in.Source)
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("User %s was created.", quote(u.Name)), "/admin/users")
}

func (s *Server) editUserPage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	var u store.User
	if err == nil {
		u, err = s.Store.UserByID(r.Context(), id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/users")
		return
	}
	s.userForm(w, r, http.StatusOK, ui.UserFormView{ID: u.ID, Name: u.Name, DisplayName: u.DisplayName, Role: string(u.Role), Disabled: u.Disabled}, u.Groups, u.Source)
}

func (s *Server) updateUserForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/users")
		return
	}
	in := userFromForm(r)
	u, err := s.updateUser(r, actor, id, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		s.userForm(w, r, http.StatusUnprocessableEntity, ui.UserFormView{ID: id, Name: in.Name, DisplayName: in.DisplayName,
			Role: in.Role, Disabled: in.Disabled, Errors: errs}, in.Groups, in.Source)
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("User %s was saved.", quote(u.Name)), "/admin/users")
}

func (s *Server) deleteUserForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var u store.User
	if err == nil {
		u, err = s.Store.UserByID(r.Context(), id)
	}
	if err == nil {
		err = s.deleteUser(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, fmt.Sprintf("/admin/users/%d", id))
		return
	}
	s.done(w, r, fmt.Sprintf("User %s was deleted.", quote(u.Name)), "/admin/users")
}

// unlockUserForm lifts an account's sign-in lock and forgets its failed
// sign-ins.
func (s *Server) unlockUserForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var u store.User
	if err == nil {
		u, err = s.unlockUser(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/users")
		return
	}
	s.done(w, r, fmt.Sprintf("Sign-in of %q was unlocked.", u.Name), fmt.Sprintf("/admin/users/%d", id))
}

// --- groups

func (s *Server) renderGroups(w http.ResponseWriter, r *http.Request, status int, v ui.GroupsView) {
	gs, err := s.Store.ListGroups(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, g := range gs {
		v.Groups = append(v.Groups, ui.GroupRow{ID: g.ID, Name: g.Name, Description: g.Description, Members: g.Members})
	}
	s.render(w, r, status, ui.Groups(s.page(r, "Groups", "groups"), v))
}

func (s *Server) groupsPage(w http.ResponseWriter, r *http.Request) {
	s.renderGroups(w, r, http.StatusOK, ui.GroupsView{})
}

func (s *Server) createGroupForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	in := groupInput{Name: r.PostForm.Get("name"), Description: r.PostForm.Get("description")}
	g, err := s.createGroup(r, actor, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		s.renderGroups(w, r, http.StatusUnprocessableEntity, ui.GroupsView{Name: in.Name, Description: in.Description, Errors: errs})
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("Group %s was created.", quote(g.Name)), "/admin/groups")
}

func (s *Server) deleteGroupForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var g store.Group
	if err == nil {
		g, err = s.Store.GroupByID(r.Context(), id)
	}
	if err == nil {
		err = s.deleteGroup(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/groups")
		return
	}
	s.done(w, r, fmt.Sprintf("Group %s was deleted.", quote(g.Name)), "/admin/groups")
}

// --- resources

func (s *Server) resourcesPage(w http.ResponseWriter, r *http.Request) {
	rs, err := s.Store.ListResources(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.ResourcesView{}
	for _, res := range rs {
		v.Resources = append(v.Resources, ui.ResourceRow{ID: res.ID, Name: res.Name, Protocol: res.Protocol, Address: resourceAddress(res),
			Login: res.Login, Tags: res.Tags, HostKeyFingerprint: fingerprint(res.HostKey),
			CertIgnored: res.Protocol == "rdp" && res.Options.IgnoreCert})
	}
	s.render(w, r, http.StatusOK, ui.Resources(s.page(r, "Resources", "resources"), v))
}

func (s *Server) newResourcePage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, ui.ResourceForm(s.page(r, "New resource", "resources"), ui.ResourceFormView{IsNew: true, Protocol: "ssh", Port: "22"}))
}

func resourceFromForm(r *http.Request) (resourceInput, string) {
	portText := strings.TrimSpace(r.PostForm.Get("port"))
	port, err := strconv.Atoi(portText)
	if err != nil {
		port = -1 // reported by validate
	}
	depth, err := strconv.Atoi(r.PostForm.Get("color_depth"))
	if err != nil && r.PostForm.Get("color_depth") != "" {
		depth = -1 // reported by validate
	}
	// The form takes megabytes; blank is no limit.
	var maxUpload int64
	if mb := strings.TrimSpace(r.PostForm.Get("max_upload")); mb != "" {
		n, err := strconv.ParseFloat(mb, 64)
		maxUpload = int64(n * (1 << 20))
		if err != nil || n <= 0 || n > 1<<33 {
			maxUpload = -1 // reported by validate
		}
	}
	// Session limits in whole minutes; blank is none.
	minutes := func(field string) int {
		v := strings.TrimSpace(r.PostForm.Get(field))
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 {
			return -1 // reported by validate
		}
		return n
	}
	in := resourceInput{
		IdleTimeoutMinutes: minutes("idle_timeout"), MaxSessionMinutes: minutes("max_session"), StepUpMinutes: minutes("step_up"),
		MaxUploadBytes: maxUpload, NoUpload: r.PostForm.Get("no_upload") == "on", NoDownload: r.PostForm.Get("no_download") == "on",
		AllowDotfileChanges: r.PostForm.Get("allow_dotfile_changes") == "on",
		Name:                r.PostForm.Get("name"), Description: r.PostForm.Get("description"), Protocol: r.PostForm.Get("protocol"),
		Host: r.PostForm.Get("host"), Port: port, Login: r.PostForm.Get("login"), Password: r.PostForm.Get("password"),
		PrivateKey: r.PostForm.Get("private_key"), ClearPassword: r.PostForm.Get("clear_password") == "on",
		ClearPrivateKey: r.PostForm.Get("clear_private_key") == "on", Tags: splitTags(r.PostForm.Get("tags")),
		ViewOnly: r.PostForm.Get("view_only") == "on", Clipboard: r.PostForm.Get("clipboard"), ColorDepth: depth,
		Recording: r.PostForm.Get("recording"), RecordInput: r.PostForm.Get("record_input") == "on",
		Domain: r.PostForm.Get("domain"), Security: r.PostForm.Get("security"), IgnoreCert: r.PostForm.Get("certificate") == "ignore",
		KeyboardLayout: r.PostForm.Get("keyboard_layout"),
		Tunnel:         r.PostForm.Get("tunnel") == "on", Networks: r.PostForm.Get("networks"),
	}
	// The resolution is "fit" or WIDTHxHEIGHT.
	if res := r.PostForm.Get("resolution"); res != "" && res != "fit" {
		w, h, ok := strings.Cut(res, "x")
		in.Width, _ = strconv.Atoi(w)
		in.Height, _ = strconv.Atoi(h)
		if !ok || in.Width == 0 || in.Height == 0 {
			in.Width, in.Height = -1, -1 // reported by validate
		}
	}
	return in, portText
}

// desktopFormView fills a resource form's session options (recording and
// desktop).
func desktopFormView(v *ui.ResourceFormView, o store.Options) {
	v.ViewOnly, v.Clipboard, v.ColorDepth = o.ViewOnly, o.Clipboard, o.ColorDepth
	v.Recording, v.RecordInput = o.RecordingMode(), o.RecordInput
	v.NoUpload, v.NoDownload, v.DotfileChanges = o.NoUpload, o.NoDownload, o.AllowDotfileChanges
	if o.IdleTimeoutSeconds > 0 {
		v.IdleTimeout = strconv.Itoa(o.IdleTimeoutSeconds / 60)
	}
	if o.MaxSessionSeconds > 0 {
		v.MaxSession = strconv.Itoa(o.MaxSessionSeconds / 60)
	}
	if o.StepUpMinutes > 0 {
		v.StepUp = strconv.Itoa(o.StepUpMinutes)
	}
	if o.MaxUploadBytes > 0 {
		v.MaxUpload = strconv.FormatFloat(float64(o.MaxUploadBytes)/(1<<20), 'f', -1, 64)
	}
	v.Domain, v.Security, v.IgnoreCert, v.KeyboardLayout = o.Domain, o.Security, o.IgnoreCert, o.KeyboardLayout
	v.Tunnel, v.Networks = o.Tunnel, o.Networks
	v.Resolution = "fit"
	if o.Width > 0 && o.Height > 0 {
		v.Resolution = fmt.Sprintf("%dx%d", o.Width, o.Height)
	}
}

// resourceFormView fills the form from a resource and its host key state.
func (s *Server) resourceFormView(r *http.Request, res store.Resource) (ui.ResourceFormView, error) {
	v := ui.ResourceFormView{ID: res.ID, Name: res.Name, Description: res.Description, Protocol: res.Protocol, Host: res.Host,
		Port: strconv.Itoa(res.Port), Login: res.Login, Tags: strings.Join(res.Tags, ", "), HasPassword: res.HasPassword,
		HasPrivateKey: res.HasPrivateKey, HostKeyFingerprint: fingerprint(res.HostKey), HostKeyPinnedAt: res.HostKeyPinnedAt}
	desktopFormView(&v, res.Options)
	offered, err := s.Store.GetSetting(r.Context(), sessions.OfferedKeySetting(res.ID))
	if err != nil {
		return v, err
	}
	v.OfferedFingerprint = fingerprint(offered)
	grants, err := s.Store.GrantsForResource(r.Context(), res.ID)
	if err != nil {
		return v, err
	}
	for _, g := range grants {
		v.Grants = append(v.Grants, grantRow(g))
	}
	return v, nil
}

func (s *Server) createResourceForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	in, portText := resourceFromForm(r)
	res, err := s.createResource(r, actor, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		v := ui.ResourceFormView{IsNew: true, Name: in.Name, Description: in.Description, Protocol: in.Protocol, Host: in.Host,
			Port: portText, Login: in.Login, Tags: strings.Join(in.Tags, ", "), Errors: errs}
		desktopFormView(&v, in.options())
		s.render(w, r, http.StatusUnprocessableEntity, ui.ResourceForm(s.page(r, "New resource", "resources"), v))
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("Resource %s was created. Grant it to users or groups so they can connect.", quote(res.Name)), "/admin/resources")
}

func (s *Server) editResourcePage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	var res store.Resource
	if err == nil {
		res, err = s.Store.ResourceByID(r.Context(), id)
	}
	var v ui.ResourceFormView
	if err == nil {
		v, err = s.resourceFormView(r, res)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/resources")
		return
	}
	s.render(w, r, http.StatusOK, ui.ResourceForm(s.page(r, "Edit "+res.Name, "resources"), v))
}

func (s *Server) updateResourceForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/resources")
		return
	}
	in, portText := resourceFromForm(r)
	res, err := s.updateResource(r, actor, id, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		old, err := s.Store.ResourceByID(r.Context(), id)
		if err != nil {
			s.actionError(w, r, err, "/admin/resources")
			return
		}
		v, err := s.resourceFormView(r, old)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		v.Name, v.Description, v.Host, v.Port, v.Login, v.Tags, v.Errors = in.Name, in.Description, in.Host, portText, in.Login, strings.Join(in.Tags, ", "), errs
		v.Protocol = in.Protocol
		desktopFormView(&v, in.options())
		s.render(w, r, http.StatusUnprocessableEntity, ui.ResourceForm(s.page(r, "Edit "+old.Name, "resources"), v))
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("Resource %s was saved.", quote(res.Name)), "/admin/resources")
}

func (s *Server) deleteResourceForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var res store.Resource
	if err == nil {
		res, err = s.Store.ResourceByID(r.Context(), id)
	}
	if err == nil {
		err = s.deleteResource(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, fmt.Sprintf("/admin/resources/%d", id))
		return
	}
	s.done(w, r, fmt.Sprintf("Resource %s was deleted.", quote(res.Name)), "/admin/resources")
}

func (s *Server) hostKeyForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	back := fmt.Sprintf("/admin/resources/%d#host-key", id)
	if err == nil {
		err = s.hostKeyAction(r, actor, id, r.PostForm.Get("action"))
	}
	if err != nil {
		s.actionError(w, r, err, back)
		return
	}
	msg := "The new host key is pinned; connections trust it from now on."
	if r.PostForm.Get("action") == "forget" {
		msg = "The pinned host key was forgotten; the next connection pins the key the target presents."
	}
	s.done(w, r, msg, back)
}

// --- grants

func (s *Server) grantsPage(w http.ResponseWriter, r *http.Request) {
	s.renderGrants(w, r, http.StatusOK, nil, "", "", string(store.GrantTerminal))
}

func (s *Server) renderGrants(w http.ResponseWriter, r *http.Request, status int, errs ui.Errors, resourceID, subject, mode string) {
	ctx := r.Context()
	grants, err := s.Store.ListGrants(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	rs, err := s.Store.ListResources(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	us, err := s.Store.ListUsers(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	gs, err := s.Store.ListGroups(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	// The filters: ?resource=ID and ?subject=user:ID or group:ID. They
	// also preselect the new grant's fields.
	q := r.URL.Query()
	v := ui.GrantsView{Errors: errs, Mode: mode, FilterResource: q.Get("resource"), FilterSubject: q.Get("subject"), Total: len(grants)}
	if resourceID == "" && subject == "" {
		resourceID, subject = v.FilterResource, v.FilterSubject
	}
	v.Back = "/admin/grants"
	if r.URL.RawQuery != "" && r.Method == http.MethodGet {
		v.Back += "?" + r.URL.RawQuery
	}
	ssh := map[int64]bool{}
	for _, res := range rs {
		ssh[res.ID] = res.Protocol == "ssh"
		val := strconv.FormatInt(res.ID, 10)
		v.Resources = append(v.Resources, ui.Option{Value: val, Label: res.Name, Selected: val == resourceID})
		v.ResourceFilter = append(v.ResourceFilter, ui.Option{Value: val, Label: res.Name, Selected: val == v.FilterResource})
	}
	for _, g := range gs {
		val := fmt.Sprintf("group:%d", g.ID)
		v.Subjects = append(v.Subjects, ui.Option{Value: val, Label: "group: " + g.Name, Selected: val == subject})
		v.SubjectFilter = append(v.SubjectFilter, ui.Option{Value: val, Label: "group: " + g.Name, Selected: val == v.FilterSubject})
	}
	for _, u := range us {
		val := fmt.Sprintf("user:%d", u.ID)
		v.Subjects = append(v.Subjects, ui.Option{Value: val, Label: "user: " + u.Name, Selected: val == subject})
		v.SubjectFilter = append(v.SubjectFilter, ui.Option{Value: val, Label: "user: " + u.Name, Selected: val == v.FilterSubject})
	}
	for _, g := range grants {
		if v.FilterResource != "" && strconv.FormatInt(g.ResourceID, 10) != v.FilterResource {
			continue
		}
		if v.FilterSubject != "" && fmt.Sprintf("%s:%d", g.SubjectKind, g.SubjectID) != v.FilterSubject {
			continue
		}
		row := grantRow(g)
		row.FilesPossible = ssh[g.ResourceID]
		v.Grants = append(v.Grants, row)
	}
	s.render(w, r, status, ui.Grants(s.page(r, "Grants", "grants"), v))
}

// updateGrantForm changes what a grant allows (its mode).
func (s *Server) updateGrantForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	back := safeNext(r.PostForm.Get("back"))
	if !strings.HasPrefix(back, "/admin/grants") {
		back = "/admin/grants"
	}
	var g store.Grant
	if err == nil {
		g, err = s.updateGrant(r, actor, id, store.GrantMode(r.PostForm.Get("mode")))
	}
	if err != nil {
		s.actionError(w, r, err, back)
		return
	}
	s.done(w, r, fmt.Sprintf("The grant of %s to %s %s now allows %s.", quote(g.ResourceName), g.SubjectKind, quote(g.SubjectName), grantModeLabel(g.Mode)), back)
}

func (s *Server) createGrantForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	resourceID, subject, mode := r.PostForm.Get("resource_id"), r.PostForm.Get("subject"), r.PostForm.Get("mode")
	in := grantInput{Mode: store.GrantMode(mode)}
	in.ResourceID, _ = strconv.ParseInt(resourceID, 10, 64)
	kind, id, _ := strings.Cut(subject, ":")
	in.SubjectKind = kind
	in.SubjectID, _ = strconv.ParseInt(id, 10, 64)
	g, err := s.createGrant(r, actor, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		s.renderGrants(w, r, http.StatusUnprocessableEntity, errs, resourceID, subject, mode)
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("%s %s may now use %s: %s.", capitalize(g.SubjectKind), quote(g.SubjectName), quote(g.ResourceName), grantModeLabel(g.Mode)), "/admin/grants")
}

// grantModeLabel says in words what a grant mode allows.
func grantModeLabel(m store.GrantMode) string {
	switch m {
	case store.GrantFiles:
		return "files"
	case store.GrantBoth:
		return "terminal and files"
	}
	return "terminal or desktop"
}

func grantRow(g store.Grant) ui.GrantRow {
	return ui.GrantRow{ID: g.ID, ResourceName: g.ResourceName, SubjectKind: g.SubjectKind, SubjectName: g.SubjectName,
		Mode: grantModeLabel(g.Mode), ModeValue: string(g.Mode), CreatedAt: g.CreatedAt}
}

func (s *Server) deleteGrantForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var g store.Grant
	if err == nil {
		g, err = s.Store.GrantByID(r.Context(), id)
	}
	if err == nil {
		err = s.deleteGrant(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/grants")
		return
	}
	s.done(w, r, fmt.Sprintf("The grant of %s to %s %s was removed.", quote(g.ResourceName), g.SubjectKind, quote(g.SubjectName)), "/admin/grants")
}

// --- audit

// auditActions are offered in the audit filter.
var auditActions = []string{
	audit.ActionSignIn, audit.ActionSignOut, audit.ActionConnect, audit.ActionSessionEnd, audit.ActionAuthzDenied,
	"user.", "group.", "resource.", "grant.", "policy.", "token.", "file.", audit.ActionSetup,
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fv := ui.AuditFilterView{Actor: q.Get("actor"), Action: q.Get("action"), Outcome: q.Get("outcome"), Q: q.Get("q"),
		Since: q.Get("since"), Until: q.Get("until"), TZ: q.Get("tz")}
	v := ui.AuditView{Filter: fv, Actions: auditActions}
	f, err := auditFilter(r)
	if err != nil {
		v.Errors = asFieldErrors(err)
		if v.Errors == nil {
			s.serverError(w, r, err)
			return
		}
		s.render(w, r, http.StatusBadRequest, ui.Audit(s.page(r, "Audit log", "audit"), v))
		return
	}
	f.Limit = auditScreenSize
	evs, err := s.Audit.Search(r.Context(), f)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if q.Get("before") != "" {
		newest := r.URL.Query()
		newest.Del("before")
		v.NewestHref = "/audit?" + newest.Encode()
	}
	for _, e := range evs {
		v.Events = append(v.Events, ui.AuditRow{ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Target: e.Target,
			Outcome: e.Outcome, Reason: e.Reason, ClientAddr: e.ClientAddr, Details: formatDetails(e.Details)})
	}
	if len(evs) == f.Limit {
		older := r.URL.Query()
		older.Set("before", strconv.FormatInt(evs[len(evs)-1].ID, 10))
		v.OlderHref = "/audit?" + older.Encode()
	}
	export := r.URL.Query()
	export.Del("before")
	v.ExportHref = "/audit.csv?" + export.Encode()
	s.render(w, r, http.StatusOK, ui.Audit(s.page(r, "Audit log", "audit"), v))
}

// auditExportBatch is how many events the CSV export reads at a time.
const auditExportBatch = 1000

// auditCSV streams every event matching the audit page's filters as CSV,
// newest first. The export is itself an audit event.
func (s *Server) auditCSV(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	f, err := auditFilter(r)
	if err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The filters are not valid: "+err.Error())
		return
	}
	f.BeforeID, f.Limit = 0, auditExportBatch
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionAuditExport, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"filters": r.URL.RawQuery}})
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="keyway-audit-%s.csv"`, s.Now().UTC().Format("20060102-150405")))
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "time_utc", "actor", "action", "target", "outcome", "reason", "details", "client_address", "hash"})
	for {
		evs, err := s.Audit.Search(r.Context(), f)
		if err != nil {
			s.Logger.ErrorContext(r.Context(), "audit export", "err", err)
			return // the download ends short; the browser shows it failed
		}
		for _, e := range evs {
			cw.Write([]string{strconv.FormatInt(e.ID, 10), e.Time.UTC().Format(time.RFC3339Nano), csvCell(e.Actor), e.Action,
				csvCell(e.Target), e.Outcome, csvCell(e.Reason), csvCell(formatDetails(e.Details)), csvCell(e.ClientAddr), e.Hash})
		}
		cw.Flush()
		if cw.Error() != nil || len(evs) < f.Limit {
			return
		}
		f.BeforeID = evs[len(evs)-1].ID
	}
}

// csvCell keeps text that users chose (names typed at sign-in, reasons)
// from being read as a formula by a spreadsheet.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func formatDetails(d map[string]string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+d[k])
	}
	return strings.Join(parts, " ")
}
