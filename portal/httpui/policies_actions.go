package httpui

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// Access policy actions, shared by the Policies pages and the API.

// policyInput is a policy as the API takes and gives it; the form fills
// it too.
type policyInput struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// ScopeKind is "everyone", "resource" or "group"; ScopeID the
	// resource's or group's id.
	ScopeKind string `json:"scope_kind"`
	ScopeID   int64  `json:"scope_id,omitempty"`
	// Networks are CIDRs or addresses; none is any.
	Networks []string `json:"networks"`
	// Windows are when connections may start; none is always.
	Windows  []windowInput `json:"windows"`
	TimeZone string        `json:"time_zone"`
	// MaxSessionMinutes and MaxSessionsPerUser: 0 is no limit.
	MaxSessionMinutes  int `json:"max_session_minutes"`
	MaxSessionsPerUser int `json:"max_sessions_per_user"`
	// StepUpMinutes asks for an MFA check within the last that many
	// minutes before each connection; 0 is off.
	StepUpMinutes int        `json:"step_up_minutes"`
	Allow         allowInput `json:"allow"`
	Enabled       bool       `json:"enabled"`
	// windowsText is the form's windows, one a line, instead of Windows.
	windowsText *string
}

// windowInput is a time window: days ("mon" or "monday", any case) and
// the hours "HH:MM" it opens and closes; a window that closes at or before
// it opens runs over midnight.
type windowInput struct {
	Days []string `json:"days"`
	From string   `json:"from"`
	To   string   `json:"to"`
}

type allowInput struct {
	Terminal     bool `json:"terminal"`
	Upload       bool `json:"upload"`
	Download     bool `json:"download"`
	ClipboardIn  bool `json:"clipboard_in"`
	ClipboardOut bool `json:"clipboard_out"`
}

// newPolicyInput holds the defaults of a new policy: for everyone, in
// UTC, allowing everything, enabled.
func newPolicyInput() policyInput {
	return policyInput{ScopeKind: store.ScopeEveryone, TimeZone: "UTC", Enabled: true,
		Allow: allowInput{Terminal: true, Upload: true, Download: true, ClipboardIn: true, ClipboardOut: true}}
}

// policyInputOf is p as input: the API's PUT starts from it, so that
// fields left out keep their values.
func policyInputOf(p store.Policy) policyInput {
	in := policyInput{Name: p.Name, Description: p.Description, ScopeKind: p.ScopeKind, ScopeID: p.ScopeID,
		Networks: []string{}, Windows: []windowInput{}, TimeZone: p.TimeZone, MaxSessionMinutes: int(p.MaxSession / time.Minute),
		MaxSessionsPerUser: p.MaxSessionsPerUser, StepUpMinutes: p.StepUpMinutes, Enabled: p.Enabled,
		Allow: allowInput{p.Allow.Terminal, p.Allow.Upload, p.Allow.Download, p.Allow.ClipboardIn, p.Allow.ClipboardOut}}
	for _, n := range p.Networks {
		in.Networks = append(in.Networks, n.String())
	}
	for _, w := range p.Windows {
		wi := windowInput{Days: []string{}, From: policy.FormatClock(w.From), To: policy.FormatClock(w.To)}
		for _, d := range w.Days {
			wi.Days = append(wi.Days, strings.ToLower(d.String()[:3]))
		}
		in.Windows = append(in.Windows, wi)
	}
	return in
}

