package saml

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gosaml "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/keyway-dev/keyway/portal/store"
)

// Limits on talking to the IdP and on what it says about a user.
const (
	metadataTimeout  = 10 * time.Second
	metadataCacheTTL = 10 * time.Minute
	// minMetadataAge is how old cached metadata must be before a bad
	// signature refetches it (a key rollover at the IdP).
	minMetadataAge = 30 * time.Second
	maxCachedMeta  = 64
	maxRedirects   = 3
	maxGroups      = 256
	maxValue       = 256 // a user name, display name, e-mail or group
)

// Service runs the SAML sign-ins of every provider: it holds the
// outstanding requests, the assertion replay cache and the fetched IdP
// metadata. Its state is in memory: a portal restart ends the sign-ins in
// progress, which the user starts again.
type Service struct {
	client   *http.Client
	now      func() time.Time
	requests *requests
	replay   *replayCache

	mu   sync.Mutex
	meta map[string]cachedMetadata // by metadata URL
}

type cachedMetadata struct {
	ed      *gosaml.EntityDescriptor
	fetched time.Time
}

// NewService makes a Service that fetches IdP metadata with client (nil:
// a plain client) and reads the time from now (nil: time.Now).
func NewService(client *http.Client, now func() time.Time) *Service {
	if client == nil {
		client = &http.Client{}
	}
	c := *client
	c.Timeout = metadataTimeout
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &Service{client: &c, now: now, requests: newRequests(now), replay: newReplayCache(now),
		meta: make(map[string]cachedMetadata)}
}

// Provider is a configured SAML provider as the portal reaches it.
type Provider struct {
	Name   string
	Config Config
	// Base is the portal's URL (scheme and host) as browsers and the IdP
	// reach it, without a trailing slash.
	Base string
}

// EntityID is the SP's entity id: the URL of its metadata.
func (p Provider) EntityID() string { return EntityID(p.Base, p.Name) }

// EntityID is the entity id (and metadata URL) of provider name's SP on
// the portal at base.
func EntityID(base, name string) string {
	return strings.TrimRight(base, "/") + "/saml/" + url.PathEscape(name) + "/metadata"
}

// ACSURL is where the IdP posts its answer.
func (p Provider) ACSURL() string {
	return strings.TrimRight(p.Base, "/") + "/saml/" + url.PathEscape(p.Name) + "/acs"
}

// serviceProvider is crewjam's SP for p, trusting idp (nil: for the SP
// metadata only).
func (s *Service) serviceProvider(p Provider, idp *gosaml.EntityDescriptor) (*gosaml.ServiceProvider, error) {
	key, cert, err := p.Config.keyPair()
	if err != nil {
		return nil, err
	}
	meta, err := url.Parse(p.EntityID())
	if err != nil {
		return nil, fmt.Errorf("SAML entity id: %w", err)
	}
	acs, err := url.Parse(p.ACSURL())
	if err != nil {
		return nil, fmt.Errorf("SAML ACS URL: %w", err)
	}
	return &gosaml.ServiceProvider{
		EntityID:                         p.EntityID(),
		Key:                              key,
		Certificate:                      cert,
		MetadataURL:                      *meta,
		AcsURL:                           *acs,
		IDPMetadata:                      idp,
		AssertionConsumerServiceBindings: []string{gosaml.HTTPPostBinding},
		SignatureMethod:                  dsig.RSASHA256SignatureMethod,
		// Unspecified: the IdP picks the NameID format it is set up for.
		AuthnNameIDFormat:       gosaml.UnspecifiedNameIDFormat,
		ReplayCache:             s.replay,
		RejectSHA1Signatures:    true,
		RejectUnknownConditions: true,
		// The time of this request, so a Service's clock drives it (tests).
		Clock: dsig.NewFakeClockAt(s.now()),
	}, nil
}

