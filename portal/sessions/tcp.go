package sessions

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/store"
)

// Defaults of the stream limits, the store's (Settings → Native clients).
var (
	DefaultStreamsPerDevice = store.DefaultClientLimits.StreamsPerDevice
	DefaultStreamsPerUser   = store.DefaultClientLimits.StreamsPerUser
)

const (
	// maxTarget bounds a requested "host:port": a DNS name of 253
	// characters, a colon and a port.
	maxTarget = 253 + 6
)

// StreamLimits are how many tunnel streams one device and one user may
// have open at once.
type StreamLimits struct{ PerDevice, PerUser int }

// StreamLimits reads the limits from the settings, taking the defaults
// where a setting is unset or unreadable.
func (m *Manager) StreamLimits(ctx context.Context) StreamLimits {
	l, err := m.Store.ClientLimits(ctx)
	if err != nil {
		m.Logger.Error("read stream limits", "err", err)
	}
	return StreamLimits{PerDevice: l.StreamsPerDevice, PerUser: l.StreamsPerUser}
}

// streamTarget is where a tcp stream goes: the resource's own host and
// port, or, for a network resource, the host and port asked for.
type streamTarget struct {
	host string
	port int
	// addr is host parsed as an IP address; invalid for a name.
	addr netip.Addr
	// allow are a network resource's rules.
	allow wire.NetRules
}

func (t streamTarget) String() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

// ParseTarget reads a "host:port" a native client asks for: the host a
// DNS name or an IP address, the port 1 to 65535. The error is in words
// for the user.
func ParseTarget(s string) (host string, port int, addr netip.Addr, err error) {
	if len(s) > maxTarget {
		return "", 0, netip.Addr{}, fmt.Errorf("the target is longer than %d characters", maxTarget)
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, netip.Addr{}, fmt.Errorf("the target %q is not host:port", s)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, netip.Addr{}, fmt.Errorf("the port of %q is not a number from 1 to 65535", s)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", 0, netip.Addr{}, fmt.Errorf("the address %s has a zone, which the gateway cannot use", h)
		}
		return a.Unmap().String(), port, a.Unmap(), nil
	}
	if !validHostname(h) {
		return "", 0, netip.Addr{}, fmt.Errorf("%q is neither an IP address nor a host name", h)
	}
	return strings.ToLower(h), port, netip.Addr{}, nil
}

// validHostname reports whether h is a DNS name: labels of letters,
// digits, '-' and '_' of 1 to 63 characters, 253 in all.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// checkTCP is the grant check of a tcp stream, after the user's grant on
// the resource: what the resource lets native clients reach, and where.
func (m *Manager) checkTCP(a *Admission) error {
	res := a.res
	switch res.Protocol {
	case store.ProtocolTCP:
		a.stream = streamTarget{host: res.Host, port: res.Port}
	case wire.ProtocolSSH, wire.ProtocolRDP, wire.ProtocolVNC:
		if !res.Options.Tunnel {
			return &Refusal{Code: "no_tunnel", Reason: "tunnels not enabled on this resource", Status: http.StatusForbidden,
				Message: fmt.Sprintf("Native clients may not tunnel to %s: an administrator can allow it in the resource's settings.", res.Name)}
		}
		a.stream = streamTarget{host: res.Host, port: res.Port}
	case store.ProtocolNetwork:
		rules, err := wire.ParseNetRules(res.Options.Networks)
		if err != nil || len(rules) == 0 {
			return &Refusal{Code: "not_allowed", Reason: "network resource without valid rules", Status: http.StatusForbidden,
				Message: fmt.Sprintf("The network %s allows no address: an administrator should check its rules.", res.Name)}
		}
		host, port, addr, err := ParseTarget(a.req.Target)
		if a.req.Target == "" {
			err = errors.New("no target address was given")
		}
		if err != nil {
			return &Refusal{Code: "bad_target", Reason: err.Error(), Status: http.StatusBadRequest, Message: capitalize(err.Error()) + "."}
		}
		t := streamTarget{host: host, port: port, addr: addr, allow: rules}
		if (addr.IsValid() && !rules.Allows(addr, port)) || (!addr.IsValid() && !rules.AllowsPort(port)) {
			return &Refusal{Code: "not_allowed", Reason: t.String() + " outside the network's rules", Status: http.StatusForbidden,
				Message: fmt.Sprintf("The network %s does not allow %s (port %d).", res.Name, host, port)}
		}
		a.stream = t
		return nil
	default:
		return &Refusal{Code: "wrong_kind", Reason: "resource is " + res.Protocol, Status: http.StatusBadRequest,
			Message: "Native clients cannot tunnel to this resource."}
	}
	if a.req.Target != "" {
		return &Refusal{Code: "bad_target", Reason: "target given for a resource with its own address", Status: http.StatusBadRequest,
			Message: fmt.Sprintf("%s has its own address; ask for the resource without one.", res.Name)}
	}
	return nil
}

