package httpui

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/identity/saml"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// Limits on the SAML forms.
const (
	// maxSAMLForm bounds the provider form: the metadata file and the
	// other fields.
	maxSAMLForm = saml.MaxMetadataXML + 64<<10
	// maxACSBody bounds the IdP's post to the ACS: the SAMLResponse and
	// the RelayState, URL-encoded (base64 grows by a third when
	// percent-encoded at worst).
	maxACSBody = saml.MaxResponseField*4/3 + 4<<10
	// maxSAMLUsername is the longest user name a provider may give (the
	// store's bound on provisioned names).
	maxSAMLUsername = 64
)

// clientTransport is http.DefaultTransport's behaviour (proxy from the
// environment, HTTP/2) with the portal's client TLS settings, for fetching
// SAML metadata.
func clientTransport(tlsSet tlsconf.Settings) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsSet.Client(nil)
	return tr
}

// samlRoutes registers the routes of SAML 2.0.
func (s *Server) samlRoutes(mux *http.ServeMux, signedIn, admin func(string, http.HandlerFunc)) {
	s.saml = saml.NewService(&http.Client{Transport: clientTransport(s.ClientTLS)}, s.Now)
	admin("GET /admin/identity/saml/new", s.samlNewPage)
	admin("POST /admin/identity/saml", s.samlCreate)
	admin("GET /admin/identity/saml/{id}", s.samlEditPage)
	admin("POST /admin/identity/saml/{id}", s.samlUpdate)
	admin("POST /admin/identity/saml/{id}/test", s.samlTest)
	mux.HandleFunc("GET /saml/{name}/metadata", s.samlMetadata)
	mux.HandleFunc("GET /signin/saml/{name}", s.samlStart)
	mux.HandleFunc("POST /saml/{name}/acs", s.samlACS)
	// The IdP's answer is a cross-site POST by design; the signed,
	// single-use response is its protection.
	s.crossSitePOSTs = append(s.crossSitePOSTs, "POST /saml/{name}/acs")
}

// samlProvider is p as the saml package uses it, on the portal at r.
func (s *Server) samlProvider(r *http.Request, p store.IdentityProvider) (saml.Provider, error) {
	cfg, err := saml.ParseConfig(p.Config)
	if err != nil {
		return saml.Provider{}, fmt.Errorf("SAML provider %s: %w", p.Name, err)
	}
	return saml.Provider{Name: p.Name, Config: cfg, Base: s.portalBase(r)}, nil
}

func (s *Server) samlNewPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, ui.SAMLProviderForm(s.page(r, "Add SAML provider", "identity"),
		ui.SAMLProviderView{IsNew: true, Enabled: true, UsernameAttribute: "", EmailAttribute: "mail"}))
}

// samlView is the form of p (config c) on the portal at r.
func (s *Server) samlView(r *http.Request, p store.IdentityProvider, c saml.Config) ui.SAMLProviderView {
	v := ui.SAMLProviderView{ID: p.ID, Name: p.Name, DisplayName: p.DisplayName, Enabled: p.Enabled,
		MetadataURL: c.MetadataURL, HasUploadedMetadata: c.MetadataXML != "",
		UsernameAttribute: c.UsernameAttribute, DisplayNameAttribute: c.DisplayNameAttribute,
		EmailAttribute: c.EmailAttribute, GroupsAttribute: c.GroupsAttribute,
		AllowedDomains: strings.Join(c.AllowedDomains, ", "), SPCertificate: c.SPCertificate}
	sp := saml.Provider{Name: p.Name, Config: c, Base: s.portalBase(r)}
	v.SPMetadataURL, v.ACSURL = sp.EntityID(), sp.ACSURL()
	if cert, err := c.Certificate(); err == nil {
		v.SPCertNotAfter = cert.NotAfter
	}
	return v
}

func (s *Server) samlEditPage(w http.ResponseWriter, r *http.Request) {
	p, ok := s.providerOr404(w, r, store.KindSAML)
	if !ok {
		return
	}
	c, err := saml.ParseConfig(p.Config)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, ui.SAMLProviderForm(s.page(r, "SAML provider "+p.DisplayName, "identity"), s.samlView(r, p, c)))
}