// SPMetadata is the SP metadata XML the IdP is given.
func (s *Service) SPMetadata(p Provider) ([]byte, error) {
	sp, err := s.serviceProvider(p, nil)
	if err != nil {
		return nil, err
	}
	b, err := xml.MarshalIndent(sp.Metadata(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode SAML SP metadata: %w", err)
	}
	return append([]byte(xml.Header), b...), nil
}

// IdPInfo is what the Test button shows about an IdP.
type IdPInfo struct {
	EntityID string
	SSOURL   string
	// CertNotAfter is when the first of its signing certificates expires.
	CertNotAfter time.Time
	Certificates int
}

// Test fetches (bypassing the cache) and checks p's IdP metadata.
func (s *Service) Test(ctx context.Context, p Provider) (IdPInfo, error) {
	ed, err := s.loadMetadata(ctx, p.Config)
	if err != nil {
		return IdPInfo{}, err
	}
	info := IdPInfo{EntityID: ed.EntityID, SSOURL: ssoURL(ed)}
	certs, _ := signingCerts(ed)
	info.Certificates = len(certs)
	for _, c := range certs {
		if info.CertNotAfter.IsZero() || c.NotAfter.Before(info.CertNotAfter) {
			info.CertNotAfter = c.NotAfter
		}
	}
	if p.Config.MetadataURL != "" {
		s.mu.Lock()
		s.cache(p.Config.MetadataURL, ed)
		s.mu.Unlock()
	}
	return info, nil
}

// ErrUnreachable: the IdP's metadata could not be fetched.
var ErrUnreachable = errors.New("the identity provider could not be reached")

// idpMetadata returns p's IdP metadata, fetched at most metadataCacheTTL ago.
func (s *Service) idpMetadata(ctx context.Context, c Config) (*gosaml.EntityDescriptor, error) {
	if c.MetadataURL == "" {
		return s.loadMetadata(ctx, c)
	}
	s.mu.Lock()
	m, ok := s.meta[c.MetadataURL]
	s.mu.Unlock()
	if ok && s.now().Sub(m.fetched) < metadataCacheTTL {
		return m.ed, nil
	}
	ed, err := s.loadMetadata(ctx, c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cache(c.MetadataURL, ed)
	s.mu.Unlock()
	return ed, nil
}

// cache keeps ed for u; s.mu is held.
func (s *Service) cache(u string, ed *gosaml.EntityDescriptor) {
	if _, ok := s.meta[u]; !ok && len(s.meta) >= maxCachedMeta {
		for k := range s.meta { // drop any: a miss only costs a fetch
			delete(s.meta, k)
			break
		}
	}
	s.meta[u] = cachedMetadata{ed: ed, fetched: s.now()}
}

// loadMetadata fetches (or reads the uploaded) IdP metadata and checks it
// names an HTTP-Redirect sign-in URL and a signing certificate.
func (s *Service) loadMetadata(ctx context.Context, c Config) (*gosaml.EntityDescriptor, error) {
	data := []byte(c.MetadataXML)
	if c.MetadataURL != "" {
		var err error
		if data, err = s.fetch(ctx, c.MetadataURL); err != nil {
			return nil, fmt.Errorf("%w: fetch its metadata from %s: %w", ErrUnreachable, c.MetadataURL, err)
		}
	}
	ed, err := ParseIdPMetadata(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadMetadata, err)
	}
	return ed, nil
}

// errBadMetadata: the IdP metadata is not usable.
var errBadMetadata = errors.New("the identity provider's metadata is not usable")

// ParseIdPMetadata reads and checks IdP metadata.
func ParseIdPMetadata(data []byte) (*gosaml.EntityDescriptor, error) {
	if len(data) > MaxMetadataXML {
		return nil, fmt.Errorf("the IdP metadata is larger than %d KiB", MaxMetadataXML>>10)
	}
	ed, err := samlsp.ParseMetadata(data)
	if err != nil {
		return nil, fmt.Errorf("read the IdP metadata: %w", err)
	}
	if len(ed.IDPSSODescriptors) == 0 {
		return nil, errors.New("the metadata does not describe an identity provider (no IDPSSODescriptor)")
	}
	if ssoURL(ed) == "" {
		return nil, errors.New("the IdP metadata has no single sign-on URL for the HTTP-Redirect binding")
	}
	certs, err := signingCerts(ed)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("the IdP metadata has no signing certificate")
	}
	return ed, nil
}