// policyNamePattern allows spaces, unlike user and resource names: a
// policy's name is shown to users when it refuses them ("office hours").
var policyNamePattern = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{N} ._-]*$`)

// Bounds of a policy's fields.
const (
	maxPolicyName = 64
	// maxPolicySessions is the most a per-user limit can be: the portal
	// never runs more than sessions.MaxPerUser for anyone.
	maxPolicySessions = sessions.MaxPerUser
)

// validatePolicy checks in and builds the policy it describes.
func (s *Server) validatePolicy(ctx context.Context, in *policyInput) (store.Policy, fieldErrors) {
	fe := fieldErrors{}
	in.Name, in.Description, in.TimeZone = strings.TrimSpace(in.Name), strings.TrimSpace(in.Description), strings.TrimSpace(in.TimeZone)
	if n := utf8.RuneCountInString(in.Name); n == 0 || n > maxPolicyName || !policyNamePattern.MatchString(in.Name) {
		fe["name"] = "Use 1 to 64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit."
	}
	if utf8.RuneCountInString(in.Description) > maxDescription {
		fe["description"] = "Keep the description under 500 characters."
	}
	p := store.Policy{Name: in.Name, Description: in.Description, ScopeKind: in.ScopeKind, TimeZone: in.TimeZone,
		MaxSessionsPerUser: in.MaxSessionsPerUser, StepUpMinutes: in.StepUpMinutes, Enabled: in.Enabled,
		Allow: store.PolicyAllow{Terminal: in.Allow.Terminal, Upload: in.Allow.Upload, Download: in.Allow.Download,
			ClipboardIn: in.Allow.ClipboardIn, ClipboardOut: in.Allow.ClipboardOut}}
	switch in.ScopeKind {
	case store.ScopeEveryone:
		in.ScopeID = 0
	case store.ScopeResource:
		if _, err := s.Store.ResourceByID(ctx, in.ScopeID); err != nil {
			fe["scope"] = "Choose everyone, a resource or a group."
		}
	case store.ScopeGroup:
		if _, err := s.Store.GroupByID(ctx, in.ScopeID); err != nil {
			fe["scope"] = "Choose everyone, a resource or a group."
		}
	default:
		fe["scope"] = "Choose everyone, a resource or a group."
	}
	p.ScopeID = in.ScopeID
	nets, err := policy.ParseNetworks(in.Networks...)
	if err != nil {
		fe["networks"] = capitalize(err.Error()) + "."
	}
	p.Networks = nets
	if in.windowsText != nil {
		if p.Windows, err = policy.ParseWindows(*in.windowsText); err != nil {
			fe["windows"] = sentence(err.Error())
		}
	} else if len(in.Windows) > policy.MaxWindows {
		fe["windows"] = fmt.Sprintf("Give at most %d windows.", policy.MaxWindows)
	} else {
		for i, w := range in.Windows {
			pw, err := windowOf(w)
			if err != nil {
				fe["windows"] = fmt.Sprintf("Window %d: %s.", i+1, err)
				break
			}
			p.Windows = append(p.Windows, pw)
		}
	}
	if in.TimeZone == "" {
		in.TimeZone, p.TimeZone = "UTC", "UTC"
	}
	if _, err := policy.LoadZone(in.TimeZone); err != nil {
		fe["time_zone"] = capitalize(err.Error()) + "."
	}
	if m := in.MaxSessionMinutes; m != 0 && (m < minSessionLimit || m > maxSessionLimit) {
		fe["max_session_minutes"] = fmt.Sprintf("Give whole minutes from %d to %d (a week), or leave blank for no limit.", minSessionLimit, maxSessionLimit)
	}
	p.MaxSession = time.Duration(in.MaxSessionMinutes) * time.Minute
	if n := in.MaxSessionsPerUser; n < 0 || n > maxPolicySessions {
		fe["max_sessions_per_user"] = fmt.Sprintf("Give a number from 1 to %d, or leave blank for no limit.", maxPolicySessions)
	}
	if m := in.StepUpMinutes; m < 0 || m > store.MaxStepUpMinutes {
		fe["step_up_minutes"] = stepUpError
	}
	return p, fe
}

func windowOf(w windowInput) (store.PolicyWindow, error) {
	if len(w.Days) > 7*2 {
		return store.PolicyWindow{}, fmt.Errorf("list each day once")
	}
	days, err := policy.ParseDays(strings.Join(w.Days, ","))
	if err != nil {
		return store.PolicyWindow{}, err
	}
	from, err := policy.ParseClock(w.From)
	if err != nil {
		return store.PolicyWindow{}, err
	}
	to, err := policy.ParseClock(w.To)
	if err != nil {
		return store.PolicyWindow{}, err
	}
	return policy.NewWindow(days, from, to)
}

// policyDetails are the audit details of a policy: everything it says.
func policyDetails(p store.Policy) map[string]string {
	nets := make([]string, 0, len(p.Networks))
	for _, n := range p.Networks {
		nets = append(nets, n.String())
	}
	wins := make([]string, 0, len(p.Windows))
	for _, w := range p.Windows {
		wins = append(wins, policy.FormatWindow(w))
	}
	scope := p.ScopeKind
	if p.ScopeKind != store.ScopeEveryone {
		scope += ":" + p.ScopeName
	}
	return map[string]string{"scope": scope, "networks": strings.Join(nets, ","), "windows": strings.Join(wins, "; "),
		"time_zone": p.TimeZone, "max_session": p.MaxSession.String(), "max_sessions_per_user": strconv.Itoa(p.MaxSessionsPerUser),
		"step_up_minutes": strconv.Itoa(p.StepUpMinutes),
		"allows":          strings.Join(allowNames(p.Allow), ","), "enabled": strconv.FormatBool(p.Enabled)}
}

// allowNames lists what a policy allows, in the words the forms use.
func allowNames(a store.PolicyAllow) []string {
	var out []string
	for _, x := range []struct {
		on   bool
		name string
	}{{a.Terminal, "terminal"}, {a.Upload, "upload"}, {a.Download, "download"}, {a.ClipboardIn, "clipboard-in"}, {a.ClipboardOut, "clipboard-out"}} {
		if x.on {
			out = append(out, x.name)
		}
	}
	return out
}

func (s *Server) createPolicy(r *http.Request, actor store.User, in policyInput) (store.Policy, error) {
	ctx := r.Context()
	p, fe := s.validatePolicy(ctx, &in)
	if len(fe) > 0 {
		return store.Policy{}, fe
	}
	p, err := s.Store.CreatePolicy(ctx, p)
	if err != nil {
		return store.Policy{}, conflictOrErr(err, "name")
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionPolicyCreate, Target: p.Name, Outcome: audit.OutcomeSuccess, Details: policyDetails(p)})
	s.kickGuard() // running sessions are checked against the new policy
	return p, nil
}

func (s *Server) updatePolicy(r *http.Request, actor store.User, id int64, in policyInput) (store.Policy, error) {
	ctx := r.Context()
	old, err := s.Store.PolicyByID(ctx, id)
	if err != nil {
		return store.Policy{}, err
	}
	p, fe := s.validatePolicy(ctx, &in)
	if len(fe) > 0 {
		return store.Policy{}, fe
	}
	p.ID = old.ID
	if err := s.Store.UpdatePolicy(ctx, p); err != nil {
		return store.Policy{}, conflictOrErr(err, "name")
	}
	if p, err = s.Store.PolicyByID(ctx, id); err != nil {
		return store.Policy{}, err
	}
	details := policyDetails(p)
	if old.Name != p.Name {
		details["was"] = old.Name
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionPolicyUpdate, Target: p.Name, Outcome: audit.OutcomeSuccess, Details: details})
	s.kickGuard() // running sessions are checked against the changed policy
	return p, nil
}

func (s *Server) deletePolicy(r *http.Request, actor store.User, id int64) (store.Policy, error) {
	p, err := s.Store.PolicyByID(r.Context(), id)
	if err != nil {
		return store.Policy{}, err
	}
	if err := s.Store.DeletePolicy(r.Context(), id); err != nil {
		return store.Policy{}, err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionPolicyDelete, Target: p.Name, Outcome: audit.OutcomeSuccess, Details: policyDetails(p)})
	s.kickGuard()
	return p, nil
}
