package sessions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/store"
)

// Session is one running session. The handler that started it relays
// Conn and calls End once when it is over.
type Session struct {
	m        *Manager
	ID       string
	Kind     Kind
	User     store.User
	Resource store.Resource
	Gateway  gateways.Gateway
	Client   clientinfo.Info
	Start    time.Time
	// Effective is what the policies allow this session.
	Effective policy.Effective
	// Posture is what the hook reported about the client.
	Posture []string
	// Conn is the gateway session, counting the bytes each way; nil for a
	// watch.
	Conn     net.Conn
	Response *wire.Response
	// Watchers get a copy of a terminal's output; nil for other kinds.
	Watchers *Watchers
	// Target is the session a watch views.
	Target *Session
	// Device is the native client's device a tcp stream came from (zero
	// for an API token), TargetAddr the host:port the stream goes to.
	Device     Device
	TargetAddr string
	// Replica is the replica of a cluster running the session, for a
	// session listed from another replica (Manager.All); "" is this one.
	// Such a session is a listing only: it has no connection.
	Replica string

	raw      net.Conn
	webToken string
	guard    *guard
	connID   int64
	// log carries the session's id and the id of the request that
	// opened it.
	log   *slog.Logger
	ended sync.Once
	// notify tells the user of a Notice; notice is the last one (its Code
	// empty for none). Both under m.mu.
	notify func(Notice)
	notice Notice
}

// countingConn counts what passes through a gateway connection: written
// is client → target, read is target → client.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.in.Add(int64(n))
	return n, err
}

// Bytes returns what went client → target (in) and target → client (out).
func (s *Session) Bytes() (in, out int64) {
	if c, ok := s.Conn.(*countingConn); ok {
		return c.in.Load(), c.out.Load()
	}
	return 0, 0
}

