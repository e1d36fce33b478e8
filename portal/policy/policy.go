// Package policy decides whether a new connection passes the access
// policies that apply to it, and what the session it starts may do.
//
// A policy applies to everyone, to one resource, or to the members of one
// group. Every enabled policy that applies must allow a connection: its
// client networks, its time windows, its limit on the user's concurrent
// sessions and what it allows for the kind of session. Of several policies
// the smallest limits win and permissions combine with AND.
//
// What a session kind needs:
//   - "terminal", "desktop" and "tcp" (the native tunnel): Terminal.
//   - "files": Upload or Download; the caller checks each operation
//     against Effective.Upload and Effective.Download.
//   - "watch" (an auditor watching a live session): no permission, but the
//     networks, windows and concurrency limit apply.
package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	// The zone database inside the binary: time windows mean the same on
	// every host, whatever its tzdata package holds.
	_ "time/tzdata"

	"github.com/keyway-dev/keyway/portal/store"
)

// Session kinds, as Input.Kind names them.
const (
	KindTerminal = "terminal"
	KindDesktop  = "desktop"
	KindFiles    = "files"
	KindWatch    = "watch"
	KindTCP      = "tcp"
)

// Rules, as Refusal.Rule names the one that refused.
const (
	RuleNetwork     = "network"
	RuleTime        = "time"
	RuleConcurrency = "concurrency"
	RuleTerminal    = "terminal"
	RuleFiles       = "files"
)

// Input is a connection about to start.
type Input struct {
	User     store.User
	Resource store.Resource
	// Kind is KindTerminal, KindDesktop, KindFiles, KindWatch or KindTCP.
	Kind string
	// ClientAddr is the client's address after trusted-proxy handling.
	ClientAddr netip.Addr
	// Now is when the connection starts.
	Now time.Time
	// Running counts the user's sessions running now, not this one.
	Running int
}

// Effective is what the applicable policies allow a session.
type Effective struct {
	// MaxSession bounds the session's length; 0 is no limit.
	MaxSession time.Duration
	// Until is when the policies' time windows stop allowing the
	// session; zero is never.
	Until time.Time
	// Terminal, Upload, Download, ClipboardIn and ClipboardOut are the
	// permissions: terminal and desktop sessions, file transfers each
	// way, text to and from a desktop's clipboard.
	Terminal, Upload, Download, ClipboardIn, ClipboardOut bool
	// StepUpMinutes, when positive, is how recent the user's last MFA
	// check must be for the session to start: the strictest (smallest
	// positive) of the policies that applied. The session manager
	// enforces it, with the resource's own; 0 asks for none.
	StepUpMinutes int
	// Applied names the policies that applied, by name.
	Applied []string
}

// StricterStepUp returns the stricter of two step-up windows in minutes:
// the smaller positive one; 0 when both are off.
func StricterStepUp(a, b int) int {
	switch {
	case a <= 0:
		return max(b, 0)
	case b <= 0:
		return a
	}
	return min(a, b)
}

// Expired reports whether a session that started at start has reached
// MaxSession at now: its last allowed instant is start+MaxSession-1ns.
func (e Effective) Expired(start, now time.Time) bool {
	return e.MaxSession > 0 && now.Sub(start) >= e.MaxSession
}

