package httpui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// --- /device: approving a native client's sign-in

func (s *Server) devicePage(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	if code == "" {
		s.render(w, r, http.StatusOK, ui.Device(s.page(r, "Sign in a device", ""), ui.DeviceView{}))
		return
	}
	req, err := s.Store.PendingDeviceRequest(r.Context(), code)
	if errors.Is(err, store.ErrNotFound) {
		msg := "No device is waiting with this code. Codes are good for 10 minutes and once: check it, or run keyway login again."
		if store.NormalizeUserCode(code) == "" {
			msg = "A code is eight letters, like BCDF-GHJK. Check what the device shows."
		}
		s.render(w, r, http.StatusNotFound, ui.Device(s.page(r, "Sign in a device", ""), ui.DeviceView{Code: code, Error: msg}))
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, ui.Device(s.page(r, "Sign in a device", ""), ui.DeviceView{Code: code, Request: &ui.DeviceRequestView{
		UserCode: store.FormatUserCode(req.UserCode), Name: req.Name, OS: req.OS, Arch: req.Arch, Version: req.Version,
		Fingerprint: keyFingerprint(req.PublicKey), ClientAddr: req.ClientAddr, CreatedAt: req.CreatedAt,
	}}))
}

// deviceGone answers an approval or denial of a request that is no longer
// pending: the form can no longer be processed.
func (s *Server) deviceGone(w http.ResponseWriter, r *http.Request, code string) {
	s.render(w, r, http.StatusUnprocessableEntity, ui.Device(s.page(r, "Sign in a device", ""), ui.DeviceView{Code: code,
		Error: "No device is waiting with this code any more: it expired, or was approved or denied. Run keyway login again on the device."}))
}

func (s *Server) approveDevice(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	code := r.PostForm.Get("code")
	req, err := s.Store.PendingDeviceRequest(r.Context(), code)
	var d store.Device
	if err == nil {
		d, err = s.Store.ApproveDeviceRequest(r.Context(), code, u.ID)
	}
	if errors.Is(err, store.ErrNotFound) {
		s.deviceGone(w, r, code)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.copyMFAToDevice(r, d)
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionDeviceApprove, Target: deviceTarget(d), Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"device_addr": req.ClientAddr, "os": d.OS, "arch": d.Arch, "version": d.Version,
			"fingerprint": keyFingerprint(d.PublicKey)}})
	s.done(w, r, fmt.Sprintf("You approved %s. It finishes signing in by itself within seconds.", d.Name), "/account#devices")
}

func (s *Server) denyDevice(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	code := r.PostForm.Get("code")
	req, err := s.Store.DenyDeviceRequest(r.Context(), code, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		s.deviceGone(w, r, code)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionDeviceDeny, Target: req.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"device_addr": req.ClientAddr, "fingerprint": keyFingerprint(req.PublicKey)}})
	s.done(w, r, fmt.Sprintf("You denied the sign-in of %s.", req.Name), "/account#devices")
}

// --- devices on the Account and admin user pages

// deviceRows shows devices; admin chooses the admin's revoke route.
func (s *Server) deviceRows(ctx context.Context, userID int64, admin bool) ([]ui.DeviceRow, error) {
	ds, err := s.Store.ListDevices(ctx, userID)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	rows := make([]ui.DeviceRow, 0, len(ds))
	for _, d := range ds {
		row := ui.DeviceRow{ID: d.ID, Name: d.Name, OS: d.OS, Arch: d.Arch, Version: d.Version, CreatedAt: d.CreatedAt,
			LastUsedAt: d.LastUsedAt, LastAddr: d.LastAddr, ExpiresAt: d.ExpiresAt, Status: "active",
			RevokeAction: fmt.Sprintf("/account/devices/%d/revoke", d.ID)}
		if admin {
			row.RevokeAction = fmt.Sprintf("/admin/users/%d/devices/%d/revoke", userID, d.ID)
		}
		switch {
		case d.Revoked():
			row.Status = "revoked"
		case d.ExpiresAt.IsZero():
			row.Status = "waiting"
		case !now.Before(d.ExpiresAt):
			row.Status = "expired"
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// revokeDevice revokes one of owner's devices for actor and ends its
// tunnels through the session guard.
func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request, actor store.User, ownerID int64, back string) {
	id, err := strconv.ParseInt(r.PathValue("device"), 10, 64)
	if r.PathValue("device") == "" {
		id, err = pathID(r)
	}
	var d store.Device
	if err == nil && id > 0 {
		d, err = s.Store.RevokeDevice(r.Context(), ownerID, id)
	} else {
		err = store.ErrNotFound
	}
	if err != nil {
		s.actionError(w, r, err, back)
		return
	}
	s.kickGuard()
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionDeviceRevoke, Target: deviceTarget(d), Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"owner_id": strconv.FormatInt(ownerID, 10)}})
	s.done(w, r, fmt.Sprintf("The device %s was revoked.", d.Name), back)
}

func (s *Server) revokeMyDevice(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	s.revokeDevice(w, r, u, u.ID, "/account#devices")
}

func (s *Server) adminRevokeDevice(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	owner, err := pathID(r)
	if err != nil {
		s.actionError(w, r, err, "/admin/users")
		return
	}
	s.revokeDevice(w, r, actor, owner, fmt.Sprintf("/admin/users/%d#devices", owner))
}

// --- native client downloads

// clientFileNames are the builds `make build` makes, the only names
// /downloads serves, with the system each is for.
var clientFileNames = []struct{ name, label string }{
	{"keyway-linux-amd64", "Linux (x86-64)"},
	{"keyway-linux-arm64", "Linux (ARM64)"},
	{"keyway-darwin-arm64", "macOS (Apple silicon)"},
	{"keyway-windows-amd64.exe", "Windows (x86-64)"},
}

