// Package samltest is a SAML 2.0 identity provider for tests, built on
// crewjam/saml's IdentityProvider: it serves its metadata, signs users in
// (a login form, or a user chosen by the test), issues signed assertions
// with the user's groups, and can tamper with them (wrong key, wrong
// audience, expired, unsigned assertion) to test that an SP refuses them.
package samltest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"html/template"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	gosaml "github.com/crewjam/saml"
	"github.com/crewjam/saml/logger"
	"github.com/crewjam/saml/samlsp"
)

// Mode is how the IdP answers.
type Mode int

// Modes.
const (
	Honest            Mode = iota
	WrongKey               // signed with a key the SP does not trust
	WrongAudience          // assertion for another SP
	Expired                // assertion validity window in the past
	UnsignedAssertion      // the response is signed, the assertion is not
	WrongDestination       // the response names another ACS URL
	WrongIssuer            // signed with the IdP's key, as another entity
)

// User is a user of the IdP.
type User struct {
	Name        string
	Password    string
	Email       string
	DisplayName string
	Groups      []string
}

// IdP is a running test identity provider on loopback.
type IdP struct {
	// URL is the IdP's base URL, MetadataURL where its metadata is.
	URL         string
	MetadataURL string

	idp  *gosaml.IdentityProvider
	evil *gosaml.IdentityProvider // same entity, another key
	srv  *http.Server
	ln   net.Listener
	done chan struct{}

	mu       sync.Mutex
	users    map[string]User
	sps      map[string]*gosaml.EntityDescriptor
	sessions map[string]string // cookie -> user name
	auto     string
	mode     Mode
	// fetchSP, if set, is an SP metadata URL fetched when that SP first
	// asks to sign in.
	fetchSP string
	// Last is the last response form the IdP sent.
	last Form
	// client fetches SP metadata from a portal on loopback, whose
	// certificate tests make themselves.
	client *http.Client
}

// Form is the HTTP-POST binding form the IdP sends the browser.
type Form struct {
	URL, SAMLResponse, RelayState string
}

// New starts an IdP listening on addr ("127.0.0.1:0" for a random port).
func New(addr string) (*IdP, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	base := "http://" + ln.Addr().String()
	key, cert, err := keyPair("Keyway test IdP")
	if err != nil {
		ln.Close()
		return nil, err
	}
	ekey, ecert, err := keyPair("Keyway test IdP (untrusted)")
	if err != nil {
		ln.Close()
		return nil, err
	}
	u := func(p string) url.URL { v, _ := url.Parse(base + p); return *v }
	p := &IdP{URL: base, MetadataURL: base + "/metadata", ln: ln, done: make(chan struct{}),
		users: map[string]User{}, sps: map[string]*gosaml.EntityDescriptor{}, sessions: map[string]string{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: insecureTransport()}}
	quiet := logger.DefaultLogger
	p.idp = &gosaml.IdentityProvider{Key: key, Certificate: cert, Logger: quiet,
		MetadataURL: u("/metadata"), SSOURL: u("/sso"), LoginURL: u("/login"),
		SessionProvider: p, ServiceProviderProvider: p, AssertionMaker: p, ResponseWriter: p}
	p.evil = &gosaml.IdentityProvider{Key: ekey, Certificate: ecert, Logger: quiet,
		MetadataURL: u("/metadata"), SSOURL: u("/sso"), LoginURL: u("/login")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata", func(w http.ResponseWriter, r *http.Request) { p.current().ServeMetadata(w, r) })
	mux.HandleFunc("/sso", func(w http.ResponseWriter, r *http.Request) { p.current().ServeSSO(w, r) })
	mux.HandleFunc("POST /login", p.login)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		p.srv.Serve(ln)
	}()
	return p, nil
}

// Close stops the IdP and waits for it.
func (p *IdP) Close() error {
	err := p.srv.Close()
	<-p.done
	return err
}

// current is the IdP as it is now (RotateKey replaces it).
func (p *IdP) current() *gosaml.IdentityProvider {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idp
}

// RotateKey gives the IdP a new signing key and certificate, in its
// metadata too, as a key rollover does.
func (p *IdP) RotateKey() error {
	key, cert, err := keyPair("Keyway test IdP (rotated)")
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	next := &gosaml.IdentityProvider{Key: key, Certificate: cert, Logger: p.idp.Logger,
		MetadataURL: p.idp.MetadataURL, SSOURL: p.idp.SSOURL, LoginURL: p.idp.LoginURL,
		SessionProvider: p, ServiceProviderProvider: p, AssertionMaker: p, ResponseWriter: p}
	p.idp = next
	return nil
}

// SetUser adds or changes a user.
func (p *IdP) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[u.Name] = u
}

// SignInAs makes the IdP sign every request in as user name, without a
// form ("" shows the login form again).
func (p *IdP) SignInAs(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.auto = name
}

// SetMode sets how the IdP answers from now on.
func (p *IdP) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
}

