// Package sessions starts, tracks and ends every session the portal
// carries: terminals, desktops, file browsing and watching. Starting one
// is one path, in this order: the user (already authenticated by the
// caller) → the connection authorization hook → grants → policies →
// gateway selection → dial → the live-session registry → audit and the
// connection log. A refusal at any step is a *Refusal saying why, in words
// for the user and as a code for the audit log. The HTTP handlers only
// carry what a Session gives them to and from the browser.
package sessions

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/logctx"
	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/store"
)

// Kind is what a session is for.
type Kind string

const (
	KindTerminal Kind = "terminal" // an SSH terminal
	KindDesktop  Kind = "desktop"  // an RDP or VNC desktop
	KindFiles    Kind = "files"    // SFTP file browsing, one request long
	KindWatch    Kind = "watch"    // a read-only view of another session
	// KindTest is an admin's connection test of a resource: the hook is
	// asked, grants and policies are not (admins test resources they have
	// no grant for), and it is not listed as running.
	KindTest Kind = "test"
	// KindTCP is one TCP stream of a native client (keyway tunnel, keyway
	// proxy): to a tcp resource's host and port, to a tunnel-enabled
	// SSH/RDP/VNC resource's, or to an address a network resource allows.
	KindTCP Kind = "tcp"
)

// MaxPerUser bounds one user's concurrent sessions on this portal, so a
// stolen cookie or a runaway script cannot exhaust the gateways; policies
// may set a lower number.
const MaxPerUser = 16

// Deps are what a Manager works with.
type Deps struct {
	Store    *store.Store
	Authz    *authz.Authorizer
	Gateways *gateways.Pool
	Audit    *audit.Log
	// Hook is the connection authorization hook; nil is none.
	Hook *hook.Hook
	// Policies checks the access policies; nil allows everything.
	Policies *policy.Engine
	Logger   *slog.Logger
	Now      func() time.Time
	// EndpointID names this portal to the hook.
	EndpointID string
	// DeviceUsable, if set, says whether a native client's device may
	// still be used: nil, or an error wrapping store.ErrDeviceRevoked,
	// store.ErrDeviceExpired or store.ErrNotFound (Store.DeviceUsable).
	// The guard ends the streams of a device that may not; another error
	// is taken as transient and they go on.
	DeviceUsable func(ctx context.Context, id int64) error
	// Metrics counts sessions, their connect time and bytes, and hook
	// calls; nil counts nothing.
	Metrics *metrics.Portal
	// Registry shares the running sessions with the other replicas of a
	// cluster, whose sessions then count against MaxPerUser too; nil is a
	// portal alone.
	Registry Registry
}

// Registry is where the replicas of a cluster list their running
// sessions (portal/cluster).
type Registry interface {
	// Acquire registers e as running on this replica, unless max > 0 and
	// e's user already has max counted sessions running on all replicas.
	Acquire(ctx context.Context, e Entry, max int) (ok bool, err error)
	// Release unregisters session id.
	Release(ctx context.Context, id string)
	// Count is how many counted sessions the user runs on all replicas.
	Count(ctx context.Context, userID int64) (int, error)
	// Remote lists the sessions running on the other replicas.
	Remote(ctx context.Context) ([]Entry, error)
	// Terminate asks the replica running e to end it.
	Terminate(ctx context.Context, e Entry, code, reason string) error
	// SignedOut tells the other replicas that the sign-in session whose
	// token has this hash (TokenHash) signed out.
	SignedOut(ctx context.Context, tokenHash string) error
}

// Local is what a Registry calls on this replica's Manager when another
// replica asks.
type Local interface {
	TerminateLocal(id, code, reason string) bool
	EndSignedOutHash(tokenHash string)
}

// Entry is a running session as the replicas of a cluster list it.
type Entry struct {
	ID string `json:"id"`
	// Replica runs the session; set by the registry.
	Replica    string    `json:"-"`
	Kind       Kind      `json:"kind"`
	UserID     int64     `json:"user_id"`
	User       string    `json:"user"`
	ResourceID int64     `json:"resource_id"`
	Resource   string    `json:"resource"`
	Protocol   string    `json:"protocol"`
	Gateway    string    `json:"gateway"`
	Segment    string    `json:"segment"`
	ClientAddr string    `json:"client_addr"`
	Start      time.Time `json:"start"`
	Posture    []string  `json:"posture,omitempty"`
	Device     string    `json:"device,omitempty"`
	Target     string    `json:"target,omitempty"`
}

