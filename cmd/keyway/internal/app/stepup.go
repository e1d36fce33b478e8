package app

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/keyway-dev/keyway/cmd/keyway/internal/client"
)

// refused turns a refusal the user can act on into words: an expired
// sign-in, or a resource that needs a fresh MFA check. nil for any other
// error, which the caller reports as it is.
func (a *app) refused(ctx context.Context, s *session, err error) error {
	var ref *client.Refusal
	switch {
	case !errors.As(err, &ref):
		return nil
	case ref.SignInExpired():
		return a.expired(s)
	case ref.Code == client.CodeStepUp:
		return a.stepUp(ctx, s, ref)
	}
	return nil
}

// stepUp tells the user where to pass the MFA check a resource needs for
// this device, and opens that page (like login) unless --no-browser. An
// API token cannot pass one: the portal's own words say so.
func (a *app) stepUp(ctx context.Context, s *session, ref *client.Refusal) error {
	page, ok := stepUpPage(s.cfg.URL, ref.URL)
	if s.token || !ok {
		return errors.New(ref.Error())
	}
	a.stepUpOnce.Do(func() {
		if a.noBrowser || !a.hasDisplay() {
			return
		}
		if err := a.openBrowser(ctx, page); err != nil {
			a.stderr.line("keyway: could not open a browser (" + oneLine(err.Error()) + "); open the address yourself")
		}
	})
	return fmt.Errorf("This resource needs a fresh MFA check: open %s, then run the command again", page)
}

// stepUpPage checks the step-up address the portal sent: a page of the
// portal itself (same scheme and host), since it is opened in a browser.
func stepUpPage(portal, page string) (string, bool) {
	p, err := url.Parse(portal)
	if err != nil || page == "" {
		return "", false
	}
	u, err := p.Parse(page)
	if err != nil || u.Scheme != p.Scheme || u.Host != p.Host || u.User != nil {
		return "", false
	}
	return u.String(), true
}
