// Package opserver is a small OpenID provider for tests, built on
// github.com/zitadel/oidc/v3's OP: one client, users read from a JSON file
// at every sign-in and token (so a test can change a user's groups at the
// provider), a plain login form, a groups claim and RP-initiated logout.
// Its state is in memory. It is a test tool: never run it for real users.
package opserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is one user of the users file.
type User struct {
	ID       string   `json:"id"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	Name     string   `json:"name"`
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
}

// Config is the provider's one client and its users.
type Config struct {
	// Issuer is the provider's URL, e.g. http://127.0.0.1:PORT.
	Issuer string
	// UsersFile is a JSON array of User, re-read at every use.
	UsersFile                         string
	ClientID, ClientSecret            string
	RedirectURIs, PostLogoutRedirects []string
	// GroupsClaim names the claim carrying groups (default "groups").
	GroupsClaim string
}

// Server is the provider: an http.Handler.
type Server struct {
	http.Handler
	cfg     Config
	storage *storage
	// Logouts counts sessions ended through the end_session endpoint.
	Logouts atomic.Int64
}

// New builds the provider.
func New(cfg Config) (*Server, error) {
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg}
	s.storage = &storage{srv: s, key: key, keyID: randomID(), requests: map[string]*authRequest{},
		codes: map[string]string{}, tokens: map[string]*token{}}
	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	provider, err := op.NewProvider(&op.Config{CryptoKey: cryptoKey, CodeMethodS256: true, AuthMethodPost: true,
		DefaultLogoutRedirectURI: "/logged-out", SupportedScopes: []string{"openid", "profile", "email", "groups"}},
		s.storage, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("make the OpenID provider: %w", err)
	}
	s.storage.callbackURL = op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "You are signed out of the test provider.")
	})
	mux.Handle("/", provider)
	s.Handler = mux
	return s, nil
}

// SigningKey is the key the provider signs tokens with, and its id, so a
// test can forge tokens the portal must judge on their claims alone.
func (s *Server) SigningKey() (*rsa.PrivateKey, string) { return s.storage.key, s.storage.keyID }

// users reads the users file.
func (s *Server) users() ([]User, error) {
	b, err := os.ReadFile(s.cfg.UsersFile)
	if err != nil {
		return nil, err
	}
	var us []User
	if err := json.Unmarshal(b, &us); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.cfg.UsersFile, err)
	}
	return us, nil
}

func (s *Server) user(match func(User) bool) (User, error) {
	us, err := s.users()
	if err != nil {
		return User{}, err
	}
	for _, u := range us {
		if match(u) {
			return u, nil
		}
	}
	return User{}, errors.New("no such user")
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Test provider sign-in</title></head><body>
<h1>Test provider</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form></body></html>`))

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	loginTmpl.Execute(w, map[string]string{"ID": r.URL.Query().Get("authRequestID")})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	name, pw := r.PostFormValue("username"), r.PostFormValue("password")
	u, err := s.user(func(u User) bool { return u.Username == name })
	if err != nil || sha256.Sum256([]byte(pw)) != sha256.Sum256([]byte(u.Password)) {
		w.WriteHeader(http.StatusUnauthorized)
		loginTmpl.Execute(w, map[string]string{"ID": id, "Error": "Wrong username or password."})
		return
	}
	if err := s.storage.complete(id, u.ID); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, s.storage.callbackURL(r.Context(), id), http.StatusFound)
}

// storage implements op.Storage in memory.
type storage struct {
	srv         *Server
	key         *rsa.PrivateKey
	keyID       string
	callbackURL func(context.Context, string) string

	mu       sync.Mutex
	requests map[string]*authRequest // by id
	codes    map[string]string       // code → request id
	tokens   map[string]*token       // access token id → token
}

type authRequest struct {
	id       string
	req      oidc.AuthRequest
	subject  string
	authTime time.Time
	done     bool
}

func (a *authRequest) GetID() string                      { return a.id }
func (a *authRequest) GetACR() string                     { return "" }
func (a *authRequest) GetAMR() []string                   { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string              { return []string{a.req.ClientID} }
func (a *authRequest) GetAuthTime() time.Time             { return a.authTime }
func (a *authRequest) GetClientID() string                { return a.req.ClientID }
func (a *authRequest) GetNonce() string                   { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.req.Scopes }
func (a *authRequest) GetState() string                   { return a.req.State }
func (a *authRequest) GetSubject() string                 { return a.subject }
func (a *authRequest) Done() bool                         { return a.done }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}

