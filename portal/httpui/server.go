// Package httpui serves the portal's web pages, its JSON API and the
// WebSocket endpoints that carry sessions to the browser.
package httpui

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/keyway-dev/keyway/gateway/logctx"
	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/exports"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/portal/identity/oidc"
	"github.com/keyway-dev/keyway/portal/identity/saml"
	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// Limits on what a client may send.
const (
	maxFormBody = 1 << 20 // form posts and API bodies
)

// Deps are the parts a Server is built from.
type Deps struct {
	Store    *store.Store
	Sessions *scs.SessionManager
	Auth     *auth.Authenticator
	Audit    *audit.Log
	Authz    *authz.Authorizer
	Gateways *gateways.Pool
	// Assets serves the bundled front end under /static/.
	Assets http.Handler
	Logger *slog.Logger
	Now    func() time.Time
	// PortalKey, PortalURL and PortalTLSKeySHA256 (the digest of the key
	// of the portal's HTTPS certificate, which renewals keep) go into the
	// config files admins download for remote gateways.
	PortalKey          string
	PortalURL          string
	PortalTLSKeySHA256 string
	// PortalTLSNextKeys are digests of keys of certificates the portal
	// will switch to, announced to gateways with the current one in their
	// signed configs, so they accept them.
	PortalTLSNextKeys []string
	// PortalIdentity holds the key behind PortalKey; it signs the configs
	// gateways pull.
	PortalIdentity *wire.Identity
	// DefaultNetworks, if set, receives the default segment's allowed
	// networks whenever gateways are synced, for the embedded gateway.
	DefaultNetworks func([]netip.Prefix)
	// RelayAddresses, if set, receives the session listeners of the
	// enrolled gateways whenever gateways are synced: the only addresses
	// the embedded gateway relays to.
	RelayAddresses func([]string)
	// Recordings holds the recording files gateways upload.
	Recordings storage.Store
	// Timeouts bound slow clients; zero fields take defaults.
	Timeouts Timeouts
	// Hook is the connection authorization hook, Policies the access
	// policies, ClientInfo what says who the client is (behind trusted
	// proxies); New makes a disabled hook, the store's policies and a
	// resolver trusting no proxy when they are nil.
	Hook       *hook.Hook
	Policies   *policy.Engine
	ClientInfo *clientinfo.Resolver
	// Exports makes video files of desktop recordings; nil where ffmpeg
	// is not installed, and the pages say so. The Server runs it until
	// Close.
	Exports *exports.Runner
	// GatewayTokenLifetime is how long gateways' access tokens live: at
	// most (and when 0) wire.MaxTokenLifetime.
	GatewayTokenLifetime time.Duration
	// ClientsDir holds the native client builds (keyway-linux-amd64, ...)
	// the Account page offers; "" or a missing directory offers none.
	ClientsDir string
	// ClientTLS is the lowest TLS version and the cipher suites of the
	// portal's calls to identity providers (OIDC, SAML metadata, LDAP);
	// the zero value is TLS 1.2 with Go's suites. The hook has its own
	// (hook.WithTLS).
	ClientTLS tlsconf.Settings
	// Metrics counts sessions, sign-ins, hook calls and recording
	// uploads; nil counts nothing.
	Metrics *metrics.Portal
	// Cluster joins the portal to the other replicas sharing its
	// database (portal/cluster); nil is a portal alone.
	Cluster Cluster
}

// Cluster is what the Server needs of the other replicas of a cluster.
type Cluster interface {
	// The running sessions of every replica.
	sessions.Registry
	// SetLocal sets the session manager that ends the sessions running
	// here that other replicas ask to end.
	SetLocal(here sessions.Local)
	// ForwardWatch carries a watch WebSocket to the replica running the
	// session, for the viewer (already authorized here) at clientAddr.
	ForwardWatch(w http.ResponseWriter, r *http.Request, replica, sessionID string, viewer int64, clientAddr string)
}

