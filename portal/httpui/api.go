package httpui

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// The JSON API under /api/v1 is authenticated by bearer tokens that users
// create on their account page. It covers what the admin forms do.

func (s *Server) apiRoutes() http.Handler {
	mux := http.NewServeMux()
	admin := func(p string, h apiHandler) { mux.Handle(p, s.apiAuth(h, store.RoleAdmin)) }

	// Native clients' sign-in: no token yet (see devices.go).
	mux.HandleFunc("POST /api/v1/client/login", s.clientLogin)
	mux.HandleFunc("POST /api/v1/client/token", s.clientToken)
	mux.HandleFunc("POST /api/v1/client/logout", s.clientLogout)
	mux.Handle("GET /api/v1/me", s.apiAuth(s.apiMe))
	// Native clients authenticate with a device credential or a token.
	mux.HandleFunc("GET /api/v1/client/status", s.apiClientStatus)
	mux.Handle("GET /api/v1/me/resources", s.apiAuth(s.apiMyResources))
	admin("GET /api/v1/users", s.apiListUsers)
	admin("POST /api/v1/users", s.apiCreateUser)
	admin("GET /api/v1/users/{id}", s.apiGetUser)
	admin("PUT /api/v1/users/{id}", s.apiUpdateUser)
	admin("DELETE /api/v1/users/{id}", s.apiDeleteUser)
	admin("GET /api/v1/users/{id}/signin-lock", s.apiSignInLock)
	admin("DELETE /api/v1/users/{id}/signin-lock", s.apiUnlockUser)
	admin("GET /api/v1/groups", s.apiListGroups)
	admin("POST /api/v1/groups", s.apiCreateGroup)
	admin("DELETE /api/v1/groups/{id}", s.apiDeleteGroup)
	admin("GET /api/v1/resources", s.apiListResources)
	admin("POST /api/v1/resources", s.apiCreateResource)
	admin("GET /api/v1/resources/{id}", s.apiGetResource)
	admin("PUT /api/v1/resources/{id}", s.apiUpdateResource)
	admin("DELETE /api/v1/resources/{id}", s.apiDeleteResource)
	admin("POST /api/v1/resources/{id}/hostkey", s.apiHostKey)
	admin("GET /api/v1/grants", s.apiListGrants)
	admin("POST /api/v1/grants", s.apiCreateGrant)
	admin("PUT /api/v1/grants/{id}", s.apiUpdateGrant)
	admin("DELETE /api/v1/grants/{id}", s.apiDeleteGrant)
	admin("GET /api/v1/policies", s.apiListPolicies)
	admin("POST /api/v1/policies", s.apiCreatePolicy)
	admin("GET /api/v1/policies/{id}", s.apiGetPolicy)
	admin("PUT /api/v1/policies/{id}", s.apiUpdatePolicy)
	admin("DELETE /api/v1/policies/{id}", s.apiDeletePolicy)
	mux.Handle("GET /api/v1/audit", s.apiAuth(s.apiAudit, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /api/v1/recordings", s.apiAuth(s.apiRecordings, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /api/v1/recordings/{id}", s.apiAuth(s.apiRecording, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /api/v1/recordings/{id}/file", s.apiAuth(s.apiRecordingFile, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /api/v1/connections", s.apiAuth(s.apiConnections, store.RoleAdmin, store.RoleAuditor))
	admin("GET /api/v1/segments", s.apiListSegments)
	admin("POST /api/v1/segments", s.apiCreateSegment)
	admin("PUT /api/v1/segments/{id}", s.apiUpdateSegment)
	admin("DELETE /api/v1/segments/{id}", s.apiDeleteSegment)
	admin("GET /api/v1/gateways", s.apiListGateways)
	admin("POST /api/v1/gateways", s.apiCreateGateway)
	admin("GET /api/v1/gateways/{id}", s.apiGetGateway)
	admin("PUT /api/v1/gateways/{id}/key", s.apiSetGatewayKey)
	admin("DELETE /api/v1/gateways/{id}/key", s.apiRevokeGatewayKey)
	admin("DELETE /api/v1/gateways/{id}", s.apiDeleteGateway)
	admin("PUT /api/v1/settings/tunnel", s.apiSetTunnel)
	mux.Handle("GET /api/v1/sessions", s.apiAuth(s.apiLiveSessions, store.RoleAdmin, store.RoleAuditor))
	admin("POST /api/v1/sessions/terminate", s.apiTerminateSessions)
	admin("POST /api/v1/sessions/{id}/terminate", s.apiTerminateSession)
	admin("GET /api/v1/settings/hook", s.apiGetHook)
	admin("PUT /api/v1/settings/hook", s.apiSetHook)
	admin("POST /api/v1/settings/hook/test", s.apiTestHook)
	admin("GET /api/v1/settings/trusted-proxies", s.apiGetProxies)
	admin("PUT /api/v1/settings/trusted-proxies", s.apiSetProxies)
	admin("GET /api/v1/settings/clients", s.apiGetClients)
	admin("PUT /api/v1/settings/clients", s.apiSetClients)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

type apiHandler func(w http.ResponseWriter, r *http.Request, u store.User) error

// apiAuth checks the bearer token and role, runs h and turns its error into
// a JSON answer.
func (s *Server) apiAuth(h apiHandler, roles ...store.Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keyway"`)
			writeJSONError(w, http.StatusUnauthorized, "missing bearer token: create one on your account page")
			return
		}
		u, _, err := s.Store.TokenUser(r.Context(), strings.TrimSpace(token))
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				s.Logger.WarnContext(r.Context(), "API token rejected", "err", err)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="keyway", error="invalid_token"`)
			writeJSONError(w, http.StatusUnauthorized, "the token is unknown, expired or revoked")
			return
		}
		if len(roles) > 0 && !slices.Contains(roles, u.Role) {
			s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionAuthzDenied, Target: r.Method + " " + r.URL.Path,
				Outcome: audit.OutcomeDenied, Reason: "role " + string(u.Role) + " may not use this endpoint"})
			writeJSONError(w, http.StatusForbidden, "your role may not use this endpoint")
			return
		}
		if err := h(w, r.WithContext(withUser(r.Context(), u)), u); err != nil {
			s.apiError(w, r, err)
		}
	})
}

func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	var fe fieldErrors
	var syntax *json.SyntaxError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &fe):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(map[string]any{"error": "invalid input", "fields": map[string]string(fe)})
	case errors.Is(err, store.ErrNotFound):
		writeJSONError(w, http.StatusNotFound, "not found")
	case errors.As(err, &mbe):
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
	case errors.As(err, &syntax), errors.Is(err, errBadJSON):
		writeJSONError(w, http.StatusBadRequest, err.Error())
	default:
		s.Logger.ErrorContext(r.Context(), "API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error; see the portal log")
	}
}

var errBadJSON = errors.New("malformed JSON body")

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: %v", errBadJSON, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", errBadJSON)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

// JSON shapes of the API. Secrets are write-only: they never appear here.

type apiUser struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name"`
	Role        string    `json:"role"`
	Groups      []string  `json:"groups"`
	Disabled    bool      `json:"disabled"`
	Source      string    `json:"source"`
	CreatedAt   time.Time `json:"created_at"`
}

func toAPIUser(u store.User) apiUser {
	g := u.Groups
	if g == nil {
		g = []string{}
	}
	return apiUser{u.ID, u.Name, u.DisplayName, string(u.Role), g, u.Disabled, u.Source, u.CreatedAt}
}

type apiResource struct {
	ID                 int64    `json:"id"`
	Name               string   `json:"name"`
	Description        string   `json:"description"`
	Protocol           string   `json:"protocol"`
	Host               string   `json:"host"`
	Port               int      `json:"port"`
	Login              string   `json:"login,omitempty"`
	Tags               []string `json:"tags"`
	HostKeyFingerprint string   `json:"host_key_fingerprint,omitempty"`
	HasPassword        bool     `json:"has_password"`
	HasPrivateKey      bool     `json:"has_private_key"`
	ViewOnly           bool     `json:"view_only,omitempty"`
	Clipboard          string   `json:"clipboard,omitempty"`
	ColorDepth         int      `json:"color_depth,omitempty"`
	Recording          string   `json:"recording"`
	RecordInput        bool     `json:"record_input"`
	MaxUploadBytes     int64    `json:"max_upload_bytes,omitempty"`
	NoUpload           bool     `json:"no_upload,omitempty"`
	NoDownload         bool     `json:"no_download,omitempty"`
	DotfileChanges     bool     `json:"allow_dotfile_changes,omitempty"`
	Domain             string   `json:"domain,omitempty"`
	Security           string   `json:"security,omitempty"`
	IgnoreCert         bool     `json:"ignore_cert,omitempty"`
	Width              int      `json:"width,omitempty"`
	Height             int      `json:"height,omitempty"`
	KeyboardLayout     string   `json:"keyboard_layout,omitempty"`
	IdleTimeoutMinutes int      `json:"idle_timeout_minutes,omitempty"`
	MaxSessionMinutes  int      `json:"max_session_minutes,omitempty"`
	Tunnel             bool     `json:"tunnel,omitempty"`
	Networks           string   `json:"networks,omitempty"`
	StepUpMinutes      int      `json:"step_up_minutes,omitempty"`
}

func toAPIResource(r store.Resource) apiResource {
	t := r.Tags
	if t == nil {
		t = []string{}
	}
	o := r.Options
	switch r.Protocol {
	case "vnc":
		o.Clipboard = cmp.Or(o.Clipboard, "both")
		o.ColorDepth = cmp.Or(o.ColorDepth, 24)
	case "rdp":
		o.Clipboard = cmp.Or(o.Clipboard, "both")
		o.ColorDepth = cmp.Or(o.ColorDepth, 32)
		o.Security = cmp.Or(o.Security, "any")
		o.KeyboardLayout = cmp.Or(o.KeyboardLayout, "en-us")
	}
	return apiResource{r.ID, r.Name, r.Description, r.Protocol, r.Host, r.Port, r.Login, t, fingerprint(r.HostKey),
		r.HasPassword, r.HasPrivateKey, o.ViewOnly, o.Clipboard, o.ColorDepth, o.RecordingMode(), o.RecordInput,
		o.MaxUploadBytes, o.NoUpload, o.NoDownload, o.AllowDotfileChanges, o.Domain, o.Security, o.IgnoreCert, o.Width, o.Height, o.KeyboardLayout,
		o.IdleTimeoutSeconds / 60, o.MaxSessionSeconds / 60, o.Tunnel, o.Networks, o.StepUpMinutes}
}

func (s *Server) apiMe(w http.ResponseWriter, r *http.Request, u store.User) error {
	return writeJSON(w, http.StatusOK, toAPIUser(u))
}

func (s *Server) apiMyResources(w http.ResponseWriter, r *http.Request, u store.User) error {
	rs, err := s.Store.ResourcesForUser(r.Context(), u.ID)
	if err != nil {
		return err
	}
	out := make([]apiResource, 0, len(rs))
	for _, res := range rs {
		a := toAPIResource(res)
		a.Login, a.HasPassword, a.HasPrivateKey = "", false, false
		out = append(out, a)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiListUsers(w http.ResponseWriter, r *http.Request, _ store.User) error {
	us, err := s.Store.ListUsers(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiUser, 0, len(us))
	for _, u := range us {
		out = append(out, toAPIUser(u))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateUser(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in userInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	u, err := s.createUser(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, toAPIUser(u))
}

func (s *Server) apiGetUser(w http.ResponseWriter, r *http.Request, _ store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	u, err := s.Store.UserByID(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIUser(u))
}

func (s *Server) apiUpdateUser(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in userInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	u, err := s.updateUser(r, actor, id, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIUser(u))
}

func (s *Server) apiDeleteUser(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.deleteUser(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// apiSignInLockView is a user's recent failed sign-ins.
type apiSignInLockView struct {
	Failures    int        `json:"failures"`
	LastFailure *time.Time `json:"last_failure,omitempty"`
	LastAddr    string     `json:"last_addr,omitempty"`
	Locked      bool       `json:"locked"`
	LockedUntil *time.Time `json:"locked_until,omitempty"`
}

func (s *Server) apiSignInLock(w http.ResponseWriter, r *http.Request, _ store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := s.Store.UserByID(r.Context(), id); err != nil {
		return err
	}
	l, err := s.Store.SignInLock(r.Context(), id)
	if err != nil {
		return err
	}
	v := apiSignInLockView{Failures: l.Failures, LastAddr: l.LastAddr, Locked: l.Locked(s.Now())}
	if !l.LastFailure.IsZero() {
		v.LastFailure = &l.LastFailure
	}
	if v.Locked {
		v.LockedUntil = &l.LockedUntil
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) apiUnlockUser(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := s.unlockUser(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiListGroups(w http.ResponseWriter, r *http.Request, _ store.User) error {
	gs, err := s.Store.ListGroups(r.Context())
	if err != nil {
		return err
	}
	type group struct {
		ID          int64  `json:"id"`
		Name        string `json:"name"`
		Description string `json:"description"`
		Members     int    `json:"members"`
	}
	out := make([]group, 0, len(gs))
	for _, g := range gs {
		out = append(out, group{g.ID, g.Name, g.Description, g.Members})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateGroup(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in groupInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	g, err := s.createGroup(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, map[string]any{"id": g.ID, "name": g.Name, "description": g.Description})
}

func (s *Server) apiDeleteGroup(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.deleteGroup(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiListResources(w http.ResponseWriter, r *http.Request, _ store.User) error {
	rs, err := s.Store.ListResources(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiResource, 0, len(rs))
	for _, res := range rs {
		out = append(out, toAPIResource(res))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateResource(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in resourceInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	res, err := s.createResource(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, toAPIResource(res))
}

func (s *Server) apiGetResource(w http.ResponseWriter, r *http.Request, _ store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	res, err := s.Store.ResourceByID(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIResource(res))
}

func (s *Server) apiUpdateResource(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in resourceInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	res, err := s.updateResource(r, actor, id, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIResource(res))
}

func (s *Server) apiDeleteResource(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.deleteResource(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiHostKey(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct {
		Action string `json:"action"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := s.hostKeyAction(r, actor, id, in.Action); err != nil {
		return err
	}
	res, err := s.Store.ResourceByID(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIResource(res))
}

type apiGrant struct {
	ID           int64     `json:"id"`
	ResourceID   int64     `json:"resource_id"`
	ResourceName string    `json:"resource_name"`
	SubjectKind  string    `json:"subject_kind"`
	SubjectID    int64     `json:"subject_id"`
	SubjectName  string    `json:"subject_name"`
	Mode         string    `json:"mode"`
	CreatedAt    time.Time `json:"created_at"`
}

func toAPIGrant(g store.Grant) apiGrant {
	return apiGrant{g.ID, g.ResourceID, g.ResourceName, g.SubjectKind, g.SubjectID, g.SubjectName, string(g.Mode), g.CreatedAt}
}

func (s *Server) apiListGrants(w http.ResponseWriter, r *http.Request, _ store.User) error {
	gs, err := s.Store.ListGrants(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiGrant, 0, len(gs))
	for _, g := range gs {
		out = append(out, toAPIGrant(g))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateGrant(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in grantInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	g, err := s.createGrant(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, toAPIGrant(g))
}

func (s *Server) apiUpdateGrant(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct {
		Mode store.GrantMode `json:"mode"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	g, err := s.updateGrant(r, actor, id, in.Mode)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIGrant(g))
}

func (s *Server) apiDeleteGrant(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.deleteGrant(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request, _ store.User) error {
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	evs, err := s.Audit.Search(r.Context(), f)
	if err != nil {
		return err
	}
	type event struct {
		ID         int64             `json:"id"`
		Time       time.Time         `json:"time"`
		Actor      string            `json:"actor"`
		Action     string            `json:"action"`
		Target     string            `json:"target"`
		ClientAddr string            `json:"client_addr"`
		Outcome    string            `json:"outcome"`
		Reason     string            `json:"reason,omitempty"`
		Details    map[string]string `json:"details,omitempty"`
		Hash       string            `json:"hash"`
	}
	out := make([]event, 0, len(evs))
	for _, e := range evs {
		out = append(out, event{e.ID, e.Time, e.Actor, e.Action, e.Target, e.ClientAddr, e.Outcome, e.Reason, e.Details, e.Hash})
	}
	return writeJSON(w, http.StatusOK, out)
}

// auditPageSize is how many audit events one API call returns, and
// auditScreenSize how many one page of the audit log shows.
const (
	auditPageSize   = 100
	auditScreenSize = 50
)

// auditFilter reads the audit filters shared by the page and the API.
func auditFilter(r *http.Request) (store.AuditFilter, error) {
	q := r.URL.Query()
	f := store.AuditFilter{
		Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")),
		Outcome: strings.TrimSpace(q.Get("outcome")), Text: strings.TrimSpace(q.Get("q")),
		Limit: auditPageSize,
	}
	fe := fieldErrors{}
	loc := time.UTC
	if tz := q.Get("tz"); tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			fe["since"] = "Unknown time zone " + tz + "."
		} else {
			loc = l
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := parseTimeParam(v, loc)
		if err != nil {
			fe[p.name] = "Use a date and time such as 2026-01-31T14:00."
			continue
		}
		*p.dst = t
	}
	if v := q.Get("before"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			fe["before"] = "Not a valid page position."
		}
		f.BeforeID = id
	}
	if len(fe) > 0 {
		return f, fe
	}
	return f, nil
}

// parseTimeParam accepts RFC 3339, or the datetime-local form a browser
// sends, read in loc (the browser's zone, which the page sends as tz).
func parseTimeParam(v string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable time %q", v)
}