func clientFileLabel(name string) (string, bool) {
	for _, f := range clientFileNames {
		if f.name == name {
			return f.label, true
		}
	}
	return "", false
}

// clientFileCache remembers the SHA-256 of each build by its size and
// modification time, so that the Account page does not hash megabytes at
// every view.
type clientFileCache struct {
	mu   sync.Mutex
	sums map[string]cachedSum
}

type cachedSum struct {
	size    int64
	modTime time.Time
	sum     string
}

func (c *clientFileCache) sum(path string, fi os.FileInfo) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.sums[path]; ok && e.size == fi.Size() && e.modTime.Equal(fi.ModTime()) {
		return e.sum, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	if c.sums == nil {
		c.sums = map[string]cachedSum{}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	c.sums[path] = cachedSum{fi.Size(), fi.ModTime(), sum}
	return sum, nil
}

// nativeClientView lists the builds present in ClientsDir.
func (s *Server) nativeClientView(r *http.Request) ui.NativeClientView {
	v := ui.NativeClientView{PortalURL: s.portalBase(r)}
	for _, f := range clientFileNames {
		if s.ClientsDir == "" {
			break
		}
		path := filepath.Join(s.ClientsDir, f.name)
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		sum, err := s.clientFiles.sum(path, fi)
		if err != nil {
			s.Logger.WarnContext(r.Context(), "native client build", "file", path, "err", err)
			continue
		}
		v.Files = append(v.Files, ui.ClientFile{Name: f.name, Label: f.label, Size: fi.Size(), SHA256: sum})
	}
	v.Missing = len(v.Files) == 0
	return v
}

func (s *Server) clientDownload(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if _, ok := clientFileLabel(name); !ok || s.ClientsDir == "" {
		s.renderError(w, r, http.StatusNotFound, "There is no such download.")
		return
	}
	f, err := os.Open(filepath.Join(s.ClientsDir, name))
	if errors.Is(err, os.ErrNotExist) {
		s.renderError(w, r, http.StatusNotFound, "This client is not built on this portal. The administrator builds the clients with make build.")
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.renderError(w, r, http.StatusNotFound, "There is no such download.")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// --- settings: native client limits

// clientLimits returns the native-client limits, for the tunnel endpoint.
func (s *Server) clientLimits(ctx context.Context) (store.ClientLimits, error) {
	return s.Store.ClientLimits(ctx)
}

func clientSettingsView(l store.ClientLimits) ui.ClientSettingsView {
	return ui.ClientSettingsView{CredentialHours: strconv.Itoa(l.CredentialHours), StreamsPerDevice: strconv.Itoa(l.StreamsPerDevice),
		StreamsPerUser: strconv.Itoa(l.StreamsPerUser)}
}

// clientLimitsInput is a change of the limits; nil fields stay.
type clientLimitsInput struct {
	CredentialHours  *int `json:"credential_hours"`
	StreamsPerDevice *int `json:"streams_per_device"`
	StreamsPerUser   *int `json:"streams_per_user"`
}

// saveClientLimits validates and stores a change of the limits.
func (s *Server) saveClientLimits(r *http.Request, actor store.User, in clientLimitsInput) (store.ClientLimits, error) {
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	l, err := s.Store.ClientLimits(r.Context())
	if err != nil {
		return l, err
	}
	old := l
	for _, f := range []struct {
		in  *int
		out *int
	}{{in.CredentialHours, &l.CredentialHours}, {in.StreamsPerDevice, &l.StreamsPerDevice}, {in.StreamsPerUser, &l.StreamsPerUser}} {
		if f.in != nil {
			*f.out = *f.in
		}
	}
	if errs := l.Validate(); len(errs) > 0 {
		return old, fieldErrors(errs)
	}
	if err := s.Store.SetClientLimits(r.Context(), l); err != nil {
		return old, err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSettingsClients, Target: "native clients", Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"credential_hours": strconv.Itoa(l.CredentialHours), "streams_per_device": strconv.Itoa(l.StreamsPerDevice),
			"streams_per_user": strconv.Itoa(l.StreamsPerUser)}})
	return l, nil
}

func (s *Server) clientsForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	f := r.PostForm
	var in clientLimitsInput
	errs := fieldErrors{}
	for _, p := range []struct {
		field string
		dst   **int
	}{{"credential_hours", &in.CredentialHours}, {"streams_per_device", &in.StreamsPerDevice}, {"streams_per_user", &in.StreamsPerUser}} {
		n, err := strconv.Atoi(strings.TrimSpace(f.Get(p.field)))
		if err != nil {
			errs[p.field] = "Give a whole number."
			continue
		}
		*p.dst = &n
	}
	var err error
	if len(errs) > 0 {
		err = errs
	} else {
		_, err = s.saveClientLimits(r, actor, in)
	}
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		v := s.settingsView(r)
		v.Clients = ui.ClientSettingsView{CredentialHours: f.Get("credential_hours"), StreamsPerDevice: f.Get("streams_per_device"),
			StreamsPerUser: f.Get("streams_per_user"), Errors: errs}
		s.renderSettings(w, r, http.StatusUnprocessableEntity, v)
	}) {
		return
	}
	s.done(w, r, "Native client limits saved. A new sign-in lifetime applies to the next sign-in; stream limits to new streams.", "/admin/settings#clients")
}

func (s *Server) apiGetClients(w http.ResponseWriter, r *http.Request, _ store.User) error {
	l, err := s.clientLimits(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}

func (s *Server) apiSetClients(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in clientLimitsInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	l, err := s.saveClientLimits(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}