type token struct {
	subject, clientID string
	scopes            []string
	expires           time.Time
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

type notFound struct{ what string }

func (e notFound) Error() string { return e.what + " not found" }
func (notFound) IsNotFound()     {}

func (st *storage) complete(id, subject string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.requests[id]
	if !ok {
		return notFound{"sign-in request"}
	}
	a.subject, a.authTime, a.done = subject, time.Now(), true
	return nil
}

func (st *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	a := &authRequest{id: randomID(), req: *req}
	st.requests[a.id] = a
	return a, nil
}

func (st *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if a, ok := st.requests[id]; ok {
		return a, nil
	}
	return nil, notFound{"sign-in request"}
}

func (st *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if a, ok := st.requests[st.codes[code]]; ok {
		return a, nil
	}
	return nil, notFound{"code"}
}

func (st *storage) SaveAuthCode(_ context.Context, id, code string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.codes[code] = id
	return nil
}

func (st *storage) DeleteAuthRequest(_ context.Context, id string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.requests, id)
	for c, rid := range st.codes {
		if rid == id {
			delete(st.codes, c)
		}
	}
	return nil
}

func (st *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	t := &token{subject: req.GetSubject(), scopes: req.GetScopes(), expires: time.Now().Add(5 * time.Minute)}
	if a, ok := req.(op.AuthRequest); ok {
		t.clientID = a.GetClientID()
	}
	id := randomID()
	st.tokens[id] = t
	return id, t.expires, nil
}

func (st *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not supported")
}

func (st *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (st *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	st.srv.Logouts.Add(1)
	return nil
}

func (st *storage) RevokeToken(_ context.Context, id, _, _ string) *oidc.Error {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.tokens, id)
	return nil
}

func (st *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

type signingKey struct{ st *storage }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.st.key }
func (k signingKey) ID() string                                  { return k.st.keyID }

type publicKey struct{ st *storage }

func (k publicKey) ID() string                         { return k.st.keyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.st.key.PublicKey }

func (st *storage) SigningKey(context.Context) (op.SigningKey, error) { return signingKey{st}, nil }
func (st *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (st *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{st}}, nil }

func (st *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != st.srv.cfg.ClientID {
		return nil, notFound{"client"}
	}
	return client{st.srv.cfg}, nil
}

func (st *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c := st.srv.cfg
	if id != c.ClientID || sha256.Sum256([]byte(secret)) != sha256.Sum256([]byte(c.ClientSecret)) {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (st *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's user claims.
func (st *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return st.userinfo(ui, req.GetSubject(), scopes)
}

func (st *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, subject, _ string) error {
	st.mu.Lock()
	t, ok := st.tokens[tokenID]
	st.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return errors.New("access token expired or unknown")
	}
	return st.userinfo(ui, t.subject, t.scopes)
}

func (st *storage) userinfo(ui *oidc.UserInfo, subject string, scopes []string) error {
	u, err := st.srv.user(func(u User) bool { return u.ID == subject })
	if err != nil {
		return err
	}
	ui.Subject = u.ID
	if slices.Contains(scopes, oidc.ScopeProfile) {
		ui.PreferredUsername, ui.Name = u.Username, u.Name
	}
	if slices.Contains(scopes, oidc.ScopeEmail) {
		ui.Email, ui.EmailVerified = u.Email, true
	}
	if slices.Contains(scopes, "groups") {
		ui.AppendClaims(st.srv.cfg.GroupsClaim, u.Groups)
	}
	return nil
}

func (st *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported")
}

func (st *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (st *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile is not supported")
}

func (st *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile is not supported")
}

func (st *storage) Health(context.Context) error { return nil }

// client is the provider's one client, a confidential web application.
type client struct{ cfg Config }

func (c client) GetID() string                       { return c.cfg.ClientID }
func (c client) RedirectURIs() []string              { return c.cfg.RedirectURIs }
func (c client) PostLogoutRedirectURIs() []string    { return c.cfg.PostLogoutRedirects }
func (c client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c client) GrantTypes() []oidc.GrantType         { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c client) LoginURL(id string) string            { return "/login?authRequestID=" + id }
func (c client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c client) IDTokenLifetime() time.Duration       { return 5 * time.Minute }
func (c client) DevMode() bool                        { return true } // http redirect URIs on loopback
func (c client) IsScopeAllowed(scope string) bool     { return scope == "groups" }
func (c client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c client) ClockSkew() time.Duration             { return 0 }
func (c client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