// details are the audit details naming the session's gateway and target.
func (s *Session) details(extra map[string]string) map[string]string {
	d := map[string]string{"session": s.ID, "gateway": s.Gateway.Name, "segment": s.Gateway.Segment,
		"target": net.JoinHostPort(s.Resource.Host, strconv.Itoa(s.Resource.Port))}
	if s.Kind == KindTCP {
		d["target"] = s.TargetAddr
	}
	if s.Device.ID != 0 {
		d["device"] = s.Device.Name
	}
	if s.Kind != KindTerminal && s.Kind != KindDesktop {
		d["kind"] = string(s.Kind)
	}
	if len(s.Posture) > 0 {
		d["posture"] = strings.Join(s.Posture, ", ")
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// Details are the audit details of the session (gateway, segment,
// target), with extra added.
func (s *Session) Details(extra map[string]string) map[string]string { return s.details(extra) }

func (s *Session) protocol() string {
	switch s.Kind {
	case KindFiles:
		return wire.ProtocolSFTP
	case KindTCP:
		return wire.ProtocolTCP
	}
	return s.Resource.Protocol
}

// logConnection opens the session's row in the connection log.
func (s *Session) logConnection() {
	id, err := s.m.Store.AddConnection(context.Background(), store.Connection{
		SessionID: s.ID, Start: s.Start, User: s.User.Name, ClientAddr: s.Client.Addr,
		Resource: s.Resource.Name, Protocol: s.protocol(), Gateway: s.Gateway.Name, Segment: s.Gateway.Segment,
		Result: "connected", Posture: s.Posture,
	})
	if err != nil {
		s.m.Logger.Error("write connection log", "session", s.ID, "err", err)
	}
	s.connID = id
}

// Touch records the user's input: an idle timeout counts from the last.
func (s *Session) Touch() {
	if s.guard != nil {
		s.guard.touch(s.m.Now())
	}
}

// SetWarn sets how the session's user is warned that it will end soon
// (an idle timeout, a maximum length).
func (s *Session) SetWarn(warn func(msg string)) {
	if s.guard != nil {
		s.guard.setWarn(warn)
	}
}

// Idle is how long the session's user has not typed or used the mouse.
func (s *Session) Idle(now time.Time) time.Duration {
	if s.guard == nil {
		return 0
	}
	return now.Sub(time.Unix(0, s.guard.lastInput.Load()))
}

// Terminate cuts the session; its relay then sees the connection end with
// code and reason (CloseCode, CloseReason), says so to the user and ends.
func (s *Session) Terminate(code, reason string) {
	if s.raw != nil && !gateways.TerminateWith(s.raw, code, reason) {
		// A connection no gateway pool opened (AddForTest) is cut all the
		// same.
		s.raw.Close()
	}
}

// Watchable reports whether the session is a terminal that admins may
// watch, here or on another replica.
func (s *Session) Watchable() bool {
	return s.Watchers != nil || (s.Replica != "" && s.Kind == KindTerminal)
}

// Entry is the session as the cluster's registry lists it.
func (s *Session) Entry() Entry {
	return Entry{ID: s.ID, Replica: s.Replica, Kind: s.Kind, UserID: s.User.ID, User: s.User.Name, ResourceID: s.Resource.ID,
		Resource: s.Resource.Name, Protocol: s.Resource.Protocol, Gateway: s.Gateway.Name, Segment: s.Gateway.Segment,
		ClientAddr: s.Client.Addr, Start: s.Start, Posture: s.Posture, Device: s.Device.Name, Target: s.TargetAddr}
}

// remoteSession is the listing of a session another replica runs.
func (m *Manager) remoteSession(e Entry) *Session {
	return &Session{m: m, ID: e.ID, Kind: e.Kind, User: store.User{ID: e.UserID, Name: e.User},
		Resource: store.Resource{ID: e.ResourceID, Name: e.Resource, Protocol: e.Protocol},
		Gateway:  gateways.Gateway{Name: e.Gateway, Segment: e.Segment}, Client: clientinfo.Info{Addr: e.ClientAddr},
		Start: e.Start, Posture: e.Posture, Device: Device{Name: e.Device}, TargetAddr: e.Target, Replica: e.Replica}
}

// CloseWrite tells the gateway that the client sends no more, and
// keeps the other way open.
func (s *Session) CloseWrite() error { return gateways.CloseWrite(s.raw) }

// CloseCode and CloseReason say why the portal cut the session, or "".
func (s *Session) CloseCode() string   { return gateways.CloseCode(s.raw) }
func (s *Session) CloseReason() string { return gateways.CloseReason(s.raw) }

// End closes the session, takes it off the running list, and audits how
// it ended: end is a short code ("browser disconnected", "remote ended",
// …), reason the words the user saw. Only the first call counts.
func (s *Session) End(end, reason string) {
	s.ended.Do(func() {
		m := s.m
		if s.raw != nil {
			s.raw.Close()
		}
		if s.Watchers != nil {
			s.Watchers.end()
		}
		if s.Kind == KindTest {
			return
		}
		if s.Kind != KindWatch {
			m.mu.Lock()
			delete(m.live, s.ID)
			m.liveChanged()
			m.mu.Unlock()
			m.unregister(s)
			if s.Kind == KindTCP {
				m.releaseStream(s.User.ID, s.Device.ID)
			} else {
				m.release(s.User.ID)
			}
		}
		now := m.Now()
		in, out := s.Bytes()
		if s.Kind != KindWatch {
			m.Metrics.SessionEnded(s.protocol(), in, out)
		}
		if s.connID != 0 {
			if err := m.Store.FinishConnection(context.Background(), s.connID, now, in, out); err != nil {
				m.Logger.Error("write connection log", "session", s.ID, "err", err)
			}
		}
		if s.Kind == KindFiles || s.Kind == KindWatch {
			return
		}
		m.record(audit.Event{Actor: s.User.Name, Action: audit.ActionSessionEnd, Target: s.Resource.Name, ClientAddr: s.Client.Addr,
			Outcome: audit.OutcomeSuccess, Reason: reason, Details: map[string]string{"session": s.ID,
				"duration": now.Sub(s.Start).Round(time.Second).String(), "end": end,
				"bytes_in": strconv.FormatInt(in, 10), "bytes_out": strconv.FormatInt(out, 10)}})
		s.logger().Info("session ended", "kind", s.Kind, "end", end)
	})
}

// logger is s.log, or for a session made without one (AddForTest) the
// manager's with the session's id.
func (s *Session) logger() *slog.Logger {
	if s.log == nil {
		return s.m.Logger.With("session", s.ID)
	}
	return s.log
}

// Get returns the running session with id, or nil.
func (m *Manager) Get(id string) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[id]
}

// Live returns the sessions running now, newest first.
func (m *Manager) Live() []*Session {
	m.mu.Lock()
	out := make([]*Session, 0, len(m.live))
	for _, s := range m.live {
		out = append(out, s)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int { return b.Start.Compare(a.Start) })
	return out
}

// All returns the sessions running on every replica of a cluster, newest
// first: Live, and the others' sessions as listings (Session.Replica set).
// Without a registry it is Live; when the registry cannot be read, the
// error is logged and this replica's sessions are returned.
func (m *Manager) All(ctx context.Context) []*Session {
	out := m.Live()
	if m.Registry == nil {
		return out
	}
	remote, err := m.Registry.Remote(ctx)
	if err != nil {
		m.Logger.Error("list the sessions of the other replicas", "err", err)
		return out
	}
	for _, e := range remote {
		out = append(out, m.remoteSession(e))
	}
	slices.SortFunc(out, func(a, b *Session) int { return b.Start.Compare(a.Start) })
	return out
}

// Find returns the session with id running here, or listed from another
// replica, or nil.
func (m *Manager) Find(ctx context.Context, id string) *Session {
	if s := m.Get(id); s != nil || m.Registry == nil {
		return s
	}
	for _, s := range m.All(ctx) {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// TerminateLocal cuts session id if it runs on this replica, for another
// replica's Terminate; the asking replica audits it.
func (m *Manager) TerminateLocal(id, code, reason string) bool {
	s := m.Get(id)
	if s == nil {
		return false
	}
	s.Terminate(code, reason)
	return true
}

// Filter picks running sessions to terminate; empty fields match all, and
// a Filter with every field empty matches none.
type Filter struct {
	ID, User, Resource, Gateway string
}

func (f Filter) empty() bool { return f == Filter{} }

func (f Filter) match(s *Session) bool {
	return (f.ID == "" || f.ID == s.ID) &&
		(f.User == "" || strings.EqualFold(f.User, s.User.Name)) &&
		(f.Resource == "" || strings.EqualFold(f.Resource, s.Resource.Name)) &&
		(f.Gateway == "" || strings.EqualFold(f.Gateway, s.Gateway.Name))
}

// CodeTerminated is the close code of a session an administrator ended.
const CodeTerminated = "terminated"

// Terminate ends the running sessions f matches, as the administrator
// actor, auditing each; it returns those it ended.
func (m *Manager) Terminate(actor string, f Filter) []*Session {
	if f.empty() {
		return nil
	}
	var ended []*Session
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	for _, s := range m.All(ctx) {
		if !f.match(s) {
			continue
		}
		reason := fmt.Sprintf("An administrator (%s) ended this session.", actor)
		if s.Replica == "" {
			s.Terminate(CodeTerminated, reason)
		} else if err := m.Registry.Terminate(ctx, s.Entry(), CodeTerminated, reason); err != nil {
			m.Logger.Error("terminate a session on another replica", "session", s.ID, "replica", s.Replica, "err", err)
			continue
		}
		m.record(audit.Event{Actor: actor, Action: audit.ActionSessionTerminate, Target: s.Resource.Name, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"session": s.ID, "user": s.User.Name, "gateway": s.Gateway.Name}})
		ended = append(ended, s)
	}
	return ended
}

// EndSignedOut ends the running sessions opened from the sign-in session
// token, which has just signed out, here and on the other replicas.
func (m *Manager) EndSignedOut(token string) {
	if token == "" {
		return
	}
	m.EndSignedOutHash(TokenHash(token))
	if m.Registry != nil {
		ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
		defer cancel()
		if err := m.Registry.SignedOut(ctx, TokenHash(token)); err != nil {
			m.Logger.Error("tell the other replicas of a sign-out", "err", err)
		}
	}
}

// EndSignedOutHash ends this replica's running sessions opened from the
// sign-in session whose token has hash tokenHash.
func (m *Manager) EndSignedOutHash(tokenHash string) {
	for _, s := range m.Live() {
		if s.webToken != "" && TokenHash(s.webToken) == tokenHash {
			s.Terminate(endSignedOut, "You signed out, so the session has ended.")
		}
	}
}

// TokenHash is how a sign-in session's token is named between replicas:
// its SHA-256, so that no token leaves the replica that holds it.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// SetWebTokenForTest says which sign-in session a session made by
// AddForTest was opened from.
func (s *Session) SetWebTokenForTest(token string) { s.webToken = token }

// AddForTest registers a running session over conn that no gateway
// opened, for tests of the handlers that relay and watch sessions; End
// takes it off.
func (m *Manager) AddForTest(id string, u store.User, res store.Resource, kind Kind, conn net.Conn) *Session {
	s := &Session{m: m, ID: id, Kind: kind, User: u, Resource: res, Start: m.Now(), raw: conn, Conn: &countingConn{Conn: conn}}
	s.guard = m.newGuard(s)
	if kind == KindTerminal {
		s.Watchers = &Watchers{}
	}
	if kind == KindTCP {
		m.acquireStream(u.ID, 0, StreamLimits{PerUser: DefaultStreamsPerUser})
	} else {
		m.acquire(u.ID)
	}
	if m.Registry != nil {
		if _, err := m.Registry.Acquire(context.Background(), s.Entry(), 0); err != nil {
			m.Logger.Error("register test session", "err", err)
		}
	}
	m.mu.Lock()
	m.live[id] = s
	m.mu.Unlock()
	return s
}