// Counted reports whether the session counts against MaxPerUser: tunnel
// streams have limits of their own.
func (e Entry) Counted() bool { return e.Kind != KindTCP }

// Manager starts sessions and keeps those running. Run its guard with Run.
type Manager struct {
	Deps

	mu   sync.Mutex
	open map[int64]int // running sessions per user id
	// streams and deviceStreams count running tunnel streams per user
	// and per device id; they do not count against MaxPerUser.
	streams, deviceStreams map[int64]int
	live                   map[string]*Session
	// kick asks the guard for a check now.
	kick chan struct{}
	// drainDeadline, once set, refuses new sessions (Drain); changed is
	// closed and replaced whenever a session ends (WaitIdle).
	drainDeadline time.Time
	drainNotice   Notice
	changed       chan struct{}
}

// New returns a Manager built from d.
func New(d Deps) *Manager {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{Deps: d, open: map[int64]int{}, streams: map[int64]int{}, deviceStreams: map[int64]int{},
		live: map[string]*Session{}, kick: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Request asks for a new session.
type Request struct {
	// User has been authenticated by the caller.
	User store.User
	// ResourceID is the resource to connect to; WatchID, for KindWatch,
	// the running session to watch.
	ResourceID int64
	WatchID    string
	Kind       Kind
	Client     clientinfo.Info
	// WebToken is the sign-in session the request came from: signing out
	// there ends the session.
	WebToken string
	// Cols and Rows are a terminal's size in characters, or the browser
	// window's in pixels for a desktop; Indexed says the browser decodes
	// indexed images.
	Cols, Rows int
	Indexed    bool
	// Term is a terminal's type (TERM); "" is xterm-256color.
	Term string
	// Details go on the session's audit events (an admin's test names
	// what it sent).
	Details map[string]string

	// Native clients (keyway). Device is the approved device the request
	// came from (zero for a browser or an API token): revoking it ends the
	// session. Target, for KindTCP to a network resource, is the
	// "host:port" asked for; the host may be a name the gateway resolves.
	Device Device
	Target string

	// MFAAt is when the user last passed an MFA check: in the web session
	// for a browser, at the device's approval or step-up for a native
	// client, never (zero) for an API token. A resource or policy that
	// asks for step-up refuses a session whose MFAAt is older.
	MFAAt time.Time
}

// Device is a native client's approved device, as sessions know it.
type Device struct {
	ID   int64
	Name string
	// ExpiresAt is when the device's sign-in ends.
	ExpiresAt time.Time
	// MFAAt is when its user last passed an MFA check for it; the
	// tunnel passes it on as Request.MFAAt.
	MFAAt time.Time
}

// Refusal is why a session was not started.
type Refusal struct {
	// Code is machine-readable: "no_grant", "hook", "policy",
	// "too_many_sessions", "no_gateway", "gateway_unavailable", a gateway
	// error code, "internal", …
	Code string
	// Reason is recorded on the audit event: the hook's reason
	// (client-connect-failed, …), the policy rule, the gateway's words.
	Reason string
	// Message is what the user is shown.
	Message string
	// Status is the HTTP status a page answers with.
	Status  int
	Details map[string]string
}

func (r *Refusal) Error() string { return r.Message }

// Messages of refusals that must not say more than they do.
const (
	msgNoAccess = "There is no such resource, or you have no access to it."
	msgNoFiles  = "There is no such resource, or you may not browse its files."
)

// Start admits and opens a session: Admit then Open.
func (m *Manager) Start(ctx context.Context, req Request) (*Session, error) {
	a, err := m.Admit(ctx, req)
	if err != nil {
		return nil, err
	}
	return m.Open(ctx, a)
}

// Admission is a request that passed the hook, grants and policies, with
// the gateway chosen for it. Open dials it.
type Admission struct {
	req       Request
	id        string
	res       store.Resource
	gw        gateways.Gateway
	started   time.Time
	effective policy.Effective
	posture   []string
	// target is the session a watch views.
	target *Session
	// stream is where a tcp stream goes.
	stream streamTarget
	// limits bound tcp streams.
	limits StreamLimits
}

// Resource is the admitted resource.
func (a *Admission) Resource() store.Resource { return a.res }

// Effective is what the policies allow the session.
func (a *Admission) Effective() policy.Effective { return a.effective }

// Admit runs the checks of a new session in order — the hook, the user's
// grants, the policies — and chooses its gateway. A refusal is a
// *Refusal, audited and put in the connection log.
func (m *Manager) Admit(ctx context.Context, req Request) (*Admission, error) {
	a := &Admission{req: req, id: rand.Text(), started: m.Now()}
	if req.Kind == KindTest {
		a.id = "test-" + a.id[:10]
	}
	if err := m.admit(ctx, a); err != nil {
		var ref *Refusal
		if !errors.As(err, &ref) {
			m.Logger.Error("start session", "user", req.User.Name, "kind", req.Kind, "err", err)
			ref = &Refusal{Code: "internal", Reason: err.Error(), Status: http.StatusInternalServerError,
				Message: "The connection could not be opened because of an internal error."}
		}
		m.refused(a, ref)
		return nil, ref
	}
	return a, nil
}

func (m *Manager) admit(ctx context.Context, a *Admission) error {
	req := a.req
	if ref := m.refuseDraining(); ref != nil {
		// Named in the audit log; the user's words are the same either way.
		if req.Kind != KindWatch {
			if res, err := m.Store.ResourceByID(ctx, req.ResourceID); err == nil {
				a.res = res
			}
		}
		return ref
	}
	// The resource, gateway and segment go to the hook; the grant is
	// checked after it, so a missing resource is not yet a refusal the
	// user can tell from a missing grant.
	var err error
	switch req.Kind {
	case KindWatch:
		if req.User.Role != store.RoleAdmin && req.User.Role != store.RoleAuditor {
			return &Refusal{Code: "no_grant", Reason: "only admins and auditors watch sessions", Status: http.StatusNotFound, Message: "That session is not running."}
		}
		a.target = m.Get(req.WatchID)
		if a.target == nil || a.target.Watchers == nil {
			return &Refusal{Code: "not_running", Reason: "no such terminal session running", Status: http.StatusNotFound,
				Message: "That terminal session is not running (desktop sessions cannot be watched yet)."}
		}
		a.res, a.gw = a.target.Resource, a.target.Gateway
	default:
		a.res, err = m.Store.ResourceByID(ctx, req.ResourceID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// The hook is asked all the same (with no resource), so a
			// user it refuses cannot tell which resources exist from
			// which answer comes.
			if err := m.askHook(ctx, a); err != nil {
				return err
			}
			return m.noGrant(req, "no such resource")
		case err != nil:
			return fmt.Errorf("look up resource %d: %w", req.ResourceID, err)
		}
		if a.gw, err = m.Gateways.Select(a.res.Tags); err != nil {
			// Not yet a refusal: the hook and the grant come first, and a
			// user without a grant must not learn about gateways.
			a.gw = gateways.Gateway{}
		}
	}
	if err := m.askHook(ctx, a); err != nil {
		return err
	}
	if err := m.checkGrant(ctx, a); err != nil {
		return err
	}
	if req.Kind == KindTest {
		a.effective = policy.Effective{Terminal: true, Upload: true, Download: true, ClipboardIn: true, ClipboardOut: true}
	} else if err := m.checkPolicies(ctx, a); err != nil {
		return err
	}
	if err := m.checkStepUp(a); err != nil {
		return err
	}
	if req.Kind != KindWatch && a.gw.ID == "" {
		_, err := m.Gateways.Select(a.res.Tags)
		msg := "no gateway is available"
		if err != nil {
			msg = err.Error()
		}
		return &Refusal{Code: "no_gateway", Reason: msg, Status: http.StatusBadGateway, Message: capitalize(msg) + ": ask an administrator to check the gateways."}
	}
	return nil
}

// noGrant refuses without saying whether the resource exists.
func (m *Manager) noGrant(req Request, why string) *Refusal {
	msg := msgNoAccess
	if req.Kind == KindFiles {
		msg = msgNoFiles
	}
	return &Refusal{Code: "no_grant", Reason: why, Status: http.StatusNotFound, Message: msg}
}

// protocol is the session's protocol as the hook and the log name it.
func (a *Admission) protocol() string {
	switch a.req.Kind {
	case KindFiles:
		return wire.ProtocolSFTP
	case KindTCP:
		return wire.ProtocolTCP
	}
	return a.res.Protocol
}

// askHook asks the connection authorization hook, when one is set.
func (m *Manager) askHook(ctx context.Context, a *Admission) error {
	if m.Hook == nil || !m.Hook.Enabled() {
		return nil
	}
	c := a.req.Client
	res := m.Hook.Authorize(ctx, hook.Request{
		ConnectionID: a.id, EndpointID: m.EndpointID, CommonName: c.CommonName,
		Username: a.req.User.Name, Groups: nonNil(a.req.User.Groups),
		Platform: c.Platform, PlatformVersion: c.PlatformVersion, PublicIP: c.Addr, ClientVersion: c.ClientVersion,
		Resource: a.res.Name, ResourceTags: nonNil(a.res.Tags), Protocol: a.protocol(),
		Gateway: a.gw.Name, Segment: a.gw.Segment, SchemaVersion: hook.SchemaVersion,
	})
	a.posture = res.Posture
	hookOutcome := "deny"
	switch {
	case res.Allowed:
		hookOutcome = "allow"
	case res.Err != nil:
		hookOutcome = "error"
	}
	m.Metrics.Hook(hookOutcome, res.Elapsed)
	if res.Allowed {
		return nil
	}
	if res.Err != nil {
		m.Logger.Warn("connection authorization hook failed", "user", a.req.User.Name, "resource", a.res.Name, "reason", res.Reason, "err", res.Err)
	}
	return &Refusal{Code: "hook", Reason: string(res.Reason), Status: http.StatusForbidden, Message: res.Message,
		Details: map[string]string{"hook_ms": strconv.FormatInt(res.Elapsed.Milliseconds(), 10)}}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// checkGrant checks that the user may open this kind of session on the
// resource.
func (m *Manager) checkGrant(ctx context.Context, a *Admission) error {
	var err error
	switch a.req.Kind {
	case KindWatch, KindTest:
		if a.req.Kind == KindTest && a.req.User.Role != store.RoleAdmin {
			return m.noGrant(a.req, "only admins test resources")
		}
		return nil
	case KindFiles:
		_, err = m.Authz.Files(ctx, a.req.User, a.res.ID)
	default:
		_, err = m.Authz.Resource(ctx, a.req.User, a.res.ID)
	}
	switch {
	case errors.Is(err, authz.ErrDenied), errors.Is(err, store.ErrNotFound):
		return m.noGrant(a.req, "no grant for this resource")
	case err != nil:
		return err
	}
	if a.req.Kind == KindTCP {
		return m.checkTCP(a)
	}
	want := wire.ProtocolSSH
	if a.req.Kind == KindDesktop {
		want = wire.ProtocolVNC
	}
	if a.res.Protocol != want && !(a.req.Kind == KindDesktop && a.res.Protocol == wire.ProtocolRDP) {
		what := map[Kind]string{KindTerminal: "terminal", KindDesktop: "desktop", KindFiles: "SSH resource"}[a.req.Kind]
		return &Refusal{Code: "wrong_kind", Reason: "resource is " + a.res.Protocol, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("This resource is not a %s.", what)}
	}
	return nil
}

// checkPolicies applies the access policies and the per-user session cap.
func (m *Manager) checkPolicies(ctx context.Context, a *Admission) error {
	running := m.running(a.req.User.ID)
	if m.Registry != nil {
		n, err := m.Registry.Count(ctx, a.req.User.ID)
		if err != nil {
			return fmt.Errorf("count the user's sessions on every replica: %w", err)
		}
		running = n
	}
	if a.req.Kind == KindTCP {
		// Streams have limits of their own, checked here so that the
		// excess is refused before a gateway is asked; Open counts.
		a.limits = m.StreamLimits(ctx)
		m.mu.Lock()
		user, device := m.streams[a.req.User.ID], m.deviceStreams[a.req.Device.ID]
		m.mu.Unlock()
		if user >= a.limits.PerUser || (a.req.Device.ID != 0 && device >= a.limits.PerDevice) {
			return tooManyStreams(a.req.Device.ID, a.limits, user, device)
		}
	} else if a.req.Kind != KindWatch && running >= MaxPerUser {
		return &Refusal{Code: "too_many_sessions", Reason: fmt.Sprintf("%d sessions running", running), Status: http.StatusTooManyRequests,
			Message: fmt.Sprintf("You already have %d sessions open. Close one and try again.", MaxPerUser)}
	}
	if m.Policies == nil {
		a.effective = policy.Effective{Terminal: true, Upload: true, Download: true, ClipboardIn: true, ClipboardOut: true}
		return nil
	}
	addr, _ := netip.ParseAddr(a.req.Client.Addr)
	eff, err := m.Policies.Check(ctx, policy.Input{User: a.req.User, Resource: a.res, Kind: string(a.req.Kind),
		ClientAddr: addr.Unmap(), Now: m.Now(), Running: running})
	var ref *policy.Refusal
	if errors.As(err, &ref) {
		return &Refusal{Code: "policy", Reason: ref.Message, Status: http.StatusForbidden, Message: ref.Message,
			Details: map[string]string{"policy": ref.Policy, "rule": ref.Rule}}
	}
	if err != nil {
		return fmt.Errorf("check policies: %w", err)
	}
	a.effective = eff
	return nil
}

// running counts the user's sessions running now.
func (m *Manager) running(userID int64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open[userID]
}

// metricCodes are the refusal codes a metric label may take: the
// portal's and the wire's. A gateway may send any code; one not listed is
// counted as "other", so that a broken or hostile gateway cannot grow the
// metrics without bound.
var metricCodes = map[string]bool{
	"bad_target": true, "hook": true, "internal": true, "no_gateway": true, "no_grant": true, "no_tunnel": true,
	"not_allowed": true, "not_running": true, "policy": true, "too_many_sessions": true, "too_many_streams": true,
	"wrong_kind": true, "gateway_unavailable": true,
	string(wire.CodeBadRequest): true, string(wire.CodeUnsupported): true, string(wire.CodeUnreachable): true,
	string(wire.CodeRefused): true, string(wire.CodeTimeout): true, string(wire.CodeAuthFailed): true,
	string(wire.CodeHostKeyMismatch): true, string(wire.CodeForbiddenTarget): true, string(wire.CodeGatewayDown): true,
	string(wire.CodeRecordingUnavailable): true, CodeDraining: true, string(wire.CodeDraining): true,
}

func metricCode(code string) string {
	if metricCodes[code] {
		return code
	}
	return "other"
}

// refused audits and logs a refusal.
func (m *Manager) refused(a *Admission, ref *Refusal) {
	if a.req.Kind != KindTest {
		m.Metrics.SessionRefused(cmp.Or(a.protocol(), "unknown"), metricCode(ref.Code))
	}
	details := map[string]string{"session": a.id, "kind": string(a.req.Kind), "code": ref.Code}
	maps.Copy(details, a.req.Details)
	for k, v := range ref.Details {
		details[k] = v
	}
	if a.gw.Name != "" {
		details["gateway"] = a.gw.Name
	}
	if len(a.posture) > 0 {
		details["posture"] = strings.Join(a.posture, ", ")
	}
	target := a.res.Name
	if target == "" {
		target = "resource " + strconv.FormatInt(a.req.ResourceID, 10)
	}
	outcome := audit.OutcomeDenied
	result := "refused"
	switch ref.Code {
	case "hook", "no_grant", "policy", "too_many_sessions", "wrong_kind", "too_many_streams", "not_allowed", "no_tunnel", "bad_target", CodeDraining,
		CodeStepUp:
	default:
		outcome, result = audit.OutcomeFailure, "failed"
	}
	reason := ref.Reason
	if ref.Code != "hook" && ref.Code != "policy" {
		// Dial failures and the rest audit the words the user saw, as
		// before; the code is in the details.
		reason = ref.Message
	}
	action := audit.ActionConnect
	if a.req.Kind == KindTest {
		action = audit.ActionResourceTest
	}
	if a.req.Kind == KindTCP {
		if a.req.Device.ID != 0 {
			details["device"] = a.req.Device.Name
		}
		if a.req.Target != "" {
			details["target"] = truncate(a.req.Target, maxTarget)
		}
	}
	m.record(audit.Event{Actor: a.req.User.Name, Action: action, Target: target, ClientAddr: a.req.Client.Addr,
		Outcome: outcome, Reason: reason, Details: details})
	if a.req.Kind == KindTest {
		return
	}
	logReason := ref.Code
	if ref.Code == "hook" || ref.Code == "policy" {
		logReason = ref.Reason
		if ref.Code == "policy" {
			logReason = "policy: " + ref.Reason
		}
	}
	now := m.Now()
	if _, err := m.Store.AddConnection(context.Background(), store.Connection{
		SessionID: a.id, Start: a.started, User: a.req.User.Name, ClientAddr: a.req.Client.Addr,
		Resource: a.res.Name, Protocol: a.protocol(), Gateway: a.gw.Name, Segment: a.gw.Segment,
		Result: result, Reason: logReason, Message: ref.Message, Posture: a.posture, End: now,
	}); err != nil {
		m.Logger.Error("write connection log", "err", err)
	}
}

func (m *Manager) record(ev audit.Event) {
	if m.Audit == nil {
		return
	}
	if err := m.Audit.Record(context.Background(), ev); err != nil {
		m.Logger.Error("write audit event", "action", ev.Action, "err", err)
	}
}

// Open dials an admitted session through its gateway and registers it as
// running (a test is not registered). Close the session with End.
func (m *Manager) Open(ctx context.Context, a *Admission) (*Session, error) {
	s := &Session{m: m, ID: a.id, Kind: a.req.Kind, User: a.req.User, Resource: a.res, Gateway: a.gw,
		Client: a.req.Client, Effective: a.effective, Posture: a.posture, Start: m.Now(), webToken: a.req.WebToken,
		Device: a.req.Device, log: logctx.Logger(ctx, m.Logger).With("session", a.id)}
	if a.req.Kind == KindTCP {
		s.TargetAddr = a.stream.String()
	}
	if a.req.Kind == KindWatch {
		s.Target = a.target
		s.logConnection()
		m.record(audit.Event{Actor: s.User.Name, Action: audit.ActionSessionWatch, Target: s.Resource.Name, ClientAddr: s.Client.Addr,
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"session": a.target.ID, "user": a.target.User.Name}})
		return s, nil
	}
	if ref := m.refuseDraining(); ref != nil {
		// Admitted just before the drain began.
		m.refused(a, ref)
		return nil, ref
	}
	if a.req.Kind == KindTCP {
		if !m.acquireStream(a.req.User.ID, a.req.Device.ID, a.limits) {
			m.mu.Lock()
			user, device := m.streams[a.req.User.ID], m.deviceStreams[a.req.Device.ID]
			m.mu.Unlock()
			ref := tooManyStreams(a.req.Device.ID, a.limits, user, device)
			m.refused(a, ref)
			return nil, ref
		}
	} else if a.req.Kind != KindTest {
		if !m.acquire(a.req.User.ID) {
			ref := &Refusal{Code: "too_many_sessions", Status: http.StatusTooManyRequests,
				Message: fmt.Sprintf("You already have %d sessions open. Close one and try again.", MaxPerUser)}
			m.refused(a, ref)
			return nil, ref
		}
	}
	if err := m.register(ctx, a, s); err != nil {
		var ref *Refusal
		if !errors.As(err, &ref) {
			m.Logger.Error("register session with the cluster", "session", a.id, "err", err)
			ref = &Refusal{Code: "internal", Status: http.StatusInternalServerError,
				Message: "The connection could not be opened because of an internal error."}
		}
		m.refused(a, ref)
		return nil, ref
	}
	conn, resp, err := m.dial(ctx, a)
	// A gateway that drains refuses new sessions: another available one
	// of the segment takes it, as selection would have chosen had the
	// health check already seen the drain.
	for tries := 0; gatewayDraining(err) && tries < maxRedial; tries++ {
		m.Gateways.MarkDraining(a.gw.ID, err.Error())
		gw, serr := m.Gateways.Select(a.res.Tags)
		if serr != nil || gw.ID == a.gw.ID {
			break
		}
		s.log.Info("gateway drains; trying another of the segment", "gateway", a.gw.Name, "next", gw.Name)
		a.gw, s.Gateway = gw, gw
		conn, resp, err = m.dial(ctx, a)
	}
	if err != nil {
		switch a.req.Kind {
		case KindTCP:
			m.releaseStream(a.req.User.ID, a.req.Device.ID)
		case KindTest:
		default:
			m.release(a.req.User.ID)
		}
		m.unregister(s)
		var ref *Refusal
		if errors.As(err, &ref) {
			ref.Details = s.details(ref.Details)
			m.refused(a, ref)
		}
		return nil, err
	}
	s.raw = conn
	s.Conn = &countingConn{Conn: conn}
	s.Response = resp
	details := s.details(nil)
	if a.res.HostKey == "" && resp.HostKey != "" {
		details["host_key_pinned"] = resp.HostKeyFingerprint
	}
	if a.req.Kind == KindTest {
		return s, nil
	}
	// Admission to the gateway's answer: the user's wait that the
	// portal and the gateway are answerable for.
	m.Metrics.SessionOpened(s.protocol(), m.Now().Sub(a.started))
	s.guard = m.newGuard(s)
	if s.Kind == KindTerminal {
		s.Watchers = &Watchers{}
	}
	m.mu.Lock()
	m.live[s.ID] = s
	if !m.drainDeadline.IsZero() && s.notice.Code == "" {
		// Dialled while the drain began: told when its page subscribes.
		s.notice = m.drainNotice
	}
	m.mu.Unlock()
	s.logConnection()
	if s.Kind != KindFiles {
		// File operations are audited one by one instead.
		m.record(audit.Event{Actor: s.User.Name, Action: audit.ActionConnect, Target: s.Resource.Name, ClientAddr: s.Client.Addr,
			Outcome: audit.OutcomeSuccess, Details: details})
	}
	s.log.Info("session started", "kind", s.Kind, "user", s.User.Name, "resource", s.Resource.Name,
		"gateway", s.Gateway.Name, "segment", s.Gateway.Segment)
	return s, nil
}

// register puts an opening session into the cluster's registry, checking
// the user's cap on all replicas; without a registry it does nothing. A
// registry's failure undoes the local count.
func (m *Manager) register(ctx context.Context, a *Admission, s *Session) error {
	if m.Registry == nil || a.req.Kind == KindTest {
		return nil
	}
	e := s.Entry()
	ok, err := m.Registry.Acquire(ctx, e, MaxPerUser)
	if err == nil && ok {
		return nil
	}
	if a.req.Kind == KindTCP {
		m.releaseStream(a.req.User.ID, a.req.Device.ID)
	} else {
		m.release(a.req.User.ID)
	}
	if err != nil {
		return err
	}
	return &Refusal{Code: "too_many_sessions", Reason: "at the cap on all replicas", Status: http.StatusTooManyRequests,
		Message: fmt.Sprintf("You already have %d sessions open. Close one and try again.", MaxPerUser)}
}

// unregister takes a session out of the cluster's registry.
func (m *Manager) unregister(s *Session) {
	if m.Registry == nil || s.Kind == KindTest || s.Kind == KindWatch || s.Replica != "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	m.Registry.Release(ctx, s.ID)
}

// registryTimeout bounds a registry call made without a request's
// context (a session's end, a terminate).
const registryTimeout = 5 * time.Second

func (m *Manager) acquire(userID int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open[userID] >= MaxPerUser {
		return false
	}
	m.open[userID]++
	return true
}

func (m *Manager) release(userID int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open[userID]--; m.open[userID] <= 0 {
		delete(m.open, userID)
	}
}

// maxRedial bounds the other gateways tried when the chosen one drains.
const maxRedial = 3

// gatewayDraining reports whether err is a gateway's refusal because it
// drains.
func gatewayDraining(err error) bool {
	var ref *Refusal
	return errors.As(err, &ref) && ref.Code == string(wire.CodeDraining)
}

// dial opens the gateway session of an admission, pinning the host key on
// first use and keeping a changed one for an admin to accept.
func (m *Manager) dial(ctx context.Context, a *Admission) (net.Conn, *wire.Response, error) {
	res := a.res
	log := m.Logger.With("session", a.id, "user", a.req.User.Name, "resource", res.Name)
	if a.protocol() == wire.ProtocolTCP {
		// A raw stream: no credentials, no host key, no recording. An
		// admin's test of a tcp resource dials its address.
		if a.stream.host == "" {
			a.stream = streamTarget{host: res.Host, port: res.Port}
		}
		return m.openGateway(ctx, a, &wire.Request{
			Kind: wire.KindSession, Protocol: wire.ProtocolTCP, SessionID: a.id,
			User: a.req.User.Name, ClientAddr: a.req.Client.Addr, Resource: res.Name,
			Target: wire.Target{Host: a.stream.host, Port: a.stream.port}, Allow: a.stream.allow,
		})
	}
	secrets, err := m.Store.ResourceSecrets(ctx, res.ID)
	if err != nil {
		log.Error("read resource credentials", "err", err)
		return nil, nil, &Refusal{Code: "internal", Status: http.StatusInternalServerError,
			Message: "The portal could not read the credentials of this resource. An administrator should check the portal log."}
	}
	req := &wire.Request{
		Kind: wire.KindSession, Protocol: a.protocol(), SessionID: a.id,
		User: a.req.User.Name, ClientAddr: a.req.Client.Addr, Resource: res.Name,
		Target:      wire.Target{Host: res.Host, Port: res.Port},
		Credentials: wire.Credentials{Username: res.Login, Password: wire.Secret(secrets.Password), PrivateKey: wire.Secret(secrets.PrivateKey)},
		HostKey:     res.HostKey,
		Recording:   Recording(res.Options),
	}
	switch req.Protocol {
	case wire.ProtocolSSH:
		req.Terminal = &wire.Terminal{Term: cmp.Or(a.req.Term, "xterm-256color"), Cols: a.req.Cols, Rows: a.req.Rows}
	case wire.ProtocolSFTP:
		// File sessions are not recorded: each file operation is audited
		// instead.
		req.Recording = nil
	default:
		req.Desktop = DesktopRequest(res.Options, res.Protocol, a.req.Cols, a.req.Rows, a.req.Indexed)
		req.Desktop.NoClipboardIn = req.Desktop.NoClipboardIn || !a.effective.ClipboardIn
		req.Desktop.NoClipboardOut = req.Desktop.NoClipboardOut || !a.effective.ClipboardOut
	}
	return m.openGateway(ctx, a, req)
}

// openGateway asks the gateway for the session req, and turns a failure into a
// refusal.
func (m *Manager) openGateway(ctx context.Context, a *Admission, req *wire.Request) (net.Conn, *wire.Response, error) {
	res, gw := a.res, a.gw
	log := m.Logger.With("session", a.id, "user", a.req.User.Name, "resource", res.Name)
	conn, resp, err := m.Gateways.Open(ctx, gw, req)
	if err == nil {
		if res.HostKey == "" && resp.HostKey != "" {
			if err := m.Store.PinHostKey(ctx, res.ID, resp.HostKey); err != nil {
				log.Error("pin host key", "err", err)
			}
		}
		return conn, resp, nil
	}
	ref := &Refusal{Status: http.StatusBadGateway, Details: map[string]string{}}
	var werr *wire.Error
	var unavailable *gateways.UnavailableError
	switch {
	case errors.As(err, &werr):
		if werr.Code == wire.CodeHostKeyMismatch && resp != nil && resp.HostKey != "" {
			if err := m.Store.SetSetting(ctx, OfferedKeySetting(res.ID), resp.HostKey); err != nil {
				log.Error("keep offered host key", "err", err)
			}
			ref.Details["offered_host_key"] = resp.HostKeyFingerprint
		}
		ref.Code, ref.Message = string(werr.Code), werr.Message
	case errors.As(err, &unavailable):
		log.Error("gateway unavailable", "gateway", gw.Name, "err", err)
		ref.Code = "gateway_unavailable"
		ref.Message = fmt.Sprintf("The gateway %s could not be reached, so the connection to %s was not opened. Try again, or ask an administrator to check the gateway.", gw.Name, res.Name)
		ref.Details["error"] = unavailable.Err.Error()
	default:
		log.Error("open session", "err", err)
		ref.Code, ref.Message = "internal", "The connection could not be opened because of an internal error."
		ref.Status = http.StatusInternalServerError
	}
	return nil, resp, ref
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// ID is the id the session will have.
func (a *Admission) ID() string { return a.id }