// Server is the portal's HTTP handler. Close ends the sessions it carries.
type Server struct {
	Deps
	handler http.Handler

	// ctx is the parent of every hijacked session: http.Server.Shutdown does
	// not see hijacked connections, so the Server ends them itself.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// ready caches /readyz's answer.
	ready readyCache

	// nonces are those of the gateways' recent signed requests.
	nonces *wire.NonceCache
	// tokenAlerts is, per gateway, the last access token alert logged
	// and audited, so each is written once (gateway_tokens.go).
	tokenAlertsMu sync.Mutex
	tokenAlerts   map[int64]string

	// live starts, tracks and ends the sessions.
	live *sessions.Manager

	// settingsMu orders changes of the hook and trusted proxies, so
	// that a kept secret is the one stored.
	settingsMu sync.Mutex
	// syncedSettings are the stored trusted proxies and hook SyncSettings
	// last applied.
	syncedSettings *[2]string

	// deviceLogins counts device sign-in requests per client address,
	// deviceTokens failed device code exchanges.
	deviceLogins, deviceTokens *auth.Limiter
	// clientFiles caches the SHA-256 of the native client builds.
	clientFiles clientFileCache

	// mfa holds wrong second factors and the WebAuthn relying party
	// (mfa.go; made by mfaRoutes).
	mfa *mfaState
	// oidc caches discovered OpenID providers (oidc.go).
	oidc *oidc.Cache
	// crossSitePOSTs are route patterns that other sites post to by
	// design (the SAML ACS): CrossOriginProtection lets them through, and
	// each checks its own message instead. Route functions fill it.
	crossSitePOSTs []string
	// saml runs SAML sign-ins (saml.go).
	saml *saml.Service
}

// maxGatewayNonces bounds the nonces remembered: a few minutes of
// requests from many gateways (each pulls every 10 s).
const maxGatewayNonces = 1 << 16

// New builds a Server from d.
func New(d Deps) *Server {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Hook == nil {
		d.Hook = hook.New()
	}
	if d.ClientInfo == nil {
		d.ClientInfo = clientinfo.New()
	}
	if d.Policies == nil && d.Store != nil {
		d.Policies = policy.New(d.Store)
	}
	s := &Server{Deps: d, nonces: wire.NewNonceCache(maxGatewayNonces),
		deviceLogins: auth.NewLimiter(d.Now), deviceTokens: auth.NewLimiter(d.Now)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	deps := sessions.Deps{Store: d.Store, Authz: d.Authz, Gateways: d.Gateways, Audit: d.Audit,
		Hook: d.Hook, Policies: d.Policies, Logger: d.Logger, Now: d.Now, EndpointID: s.endpointID(), Metrics: d.Metrics}
	if d.Store != nil {
		// Revoking a device, or its sign-in expiring, ends its streams.
		deps.DeviceUsable = d.Store.DeviceUsable
	}
	if d.Cluster != nil {
		deps.Registry = d.Cluster
	}
	s.live = sessions.New(deps)
	if d.Cluster != nil {
		d.Cluster.SetLocal(s.live)
	}
	s.handler = s.routes()
	if d.Gateways != nil {
		d.Gateways.SetLedger(sessionLedger{s})
		// A gateway that drains: its sessions' users are told when it
		// closes them.
		d.Gateways.SetDrainNotify(s.live.GatewayDraining)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.live.Run(s.ctx)
	}()
	if d.Exports != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			d.Exports.Run(s.ctx)
		}()
	}
	return s
}

// ServeHTTP implements http.Handler.
// Every request gets an id, sent back in X-Request-Id and put on each line
// logged with the request's context, so that one request's lines can be
// found together.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := newRequestID()
	w.Header().Set("X-Request-Id", id)
	if _, draining := s.live.Draining(); draining && r.ProtoMajor == 1 && r.Header.Get("Upgrade") == "" && r.Method != http.MethodConnect {
		// A draining portal closes each HTTP/1 connection after its
		// answer, so that a load balancer's pooled connections move to
		// ready replicas. HTTP/2 clients move at the GOAWAY of shutdown;
		// WebSocket upgrades and tunnels keep their connection.
		w.Header().Set("Connection", "close")
	}
	s.handler.ServeHTTP(w, r.WithContext(logctx.With(r.Context(), "request", id)))
}

// newRequestID returns 16 random base32 characters (80 bits): unique
// enough to find one request's lines in a day of logs.
func newRequestID() string { return rand.Text()[:16] }

// requestLogger is s.Logger with the attributes of r's context, for
// code that logs without it (a session's goroutines).
func (s *Server) requestLogger(r *http.Request) *slog.Logger {
	return logctx.Logger(r.Context(), s.Logger)
}