// Last is the last response form the IdP sent.
func (p *IdP) Last() Form {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// RegisterSP trusts the SP whose metadata is data.
func (p *IdP) RegisterSP(data []byte) error {
	ed, err := samlsp.ParseMetadata(data)
	if err != nil {
		return fmt.Errorf("read SP metadata: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sps[ed.EntityID] = ed
	return nil
}

// FetchSPFrom makes the IdP fetch and trust the SP metadata at u the
// first time that SP (whose entity id is u) asks to sign a user in.
func (p *IdP) FetchSPFrom(u string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetchSP = u
}

// GetServiceProvider implements gosaml.ServiceProviderProvider.
func (p *IdP) GetServiceProvider(r *http.Request, id string) (*gosaml.EntityDescriptor, error) {
	p.mu.Lock()
	ed, ok := p.sps[id]
	fetch := p.fetchSP
	p.mu.Unlock()
	if ok {
		return ed, nil
	}
	if fetch == "" || id != fetch {
		return nil, os.ErrNotExist
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fetch, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if err := p.RegisterSP(data); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ed, ok = p.sps[id]; !ok {
		return nil, os.ErrNotExist
	}
	return ed, nil
}

var loginForm = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="return" value="{{.Return}}">
<label>User name <input name="user" autocomplete="username"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in to the IdP</button>
</form></body></html>`))

// GetSession implements gosaml.SessionProvider: the chosen user, or the
// user of the IdP's session cookie, or the login form.
func (p *IdP) GetSession(w http.ResponseWriter, r *http.Request, req *gosaml.IdpAuthnRequest) *gosaml.Session {
	p.mu.Lock()
	name := p.auto
	if name == "" {
		if c, err := r.Cookie("idp_session"); err == nil {
			name = p.sessions[c.Value]
		}
	}
	u, ok := p.users[name]
	p.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		loginForm.Execute(w, map[string]string{"Return": r.URL.RequestURI()})
		return nil
	}
	now := time.Now()
	return &gosaml.Session{ID: randomID(), CreateTime: now, ExpireTime: now.Add(time.Hour), Index: randomID(),
		NameID: u.Name, NameIDFormat: string(gosaml.PersistentNameIDFormat),
		UserName: u.Name, UserEmail: u.Email, UserCommonName: u.DisplayName, Groups: u.Groups}
}

func (p *IdP) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	ret := r.PostForm.Get("return")
	if ru, err := url.Parse(ret); err != nil || ru.Path != "/sso" || ru.Host != "" {
		http.Error(w, "bad return", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	u, ok := p.users[r.PostForm.Get("user")]
	ok = ok && u.Password != "" && u.Password == r.PostForm.Get("password")
	var tok string
	if ok {
		tok = randomID()
		p.sessions[tok] = u.Name
	}
	p.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		loginForm.Execute(w, map[string]string{"Return": ret, "Error": "Wrong user name or password."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "idp_session", Value: tok, Path: "/", HttpOnly: true})
	http.Redirect(w, r, ret, http.StatusSeeOther)
}

// MakeAssertion implements gosaml.AssertionMaker: the default assertion,
// tampered with as the mode says.
func (p *IdP) MakeAssertion(req *gosaml.IdpAuthnRequest, s *gosaml.Session) error {
	if err := (gosaml.DefaultAssertionMaker{}).MakeAssertion(req, s); err != nil {
		return err
	}
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	if mode == WrongIssuer {
		// Remade as another entity with the same key.
		p.mu.Lock()
		other := &gosaml.IdentityProvider{Key: p.idp.Key, Certificate: p.idp.Certificate, Logger: p.idp.Logger,
			MetadataURL: url.URL{Scheme: "https", Host: "other-idp.example", Path: "/metadata"}, SSOURL: p.idp.SSOURL}
		p.mu.Unlock()
		req.IDP = other
		if err := (gosaml.DefaultAssertionMaker{}).MakeAssertion(req, s); err != nil {
			return err
		}
	}
	a := req.Assertion
	switch mode {
	case WrongAudience:
		for i := range a.Conditions.AudienceRestrictions {
			a.Conditions.AudienceRestrictions[i].Audience = gosaml.Audience{Value: "https://another-sp.example/metadata"}
		}
	case Expired:
		past := req.Now.Add(-time.Hour)
		a.IssueInstant = past
		a.Conditions.NotBefore = past.Add(-time.Minute)
		a.Conditions.NotOnOrAfter = past.Add(time.Minute)
		for i := range a.Subject.SubjectConfirmations {
			if d := a.Subject.SubjectConfirmations[i].SubjectConfirmationData; d != nil {
				d.NotOnOrAfter = past.Add(time.Minute)
			}
		}
		for i := range a.AuthnStatements {
			a.AuthnStatements[i].AuthnInstant = past
		}
	}
	return nil
}

var postForm = template.Must(template.New("post").Parse(`<!doctype html>
<html><head><title>Continue</title></head><body>
<form method="post" action="{{.URL}}" id="SAMLResponseForm">
<input type="hidden" name="SAMLResponse" value="{{.SAMLResponse}}">
<input type="hidden" name="RelayState" value="{{.RelayState}}">
<button type="submit" id="SAMLSubmitButton">Continue</button>
</form>
<script>document.getElementById('SAMLResponseForm').submit();</script>
</body></html>`))

// WriteResponse implements gosaml.ResponseWriter: signs (or not) as the
// mode says and sends the HTTP-POST form, which submits itself.
func (p *IdP) WriteResponse(w http.ResponseWriter, req *gosaml.IdpAuthnRequest) error {
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	if req.Assertion != nil {
		switch mode {
		case WrongKey:
			req.IDP = p.evil
		case UnsignedAssertion:
			req.Assertion.Signature = nil
			req.AssertionEl = req.Assertion.Element()
		}
	}
	var real string
	if mode == WrongDestination && req.ACSEndpoint != nil {
		ep := *req.ACSEndpoint
		real, ep.Location = ep.Location, "https://elsewhere.example/acs"
		req.ACSEndpoint = &ep
	}
	form, err := req.PostBinding()
	if err != nil {
		return err
	}
	if real != "" {
		form.URL = real // posted to the SP all the same
	}
	p.mu.Lock()
	p.last = Form{URL: form.URL, SAMLResponse: form.SAMLResponse, RelayState: form.RelayState}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return postForm.Execute(w, form)
}

func keyPair(cn string) (*rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