// StartNetwork opens a tcp stream to req.Target through one of the user's
// granted network resources: for an IP address the first (by name) whose
// rules allow it; for a name, each whose rules allow the port in turn,
// until a gateway dials it (the gateway resolves the name and may find it
// outside that network's rules). None allowing it is a "not_allowed"
// refusal; the last refusal otherwise.
func (m *Manager) StartNetwork(ctx context.Context, req Request) (*Session, error) {
	req.Kind, req.ResourceID = KindTCP, 0
	host, port, addr, err := ParseTarget(req.Target)
	if err != nil {
		ref := &Refusal{Code: "bad_target", Reason: err.Error(), Status: http.StatusBadRequest, Message: capitalize(err.Error()) + "."}
		m.refusedNetwork(req, ref)
		return nil, ref
	}
	rs, err := m.Store.ResourcesForUser(ctx, req.User.ID)
	if err != nil {
		return nil, fmt.Errorf("list the networks of %s: %w", req.User.Name, err)
	}
	access, err := m.Store.AccessByResource(ctx, req.User.ID)
	if err != nil {
		return nil, fmt.Errorf("list the networks of %s: %w", req.User.Name, err)
	}
	var last error
	for _, res := range rs {
		if res.Protocol != store.ProtocolNetwork || !access[res.ID].Terminal {
			continue
		}
		rules, err := wire.ParseNetRules(res.Options.Networks)
		if err != nil {
			continue
		}
		if addr.IsValid() {
			if !rules.Allows(addr, port) {
				continue
			}
			req.ResourceID = res.ID
			return m.Start(ctx, req)
		}
		if !rules.AllowsPort(port) {
			continue
		}
		req.ResourceID = res.ID
		s, err := m.Start(ctx, req)
		var ref *Refusal
		if err == nil || !errors.As(err, &ref) || ref.Code != string(wire.CodeForbiddenTarget) {
			return s, err
		}
		last = err
	}
	if last != nil {
		return nil, last
	}
	ref := &Refusal{Code: "not_allowed", Reason: req.Target + " in no granted network", Status: http.StatusForbidden,
		Message: fmt.Sprintf("None of your networks allows %s port %d.", host, port)}
	m.refusedNetwork(req, ref)
	return nil, ref
}

// refusedNetwork audits a stream refused before any network resource
// was chosen for it.
func (m *Manager) refusedNetwork(req Request, ref *Refusal) {
	a := &Admission{req: req, id: rand.Text(), started: m.Now()}
	a.res.Name = "net/" + truncate(req.Target, maxTarget)
	m.refused(a, ref)
}

// truncate cuts s to at most n bytes, for a hostile string put in a log.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// acquireStream counts a new tunnel stream against its device's and its
// user's limits; false when one is reached.
func (m *Manager) acquireStream(userID, deviceID int64, l StreamLimits) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.streams[userID] >= l.PerUser || (deviceID != 0 && m.deviceStreams[deviceID] >= l.PerDevice) {
		return false
	}
	m.streams[userID]++
	if deviceID != 0 {
		m.deviceStreams[deviceID]++
	}
	return true
}

func (m *Manager) releaseStream(userID, deviceID int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.streams[userID]--; m.streams[userID] <= 0 {
		delete(m.streams, userID)
	}
	if deviceID != 0 {
		if m.deviceStreams[deviceID]--; m.deviceStreams[deviceID] <= 0 {
			delete(m.deviceStreams, deviceID)
		}
	}
}

// tooManyStreams is the refusal of a stream over a limit.
func tooManyStreams(deviceID int64, l StreamLimits, userCount, deviceCount int) *Refusal {
	which, n := "your account", l.PerUser
	if deviceID != 0 && deviceCount >= l.PerDevice {
		which, n = "this device", l.PerDevice
	}
	return &Refusal{Code: "too_many_streams", Reason: fmt.Sprintf("%d streams of the user, %d of the device", userCount, deviceCount),
		Status:  http.StatusTooManyRequests,
		Message: fmt.Sprintf("%s already has %d connections open through the portal, the most allowed. Close some and try again.", capitalize(which), n)}
}

// deviceEnd says why a stream of a device that is no longer usable ends.
func deviceEnd(err error) (code, reason string, transient bool) {
	switch {
	case errors.Is(err, store.ErrDeviceExpired):
		return endSignedOut, "The device's sign-in expired, so the connection has ended. Run keyway login again.", false
	case errors.Is(err, store.ErrDeviceRevoked), errors.Is(err, store.ErrNotFound):
		return endAccessRevoked, "The device was revoked, so the connection has ended.", false
	}
	return "", "", true
}