// samlForm reads the provider form into p and c (c keeps its key and an
// uploaded metadata file unless replaced). It returns the form's errors.
func (s *Server) samlForm(w http.ResponseWriter, r *http.Request, p *store.IdentityProvider, c *saml.Config) (ui.Errors, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSAMLForm)
	var file []byte
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(maxSAMLForm); err != nil {
			return nil, err
		}
		if f, _, err := r.FormFile("metadata_file"); err == nil {
			defer f.Close()
			if file, err = io.ReadAll(io.LimitReader(f, saml.MaxMetadataXML+1)); err != nil {
				return nil, err
			}
		}
	} else if err := r.ParseForm(); err != nil {
		return nil, err
	}
	errs := ui.Errors{}
	p.Name = strings.TrimSpace(r.PostFormValue("name"))
	p.DisplayName = strings.TrimSpace(r.PostFormValue("display_name"))
	p.Enabled = r.PostFormValue("enabled") == "on"
	if err := store.ValidProviderName(p.Name); err != nil {
		errs["name"] = capitalize(err.Error()) + "."
	}
	if len([]rune(p.DisplayName)) > 100 {
		errs["display_name"] = "The display name may have at most 100 characters."
	}
	c.MetadataURL = strings.TrimSpace(r.PostFormValue("metadata_url"))
	switch {
	case len(file) > saml.MaxMetadataXML:
		errs["metadata"] = fmt.Sprintf("The metadata file is larger than %d KiB.", saml.MaxMetadataXML>>10)
	case len(file) > 0 && c.MetadataURL != "":
		errs["metadata"] = "Give either a metadata URL or a metadata file, not both."
	case len(file) > 0:
		if _, err := saml.ParseIdPMetadata(file); err != nil {
			errs["metadata"] = "The metadata file is not usable: " + err.Error()
		}
		c.MetadataXML = string(file)
	case c.MetadataURL != "":
		c.MetadataXML = ""
	}
	c.UsernameAttribute = strings.TrimSpace(r.PostFormValue("username_attribute"))
	c.DisplayNameAttribute = strings.TrimSpace(r.PostFormValue("display_name_attribute"))
	c.EmailAttribute = strings.TrimSpace(r.PostFormValue("email_attribute"))
	c.GroupsAttribute = strings.TrimSpace(r.PostFormValue("groups_attribute"))
	c.AllowedDomains = saml.ParseDomains(r.PostFormValue("allowed_domains"))
	var fe *saml.FieldError
	if err := c.ValidateSettings(); errors.As(err, &fe) && errs[fe.Field] == "" {
		errs[fe.Field] = capitalize(fe.Error()) + "."
	}
	return errs, nil
}

func (s *Server) samlCreate(w http.ResponseWriter, r *http.Request) {
	p := store.IdentityProvider{Kind: store.KindSAML}
	var c saml.Config
	errs, err := s.samlForm(w, r, &p, &c)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if len(errs) == 0 {
		// The SP's key pair, made once; renaming keeps it.
		if err := c.NewKeyPair(saml.EntityID(s.portalBase(r), p.Name), s.Now()); err != nil {
			s.serverError(w, r, err)
			return
		}
		p.Config = c.JSON()
		created, err := s.Store.CreateIdentityProvider(r.Context(), p)
		switch {
		case errors.Is(err, store.ErrConflict):
			errs["name"] = capitalize(err.Error()) + "."
		case err != nil:
			s.serverError(w, r, err)
			return
		default:
			s.providerSaved(w, r, created, true, nil,
				"SAML provider "+created.DisplayName+" added. Choose who may sign in with it, then register Keyway with the IdP (its edit page shows how).")
			return
		}
	}
	v := s.samlView(r, p, c)
	v.IsNew, v.Errors = true, errs
	s.render(w, r, http.StatusUnprocessableEntity, ui.SAMLProviderForm(s.page(r, "Add SAML provider", "identity"), v))
}

func (s *Server) samlUpdate(w http.ResponseWriter, r *http.Request) {
	p, ok := s.providerOr404(w, r, store.KindSAML)
	if !ok {
		return
	}
	c, err := saml.ParseConfig(p.Config)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	errs, err := s.samlForm(w, r, &p, &c)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if len(errs) == 0 {
		p.Config = c.JSON()
		err := s.Store.UpdateIdentityProvider(r.Context(), p)
		switch {
		case errors.Is(err, store.ErrConflict):
			errs["name"] = capitalize(err.Error()) + "."
		case err != nil:
			s.actionError(w, r, err, "/admin/identity")
			return
		default:
			s.providerSaved(w, r, p, false, nil, "SAML provider "+p.DisplayName+" saved.")
			return
		}
	}
	v := s.samlView(r, p, c)
	v.Errors = errs
	s.render(w, r, http.StatusUnprocessableEntity, ui.SAMLProviderForm(s.page(r, "SAML provider "+p.DisplayName, "identity"), v))
}

func (s *Server) samlTest(w http.ResponseWriter, r *http.Request) {
	p, ok := s.providerOr404(w, r, store.KindSAML)
	if !ok {
		return
	}
	sp, err := s.samlProvider(r, p)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	v := s.samlView(r, p, sp.Config)
	info, err := s.saml.Test(r.Context(), sp)
	u, _ := currentUser(r)
	ev := audit.Event{Actor: u.Name, Action: audit.ActionIdPTest, Target: p.Source(), Outcome: audit.OutcomeSuccess}
	status := http.StatusOK
	if err != nil {
		v.Test = &ui.SAMLTestView{Error: "The IdP metadata could not be used: " + err.Error()}
		ev.Outcome, ev.Reason = audit.OutcomeFailure, err.Error()
		status = http.StatusUnprocessableEntity
	} else {
		v.Test = &ui.SAMLTestView{EntityID: info.EntityID, SSOURL: info.SSOURL, CertNotAfter: info.CertNotAfter,
			Certificates: info.Certificates, SPMetadataURL: sp.EntityID()}
	}
	s.record(r, ev)
	s.render(w, r, status, ui.SAMLProviderForm(s.page(r, "SAML provider "+p.DisplayName, "identity"), v))
}

