package sessions

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/store"
)

// CodeStepUp is the refusal code of a session that needs a fresher MFA
// check than its request carries.
const CodeStepUp = "step_up"

// MsgStepUp is what a user refused for step-up is told.
const MsgStepUp = "This resource needs a fresh MFA check"

// StepUpFresh reports whether an MFA check passed at mfaAt is recent
// enough at now for a step-up window of minutes; minutes <= 0 asks for
// none. The window's last instant counts: a check exactly N minutes old
// still passes.
func StepUpFresh(minutes int, mfaAt, now time.Time) bool {
	if minutes <= 0 {
		return true
	}
	return !mfaAt.IsZero() && now.Sub(mfaAt) <= time.Duration(minutes)*time.Minute
}

// checkStepUp refuses a session when the resource or an applying policy
// asks for an MFA check within the last N minutes and the request's is
// missing or older. Watching (an auditor's read-only view) and an admin's
// connection test are exempt: neither reaches the target as the user.
//
// 403, not 401: the user is signed in and their credential is good (a
// native client takes 401 as "sign in again"); what is missing is a
// fresher proof, which the code step_up names.
func (m *Manager) checkStepUp(a *Admission) error {
	if a.req.Kind == KindWatch || a.req.Kind == KindTest {
		return nil
	}
	minutes := policy.StricterStepUp(a.res.Options.StepUpMinutes, a.effective.StepUpMinutes)
	if StepUpFresh(minutes, a.req.MFAAt, m.Now()) {
		return nil
	}
	last := "never"
	if !a.req.MFAAt.IsZero() {
		last = a.req.MFAAt.UTC().Format(time.RFC3339)
	}
	return &Refusal{Code: CodeStepUp, Status: http.StatusForbidden,
		Reason:  fmt.Sprintf("needs an MFA check within %d minutes; last %s", minutes, last),
		Message: fmt.Sprintf("%s (within the last %s).", MsgStepUp, minutesText(minutes)),
		Details: map[string]string{"step_up_minutes": strconv.Itoa(minutes)}}
}

// StepUpMinutes is the step-up window, in minutes, a session of u on res
// must meet: the strictest of the resource's and the enabled policies'
// that apply (0: none). Pages ask it to send the user through an MFA check
// before they open a socket that Admit would refuse.
func (m *Manager) StepUpMinutes(ctx context.Context, u store.User, res store.Resource) (int, error) {
	minutes := res.Options.StepUpMinutes
	if m.Policies == nil {
		return minutes, nil
	}
	pols, err := m.Store.PoliciesFor(ctx, u.ID, res.ID)
	if err != nil {
		return 0, fmt.Errorf("step-up of %s on %s: %w", u.Name, res.Name, err)
	}
	for _, p := range pols {
		if p.Enabled {
			minutes = policy.StricterStepUp(minutes, p.StepUpMinutes)
		}
	}
	return minutes, nil
}

func minutesText(n int) string {
	if n == 1 {
		return "minute"
	}
	return strconv.Itoa(n) + " minutes"
}