func (s *Service) fetch(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxMetadataXML+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMetadataXML {
		return nil, fmt.Errorf("larger than %d KiB", MaxMetadataXML>>10)
	}
	return b, nil
}

func ssoURL(ed *gosaml.EntityDescriptor) string {
	for _, d := range ed.IDPSSODescriptors {
		for _, sso := range d.SingleSignOnServices {
			if sso.Binding == gosaml.HTTPRedirectBinding {
				return sso.Location
			}
		}
	}
	return ""
}

func signingCerts(ed *gosaml.EntityDescriptor) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, d := range ed.IDPSSODescriptors {
		for _, kd := range d.KeyDescriptors {
			if kd.Use != "" && kd.Use != "signing" {
				continue
			}
			for _, xc := range kd.KeyInfo.X509Data.X509Certificates {
				der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(xc.Data), ""))
				if err != nil {
					return nil, fmt.Errorf("read an IdP signing certificate: %w", err)
				}
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return nil, fmt.Errorf("read an IdP signing certificate: %w", err)
				}
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// Start begins a sign-in through p for the browser at address client: it
// returns the IdP URL to send the browser to (HTTP-Redirect binding,
// signed), having recorded the request to continue at next. next must
// already be a local path.
func (s *Service) Start(ctx context.Context, p Provider, next, client string) (string, error) {
	ed, err := s.idpMetadata(ctx, p.Config)
	if err != nil {
		return "", classify(err)
	}
	sp, err := s.serviceProvider(p, ed)
	if err != nil {
		return "", err
	}
	req, err := sp.MakeAuthenticationRequest(ssoURL(ed), gosaml.HTTPRedirectBinding, gosaml.HTTPPostBinding)
	if err != nil {
		return "", fmt.Errorf("make SAML request: %w", err)
	}
	if err := s.requests.add(req.ID, p.Name, next, client); err != nil {
		return "", classify(err)
	}
	// RelayState is the request id: the ACS checks it matches the
	// InResponseTo, and next stays here, where the IdP cannot change it.
	u, err := req.Redirect(req.ID, sp)
	if err != nil {
		return "", fmt.Errorf("make SAML redirect: %w", err)
	}
	return u.String(), nil
}

// Refusal is a sign-in the ACS refused: Reason is for the audit log
// ("bad signature", "wrong audience", ...), Message for the user.
type Refusal struct {
	Reason  string
	Message string
	Err     error
}