// samlNamed loads the SAML provider of the {name} path value.
func (s *Server) samlNamed(r *http.Request) (store.IdentityProvider, saml.Provider, error) {
	name := r.PathValue("name")
	if store.ValidProviderName(name) != nil {
		return store.IdentityProvider{}, saml.Provider{}, store.ErrNotFound
	}
	p, err := s.Store.IdentityProviderByName(r.Context(), store.KindSAML, name)
	if err != nil {
		return p, saml.Provider{}, err
	}
	sp, err := s.samlProvider(r, p)
	return p, sp, err
}

// samlMetadata serves the SP metadata the IdP is given.
func (s *Server) samlMetadata(w http.ResponseWriter, r *http.Request) {
	_, sp, err := s.samlNamed(r)
	if errors.Is(err, store.ErrNotFound) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	b, err := s.saml.SPMetadata(sp)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Write(b)
}

// samlRefuse audits a refused SAML sign-in and says why.
func (s *Server) samlRefuse(w http.ResponseWriter, r *http.Request, provider, actor string, status int, reason, msg string, err error) {
	if actor == "" {
		actor = "(unknown)"
	}
	ev := audit.Event{Actor: actor, Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure, Reason: reason,
		Details: SignInMethod{Kind: MethodSAML, Provider: provider}.auditDetails()}
	s.record(r, ev)
	s.Logger.InfoContext(r.Context(), "SAML sign-in refused", "provider", provider, "reason", reason, "err", err)
	p := s.page(r, "Sign-in refused", "")
	s.render(w, r, status, ui.SAMLRefused(p, ui.SAMLRefusedView{Provider: provider, Message: msg}))
}

// samlStart sends the browser to the IdP with a sign-in request.
func (s *Server) samlStart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, sp, err := s.samlNamed(r)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.Enabled) {
		s.renderError(w, r, http.StatusNotFound, "There is no single sign-on provider with this name; it may have been removed or turned off.")
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	u, err := s.saml.Start(r.Context(), sp, safeNext(r.URL.Query().Get("next")), s.ClientInfo.Addr(r))
	var ref *saml.Refusal
	if errors.As(err, &ref) {
		s.samlRefuse(w, r, name, "", http.StatusBadGateway, ref.Reason, ref.Message, err)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// samlACS is the assertion consumer service: the IdP's answer, posted by
// the browser from the IdP's page.
func (s *Server) samlACS(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	r.Body = http.MaxBytesReader(w, r.Body, maxACSBody)
	if err := r.ParseForm(); err != nil {
		s.samlRefuse(w, r, name, "", http.StatusBadRequest, "malformed response", "The identity provider's answer could not be read (too large or not a form).", err)
		return
	}
	p, sp, err := s.samlNamed(r)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.Enabled) {
		s.samlRefuse(w, r, name, "", http.StatusNotFound, "unknown provider", "There is no single sign-on provider with this name; it may have been removed or turned off.", err)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	login, next, err := s.saml.Finish(r.Context(), sp, r.PostForm.Get("SAMLResponse"), r.PostForm.Get("RelayState"))
	var ref *saml.Refusal
	if errors.As(err, &ref) {
		status := http.StatusForbidden
		if ref.Reason == "provider unreachable" {
			status = http.StatusBadGateway
		}
		s.samlRefuse(w, r, name, login.Username, status, ref.Reason, ref.Message, err)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if auth.ValidUsername(login.Username) != nil || len(login.Username) > maxSAMLUsername {
		s.samlRefuse(w, r, name, "", http.StatusForbidden, "invalid user name",
			fmt.Sprintf("The identity provider gave a user name Keyway cannot use (at most %d characters of text). Ask your administrator to check the provider's user name attribute.", maxSAMLUsername), nil)
		return
	}
	u, err := s.provisionUser(r, p, login)
	switch {
	case errors.Is(err, store.ErrNotProvisioned):
		s.samlRefuse(w, r, name, login.Username, http.StatusForbidden, "user not provisioned",
			"You signed in at "+p.DisplayName+", but no Keyway account is set up for "+login.Username+". Ask your administrator.", err)
		return
	case errors.Is(err, store.ErrSourceMismatch):
		s.samlRefuse(w, r, name, login.Username, http.StatusForbidden, "account signs in another way",
			"A Keyway account named "+login.Username+" exists but signs in another way. Ask your administrator.", err)
		return
	case errors.Is(err, store.ErrInvalidUserName):
		s.samlRefuse(w, r, name, "", http.StatusForbidden, "invalid user name", provisionRefusal(err), err)
		return
	case errors.Is(err, auth.ErrDisabled):
		s.samlRefuse(w, r, name, u.Name, http.StatusForbidden, "user disabled", "Your Keyway account is disabled. Ask your administrator.", nil)
		return
	case err != nil:
		s.serverError(w, r, err)
		return
	}
	s.finishSignIn(w, r, u, SignInMethod{Kind: MethodSAML, Provider: name}, next)
}
