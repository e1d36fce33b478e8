package httpui

import (
	"net"
	"net/http"
	"strconv"

	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/web/ui"
)

// settingsView is the Settings page as saved, for r's admin.
func (s *Server) settingsView(r *http.Request) ui.SettingsView {
	cfg := s.Hook.Config()
	mif := cfg.MaxInFlight
	if mif == 0 {
		mif = hook.DefaultMaxInFlight
	}
	limits, err := s.clientLimits(r.Context())
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "read client limits", "err", err)
	}
	return ui.SettingsView{
		Clients: clientSettingsView(limits),
		Hook: ui.HookSettingsView{Enabled: cfg.Enabled, URL: cfg.URL, CABundle: cfg.CABundle, MaxInFlight: strconv.Itoa(mif),
			SecretSet: cfg.Secret != ""},
		Proxies:    clientinfo.FormatTrusted(s.ClientInfo.Trusted()),
		YourAddr:   s.ClientInfo.Addr(r),
		ConnAddr:   hostOnly(r.RemoteAddr),
		Forwarding: forwardingHeaders(r),
	}
}

func (s *Server) renderSettings(w http.ResponseWriter, r *http.Request, status int, v ui.SettingsView) {
	s.render(w, r, status, ui.Settings(s.page(r, "Settings", "settings"), v))
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request) {
	s.renderSettings(w, r, http.StatusOK, s.settingsView(r))
}

func (s *Server) hookForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	f := r.PostForm
	enabled := f.Get("enabled") == "on"
	in := hookInput{Enabled: &enabled, URL: ptr(f.Get("url")), CABundle: ptr(f.Get("ca_bundle")), MaxInFlight: ptr(f.Get("max_in_flight")),
		Secret: f.Get("secret"), GenerateSecret: f.Get("generate_secret") == "on", ClearSecret: f.Get("clear_secret") == "on"}
	_, secret, err := s.saveHook(r, actor, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		v := s.settingsView(r)
		// What the admin typed, except the secret, which is never echoed.
		v.Hook.Enabled, v.Hook.URL, v.Hook.CABundle, v.Hook.MaxInFlight = enabled, f.Get("url"), f.Get("ca_bundle"), f.Get("max_in_flight")
		v.HookErrors = errs
		s.renderSettings(w, r, http.StatusUnprocessableEntity, v)
	}) {
		return
	}
	if secret != "" {
		// Shown once, on this page rather than through the session's
		// flash, which is stored.
		v := s.settingsView(r)
		v.NewSecret = secret
		s.renderSettings(w, r, http.StatusOK, v)
		return
	}
	s.done(w, r, "Hook settings saved. They apply to new connections.", "/admin/settings")
}

func (s *Server) hookTestForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	x := s.testHook(r, actor)
	v := s.settingsView(r)
	v.Test = testView(s.Hook.Config().URL, x)
	s.renderSettings(w, r, http.StatusOK, v)
}

// testView shows an exchange with the hook.
func testView(url string, x hook.Exchange) *ui.HookTestView {
	t := &ui.HookTestView{URL: url, Request: x.Request, Response: x.Response, Elapsed: elapsedText(x.Elapsed),
		Allowed: x.Result.Allowed, Reason: string(x.Result.Reason), Message: x.Result.Message, Posture: x.Result.Posture}
	if x.Result.Err != nil {
		t.Error = x.Result.Err.Error()
	}
	return t
}

func (s *Server) proxiesForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	text := r.PostForm.Get("networks")
	_, err := s.saveProxies(r, actor, text)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		v := s.settingsView(r)
		v.Proxies, v.ProxyErrors = text, errs
		s.renderSettings(w, r, http.StatusUnprocessableEntity, v)
	}) {
		return
	}
	s.done(w, r, "Trusted proxies saved. Your address is now "+s.ClientInfo.Addr(r)+".", "/admin/settings#proxies")
}

func ptr[T any](v T) *T { return &v }

// hostOnly is the host of a "host:port" address.
func hostOnly(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