func (r *Refusal) Error() string { return "SAML sign-in refused: " + r.Reason + ": " + r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

var (
	errUnsolicited    = errors.New("unsolicited response (no InResponseTo)")
	errUnsigned       = errors.New("the assertion is not signed")
	errUnknownRequest = errors.New("the response answers no sign-in request in progress")
	errRelayState     = errors.New("RelayState does not match InResponseTo")
)

func refuse(reason, msg string, err error) error {
	return &Refusal{Reason: reason, Message: msg, Err: err}
}

const tryAgain = " Start the sign-in again from the sign-in page."

// classify makes a Refusal of an error of the ACS's checks.
func classify(err error) error {
	var bad gosaml.ErrBadStatus
	switch {
	case errors.Is(err, errMalformed):
		return refuse("malformed response", "The identity provider's answer could not be read."+tryAgain, err)
	case errors.Is(err, errUnsolicited):
		return refuse("unsolicited response", "Sign-ins must start at Keyway's sign-in page."+tryAgain, err)
	case errors.Is(err, errUnknownRequest), errors.Is(err, gosaml.ErrRequestIDMismatch), errors.Is(err, errRelayState):
		return refuse("unknown request", "This sign-in was already used, took too long, or was not started here."+tryAgain, err)
	case errors.Is(err, gosaml.ErrAssertionReplayed):
		return refuse("replayed assertion", "This sign-in was already used."+tryAgain, err)
	case errors.Is(err, errUnsigned):
		return refuse("unsigned assertion", "The identity provider did not sign the assertion; Keyway requires signed assertions. Ask your administrator to have the IdP sign assertions.", err)
	case errors.Is(err, gosaml.ErrInvalidSignature), errors.Is(err, gosaml.ErrUntrustedCertificate), errors.Is(err, gosaml.ErrCertificateNotValidNow):
		return refuse("bad signature", "The identity provider's answer is not signed by the key Keyway trusts for it.", err)
	case errors.Is(err, gosaml.ErrAudienceMismatch):
		return refuse("wrong audience", "The identity provider's answer is meant for another service.", err)
	case errors.Is(err, gosaml.ErrDestinationMismatch):
		return refuse("wrong destination", "The identity provider's answer is meant for another address.", err)
	case errors.Is(err, gosaml.ErrIssuerMismatch):
		return refuse("wrong issuer", "The answer does not come from the configured identity provider.", err)
	case errors.Is(err, gosaml.ErrExpired), errors.Is(err, gosaml.ErrNotYetValid):
		return refuse("expired", "The identity provider's answer has expired or is not valid yet; check the clocks."+tryAgain, err)
	case errors.As(err, &bad):
		return refuse("provider refused: "+bad.Status, "The identity provider did not sign you in.", err)
	case errors.Is(err, ErrUnreachable):
		return refuse("provider unreachable", "The identity provider cannot be reached right now. Try again later, or ask your administrator.", err)
	case errors.Is(err, errBadMetadata):
		return refuse("bad provider metadata", "This identity provider is not set up correctly. Ask your administrator.", err)
	case errors.Is(err, errReplayFull), errors.Is(err, ErrBusy):
		return refuse("busy", "Too many sign-ins right now."+tryAgain, err)
	}
	return refuse("invalid response", "The identity provider's answer was refused."+tryAgain, err)
}

// Finish checks the IdP's answer at the ACS: samlResponse and relayState
// are the form fields it posted. It returns who signed in and where to
// continue, or a *Refusal.
func (s *Service) Finish(ctx context.Context, p Provider, samlResponse, relayState string) (store.ExternalLogin, string, error) {
	doc, id, err := decodeResponse(samlResponse)
	if err != nil {
		return store.ExternalLogin{}, "", classify(err)
	}
	if relayState != id {
		return store.ExternalLogin{}, "", classify(errRelayState)
	}
	if !s.requests.outstanding(id, p.Name) {
		return store.ExternalLogin{}, "", classify(errUnknownRequest)
	}
	a, err := s.parse(ctx, p, doc, id)
	if err != nil {
		var ref *Refusal
		if errors.As(err, &ref) && ref.Reason == "bad signature" && s.dropStale(p.Config) {
			// The IdP may have rolled its key over since its metadata was
			// fetched: check once more against fresh metadata.
			a, err = s.parse(ctx, p, doc, id)
		}
		if err != nil {
			return store.ExternalLogin{}, "", err
		}
	}
	// crewjam accepts an unsigned assertion in a signed response; we ask
	// for signed assertions, as the SP metadata says (a present assertion
	// signature has been checked, so a non-nil one is valid).
	if a.Signature == nil {
		return store.ExternalLogin{}, "", classify(errUnsigned)
	}
	// Used once: a second answer to the same request is refused.
	next, ok := s.requests.take(id, p.Name)
	if !ok {
		return store.ExternalLogin{}, "", classify(errUnknownRequest)
	}
	login, err := p.Config.login(a)
	if err != nil {
		return store.ExternalLogin{}, "", err
	}
	return login, next, nil
}

// parse checks the response doc to request id against p's IdP metadata.
func (s *Service) parse(ctx context.Context, p Provider, doc []byte, id string) (*gosaml.Assertion, error) {
	ed, err := s.idpMetadata(ctx, p.Config)
	if err != nil {
		return nil, classify(err)
	}
	sp, err := s.serviceProvider(p, ed)
	if err != nil {
		return nil, err
	}
	a, err := sp.ParseXMLResponse(doc, []string{id}, sp.AcsURL)
	if err != nil {
		return nil, classify(err)
	}
	return a, nil
}

// dropStale forgets c's cached IdP metadata if it was fetched over
// minMetadataAge ago, and reports whether it did: a response signed by
// an unknown key then refetches it, at most that often.
func (s *Service) dropStale(c Config) bool {
	if c.MetadataURL == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.meta[c.MetadataURL]
	if !ok || s.now().Sub(m.fetched) < minMetadataAge {
		return false
	}
	delete(s.meta, c.MetadataURL)
	return true
}

// login reads who signed in from a checked assertion.
func (c Config) login(a *gosaml.Assertion) (store.ExternalLogin, error) {
	bad := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		return refuse("missing attribute", "The identity provider's answer is missing something Keyway needs: "+err.Error()+". Ask your administrator.", err)
	}
	var in store.ExternalLogin
	if a.Subject == nil || a.Subject.NameID == nil || a.Subject.NameID.Value == "" {
		return in, bad("no NameID")
	}
	nameID := a.Subject.NameID.Value
	in.Subject = nameID
	in.Username = nameID
	if c.UsernameAttribute != "" {
		in.Username = first(a, c.UsernameAttribute)
		// A transient NameID changes at every sign-in: the stable user
		// name identifies the user instead.
		if a.Subject.NameID.Format == string(gosaml.TransientNameIDFormat) {
			in.Subject = in.Username
		}
	}
	if in.Username == "" {
		return in, bad("no user name (attribute %q)", c.UsernameAttribute)
	}
	if c.DisplayNameAttribute != "" {
		in.DisplayName = first(a, c.DisplayNameAttribute)
	}
	if c.EmailAttribute != "" {
		in.Email = first(a, c.EmailAttribute)
	}
	if c.GroupsAttribute != "" {
		in.Groups = values(a, c.GroupsAttribute)
	}
	for _, v := range append([]string{in.Subject, in.Username, in.DisplayName, in.Email}, in.Groups...) {
		if len(v) > maxValue || !printable(v) {
			return in, bad("a value longer than %d characters or not printable", maxValue)
		}
	}
	if len(in.Groups) > maxGroups {
		return in, bad("more than %d groups", maxGroups)
	}
	if len(c.AllowedDomains) > 0 && !domainAllowed(in.Email, c.AllowedDomains) {
		err := fmt.Errorf("e-mail %q is not in an allowed domain", in.Email)
		return in, refuse("e-mail domain not allowed", "Your e-mail address is not in a domain allowed to sign in here.", err)
	}
	return in, nil
}

func domainAllowed(email string, domains []string) bool {
	at := strings.LastIndexByte(email, '@')
	if at < 1 {
		return false
	}
	d := strings.ToLower(email[at+1:])
	for _, ok := range domains {
		if d == ok {
			return true
		}
	}
	return false
}

// values are the values of the attribute called name (its Name or
// FriendlyName).
func values(a *gosaml.Assertion, name string) []string {
	var out []string
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			if at.Name != name && at.FriendlyName != name {
				continue
			}
			for _, v := range at.Values {
				if !v.Nil && v.Value != "" {
					out = append(out, v.Value)
				}
			}
		}
	}
	return out
}

func first(a *gosaml.Assertion, name string) string {
	if v := values(a, name); len(v) > 0 {
		return v[0]
	}
	return ""
}