// Refusal is a connection a policy refused. Message says so to the user
// in words, naming the policy and the rule.
type Refusal struct {
	Policy  string
	Rule    string
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// ErrUnknownKind is returned for an Input.Kind this package does not know;
// the connection must not start.
var ErrUnknownKind = errors.New("unknown session kind")

// Engine checks connections against the policies in a store.
type Engine struct {
	st    *store.Store
	zones zoneCache
}

// New returns an Engine reading policies from st.
func New(st *store.Store) *Engine { return &Engine{st: st} }

// Check returns what the enabled policies that apply to in allow, or a
// *Refusal naming the first policy (by name) and rule that refuse it.
// Other errors (the store failing) must refuse the connection too.
func (e *Engine) Check(ctx context.Context, in Input) (Effective, error) {
	if !knownKind(in.Kind) {
		return Effective{}, fmt.Errorf("check policies: %w %q", ErrUnknownKind, in.Kind)
	}
	pols, err := e.st.PoliciesFor(ctx, in.User.ID, in.Resource.ID)
	if err != nil {
		return Effective{}, fmt.Errorf("check policies of %s on %s: %w", in.User.Name, in.Resource.Name, err)
	}
	return evaluate(pols, in, e.zones.load)
}

// Evaluate checks in against pols, which must be the enabled policies that
// apply to it (as store.PoliciesFor returns them); it reads nothing else,
// so its answer depends only on its arguments.
func Evaluate(pols []store.Policy, in Input) (Effective, error) {
	if !knownKind(in.Kind) {
		return Effective{}, fmt.Errorf("check policies: %w %q", ErrUnknownKind, in.Kind)
	}
	return evaluate(pols, in, LoadZone)
}

func knownKind(k string) bool {
	switch k {
	case KindTerminal, KindDesktop, KindFiles, KindWatch, KindTCP:
		return true
	}
	return false
}

func evaluate(pols []store.Policy, in Input, loadZone func(string) (*time.Location, error)) (Effective, error) {
	eff := Effective{Terminal: true, Upload: true, Download: true, ClipboardIn: true, ClipboardOut: true}
	addr := in.ClientAddr.Unmap().WithZone("")
	for _, p := range pols {
		if !p.Enabled {
			continue
		}
		if len(p.Networks) > 0 && !inNetworks(p.Networks, addr) {
			return Effective{}, &Refusal{Policy: p.Name, Rule: RuleNetwork, Message: networkMessage(p, addr)}
		}
		if len(p.Windows) > 0 {
			loc, err := loadZone(p.TimeZone)
			if err != nil {
				// Saved zones are checked; one that stopped loading must
				// not lift the windows.
				return Effective{}, fmt.Errorf("policy %q: time zone %q: %w", p.Name, p.TimeZone, err)
			}
			if !InWindows(p.Windows, in.Now.In(loc)) {
				return Effective{}, &Refusal{Policy: p.Name, Rule: RuleTime, Message: fmt.Sprintf("Policy %q allows connections %s (%s) only.",
					p.Name, FormatWindows(p.Windows), p.TimeZone)}
			}
			if until := windowsEnd(p.Windows, in.Now, loc); !until.IsZero() && (eff.Until.IsZero() || until.Before(eff.Until)) {
				eff.Until = until
			}
		}
		if p.MaxSessionsPerUser > 0 && in.Running >= p.MaxSessionsPerUser {
			return Effective{}, &Refusal{Policy: p.Name, Rule: RuleConcurrency, Message: fmt.Sprintf(
				"Policy %q allows %s at a time; you have %d running. End one and try again.",
				p.Name, plural(p.MaxSessionsPerUser, "session"), in.Running)}
		}
		switch in.Kind {
		case KindTerminal, KindDesktop, KindTCP:
			if !p.Allow.Terminal {
				return Effective{}, &Refusal{Policy: p.Name, Rule: RuleTerminal, Message: fmt.Sprintf(
					"Policy %q does not allow terminal or desktop sessions.", p.Name)}
			}
		case KindFiles:
			if !p.Allow.Upload && !p.Allow.Download {
				return Effective{}, &Refusal{Policy: p.Name, Rule: RuleFiles, Message: fmt.Sprintf(
					"Policy %q allows neither uploads nor downloads.", p.Name)}
			}
		}
		if p.MaxSession > 0 && (eff.MaxSession == 0 || p.MaxSession < eff.MaxSession) {
			eff.MaxSession = p.MaxSession
		}
		eff.StepUpMinutes = StricterStepUp(eff.StepUpMinutes, p.StepUpMinutes)
		eff.Terminal = eff.Terminal && p.Allow.Terminal
		eff.Upload = eff.Upload && p.Allow.Upload
		eff.Download = eff.Download && p.Allow.Download
		eff.ClipboardIn = eff.ClipboardIn && p.Allow.ClipboardIn
		eff.ClipboardOut = eff.ClipboardOut && p.Allow.ClipboardOut
		eff.Applied = append(eff.Applied, p.Name)
	}
	if in.Kind == KindFiles && !eff.Upload && !eff.Download {
		// Each policy allowed one way; together they allow neither.
		var names, quoted []string
		for _, p := range pols {
			if p.Enabled && (!p.Allow.Upload || !p.Allow.Download) {
				names, quoted = append(names, p.Name), append(quoted, fmt.Sprintf("%q", p.Name))
			}
		}
		return Effective{}, &Refusal{Policy: strings.Join(names, ", "), Rule: RuleFiles, Message: fmt.Sprintf(
			"Policies %s together allow neither uploads nor downloads.", joinAnd(quoted))}
	}
	return eff, nil
}

func inNetworks(nets []netip.Prefix, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// maxListedNetworks bounds the networks a refusal lists.
const maxListedNetworks = 5

func networkMessage(p store.Policy, addr netip.Addr) string {
	names := make([]string, 0, maxListedNetworks)
	for i, n := range p.Networks {
		if i == maxListedNetworks {
			names = append(names, fmt.Sprintf("%d more", len(p.Networks)-i))
			break
		}
		names = append(names, n.String())
	}
	where := "your address could not be determined"
	if addr.IsValid() {
		where = "you are connecting from " + addr.String()
	}
	return fmt.Sprintf("Policy %q allows connections from %s only; %s.", p.Name, joinAnd(names), where)
}

func joinAnd(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// zoneCache remembers loaded time zones: loading reads and parses the zone
// database on every call.
type zoneCache struct {
	mu    sync.Mutex
	zones map[string]*time.Location
}

func (c *zoneCache) load(name string) (*time.Location, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if loc, ok := c.zones[name]; ok {
		return loc, nil
	}
	loc, err := LoadZone(name)
	if err != nil {
		return nil, err
	}
	if c.zones == nil {
		c.zones = map[string]*time.Location{}
	}
	c.zones[name] = loc
	return loc, nil
}