// Close ends every running session and video export and waits for their
// goroutines.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	s.Hook.Close()
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	mux.Handle("GET /static/", http.StripPrefix("/static/", s.Assets))
	// Browsers ask for /favicon.ico on pages that link none (downloads,
	// plain-text answers); it is the same SVG the pages link.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "favicon.svg"
		s.Assets.ServeHTTP(w, r2)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	// Probes for load balancers and Kubernetes: public, like /healthz,
	// and saying no more than which check failed.
	mux.HandleFunc("GET /livez", s.livez)
	mux.HandleFunc("GET /readyz", s.readyz)

	mux.HandleFunc("GET /signin", s.signInPage)
	mux.HandleFunc("POST /signin", s.signIn)
	mux.HandleFunc("POST /signout", s.signOut)
	mux.HandleFunc("GET /setup/{token}", s.setupPage)
	mux.HandleFunc("POST /setup/{token}", s.setup)

	signedIn := func(p string, h http.HandlerFunc) { mux.Handle(p, s.requireRole(h)) }
	admin := func(p string, h http.HandlerFunc) { mux.Handle(p, s.requireRole(h, store.RoleAdmin)) }

	signedIn("GET /{$}", s.home)
	signedIn("POST /favourites/{id}", s.favourite)
	signedIn("GET /connect/{id}", s.terminalPage)
	signedIn("GET /connect/{id}/ws", s.terminalSocket)
	signedIn("GET /connect/{id}/guac", s.desktopSocket)
	signedIn("GET /files/{id}", s.filesPage)
	signedIn("GET /files/{id}/download", s.fileDownload)
	signedIn("POST /files/{id}/upload", s.fileUpload)
	signedIn("POST /files/{id}/mkdir", s.fileMkdir)
	signedIn("POST /files/{id}/rename", s.fileRename)
	signedIn("POST /files/{id}/delete", s.fileDelete)
	signedIn("POST /files/{id}/chmod", s.fileChmod)
	signedIn("GET /account", s.accountPage)
	signedIn("POST /account/password", s.changePassword)
	signedIn("POST /account/tokens", s.createToken)
	signedIn("POST /account/tokens/{id}/revoke", s.revokeToken)
	signedIn("POST /account/devices/{id}/revoke", s.revokeMyDevice)
	signedIn("GET /device", s.devicePage)
	signedIn("POST /device/approve", s.approveDevice)
	signedIn("POST /device/deny", s.denyDevice)
	signedIn("GET /downloads/{file}", s.clientDownload)

	admin("GET /admin/users", s.usersPage)
	admin("GET /admin/users/new", s.newUserPage)
	admin("POST /admin/users", s.createUserForm)
	admin("GET /admin/users/{id}", s.editUserPage)
	admin("POST /admin/users/{id}", s.updateUserForm)
	admin("POST /admin/users/{id}/delete", s.deleteUserForm)
	admin("POST /admin/users/{id}/unlock", s.unlockUserForm)
	admin("POST /admin/users/{id}/devices/{device}/revoke", s.adminRevokeDevice)
	admin("GET /admin/groups", s.groupsPage)
	admin("POST /admin/groups", s.createGroupForm)
	admin("POST /admin/groups/{id}/delete", s.deleteGroupForm)
	admin("GET /admin/resources", s.resourcesPage)
	admin("GET /admin/resources/new", s.newResourcePage)
	admin("POST /admin/resources", s.createResourceForm)
	admin("GET /admin/resources/{id}", s.editResourcePage)
	admin("POST /admin/resources/{id}", s.updateResourceForm)
	admin("POST /admin/resources/{id}/delete", s.deleteResourceForm)
	admin("POST /admin/resources/{id}/hostkey", s.hostKeyForm)
	admin("GET /admin/grants", s.grantsPage)
	admin("POST /admin/grants", s.createGrantForm)
	admin("POST /admin/grants/{id}", s.updateGrantForm)
	admin("POST /admin/grants/{id}/delete", s.deleteGrantForm)
	admin("GET /admin/policies", s.policiesPage)
	admin("GET /admin/policies/new", s.newPolicyPage)
	admin("POST /admin/policies", s.createPolicyForm)
	admin("GET /admin/policies/{id}", s.editPolicyPage)
	admin("POST /admin/policies/{id}", s.updatePolicyForm)
	admin("POST /admin/policies/{id}/delete", s.deletePolicyForm)
	mux.Handle("GET /audit", s.requireRole(s.auditPage, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /audit.csv", s.requireRole(s.auditCSV, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /sessions", s.requireRole(s.sessionsPage, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /sessions/history", s.requireRole(s.connectionsPage, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /sessions/history.csv", s.requireRole(s.connectionsCSV, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("POST /sessions/{id}/terminate", s.requireRole(s.terminateSession, store.RoleAdmin))
	mux.Handle("POST /sessions/terminate", s.requireRole(s.terminateSessions, store.RoleAdmin))
	mux.Handle("GET /sessions/{id}/watch", s.requireRole(s.watchPage, store.RoleAdmin, store.RoleAuditor))
	mux.Handle("GET /sessions/{id}/watch/ws", s.requireRole(s.watchSocket, store.RoleAdmin, store.RoleAuditor))
	auditor := func(p string, h http.HandlerFunc) {
		mux.Handle(p, s.requireRole(h, store.RoleAdmin, store.RoleAuditor))
	}
	auditor("GET /recordings", s.recordingsPage)
	auditor("GET /recordings/{id}", s.playerPage)
	auditor("GET /recordings/{id}/file", s.recordingFile)
	auditor("GET /recordings/{id}/keyframes", s.recordingKeyFrames)
	auditor("POST /recordings/{id}/export", s.startExport)
	auditor("GET /recordings/{id}/export", s.exportStatus)
	auditor("GET /recordings/{id}/video", s.exportVideo)
	admin("GET /admin/gateways", s.gatewaysPage)
	admin("POST /admin/gateways/tunnel", s.tunnelForm)
	admin("POST /admin/segments", s.createSegmentForm)
	admin("POST /admin/segments/{id}", s.updateSegmentForm)
	admin("POST /admin/segments/{id}/delete", s.deleteSegmentForm)
	admin("GET /admin/gateways/new", s.newGatewayPage)
	admin("POST /admin/gateways", s.createGatewayForm)
	admin("GET /admin/gateways/{id}", s.gatewayPage)
	admin("POST /admin/gateways/{id}/key", s.gatewayKeyForm)
	admin("POST /admin/gateways/{id}/revoke", s.revokeGatewayForm)
	admin("POST /admin/gateways/{id}/keys/{slot}/regenerate", s.regenerateGatewayKeyForm)
	admin("POST /admin/gateways/{id}/token-slot", s.gatewayTokenSlotForm)
	admin("POST /admin/gateways/{id}/delete", s.deleteGatewayForm)
	admin("GET /admin/gateways/{id}/config", s.gatewayConfigFile)
	admin("POST /admin/resources/{id}/test", s.testResourceForm)
	admin("GET /admin/settings", s.settingsPage)
	admin("POST /admin/settings/hook", s.hookForm)
	admin("POST /admin/settings/hook/test", s.hookTestForm)
	admin("POST /admin/settings/proxies", s.proxiesForm)
	admin("POST /admin/settings/clients", s.clientsForm)
	s.identityRoutes(mux, signedIn, admin)

	mux.HandleFunc("/", s.notFound)

	api := s.apiRoutes()

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, http.StatusForbidden, "This request came from another site and was refused. Reload the page and try again.")
	}))
	for _, p := range s.crossSitePOSTs {
		cop.AddInsecureBypassPattern(p)
	}
	// Cross-origin protection guards the cookie-authenticated pages; the
	// API authenticates with bearer tokens, which browsers never attach on
	// their own, so it needs none.
	web := s.loadSession(s.loadUser(cop.Handler(mux)))

	top := http.NewServeMux()
	top.Handle("/api/", api)
	top.HandleFunc("GET /gateway-api/v1/config", s.gatewayPullConfig)
	top.HandleFunc("POST "+wire.TokenPath, s.gatewayRenewToken)
	top.HandleFunc("GET "+wire.RecordingsPath+"{session}", s.recordingStatus)
	top.HandleFunc("PUT "+wire.RecordingsPath+"{session}", s.recordingUpload)
	top.HandleFunc("PUT "+wire.RecordingsPath+"{session}"+wire.IndexSuffix, s.recordingIndexUpload)
	top.Handle("/", web)
	h := s.recoverer(securityHeaders(s.limitBody(top)))
	// A CONNECT is a native client's stream: its body is the stream, so
	// it must not be bounded like a form's, and no page route matches it.
	tunnel := s.recoverer(http.HandlerFunc(s.tunnel))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			tunnel.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// cspPolicy is the content security policy of every page. style-src
// allows inline styles because xterm.js and asciinema-player position
// their layers with them; scripts stay 'self' only.
const cspPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// securityHeaders sets the headers every response carries: a strict content
// security policy (no inline scripts anywhere), no framing, no sniffing.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", cspPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		// The platform version and full browser version go to the
		// connection authorization hook; browsers send them only when
		// asked, from the next request on (a session's socket).
		h.Set("Accept-CH", clientinfo.AcceptCH)
		next.ServeHTTP(w, r)
	})
}

// limitBody bounds request bodies: ordinary ones by size (and by the
// server's ReadTimeout), streamed uploads by how long they may pause.
func (s *Server) limitBody(next http.Handler) http.Handler {
	idle := s.Timeouts.withDefaults().UploadIdle
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Recording uploads set their own limit, from the announced size;
		// file uploads have the resource's.
		if r.Body != nil {
			if isRecordingUpload(r) || isFileUpload(r) {
				// The deadline moves now, too: the handler may check a
				// signature or open a file before its first read.
				b := &uploadBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle}
				b.moveDeadline()
				r.Body = b
			} else {
				r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.ErrorContext(r.Context(), "handler panic", "path", r.URL.Path, "panic", v)
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
