package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyway-dev/keyway/gateway/display"
	"github.com/keyway-dev/keyway/gateway/rdp"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// Desktop size when neither the resource nor the browser gives one.
const (
	defaultRDPWidth  = 1024
	defaultRDPHeight = 768
)

// rdpDesktop serves an RDP desktop as Guacamole display instructions.
func (g *Gateway) rdpDesktop(c *tls.Conn, req *wire.Request, log *slog.Logger) {
	start := time.Now()
	var opts wire.Desktop
	if req.Desktop != nil {
		opts = *req.Desktop
	}
	w, h := opts.Width, opts.Height
	if w == 0 || h == 0 {
		w, h = defaultRDPWidth, defaultRDPHeight
	}
	cfg := rdp.Config{
		Host: req.Target.Host, Port: req.Target.Port,
		Username: req.Credentials.Username, Password: string(req.Credentials.Password), Domain: opts.Domain,
		Security: opts.Security, Width: w, Height: h, ColorDepth: opts.ColorDepth,
		IgnoreCertificate: opts.IgnoreCert, Clipboard: !opts.NoClipboardIn || !opts.NoClipboardOut,
		KeyboardLayout: opts.KeyboardLayout, Logger: log,
	}
	if !opts.IgnoreCert {
		cfg.CertFingerprint = req.HostKey
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
	s, err := rdp.Connect(ctx, cfg)
	cancel()
	if err != nil {
		resp := rdpRefusal(req.Target, err)
		log.Warn("session refused", "code", resp.Code, "reason", resp.Message, "err", err)
		wire.WriteResponse(c, resp)
		return
	}
	defer s.Close()
	ok := &wire.Response{OK: true}
	if fp := s.CertFingerprint(); fp != "" && !opts.IgnoreCert {
		ok.HostKey, ok.HostKeyFingerprint = wire.CertPrefix+fp, fp // pinned by the portal on first use
	}
	// Recording starts only now that the server accepted the sign-in.
	rec, err := g.startDesktopRecording(req, log)
	if err != nil {
		g.refuseUnrecorded(c, req, ok, err, log)
		return
	}
	defer rec.finish()
	if err := wire.WriteResponse(c, ok); err != nil {
		return
	}
	sw, sh := s.Size()
	log.Info("desktop session started", "size", fmt.Sprintf("%dx%d", sw, sh), "setup", time.Since(start).Round(time.Millisecond))
	err = display.Serve(g.ctx, c, rdpSource{s}, rdpRemote{s, opts.FixedSize}, opts, rdpEnded, rec.display(opts))
	log.Info("desktop session ended", "err", err, "duration", time.Since(start).Round(time.Second))
}

// rdpSource adapts a session to the display pipeline.
type rdpSource struct{ *rdp.Session }

func (s rdpSource) Take() display.Change {
	u := s.Session.Take()
	ch := display.Change{Rects: u.Rects, Resized: u.Resized, Clipboard: u.CutText, HasClipboard: u.HasCutText,
		ClipboardNotice: u.ClipboardNotice}
	if u.Cursor != nil {
		ch.Cursor = &display.Cursor{Image: u.Cursor.Image, Hotspot: u.Cursor.Hotspot}
	}
	return ch
}

// rdpRemote adapts a session to the display pipeline's input; fixed
// keeps the desktop's size whatever the browser window does.
type rdpRemote struct {
	s     *rdp.Session
	fixed bool
}

func (r rdpRemote) Key(keysym uint32, down bool) error { return r.s.Key(keysym, down) }
func (r rdpRemote) Pointer(x, y int, mask uint8) error { return r.s.Pointer(x, y, mask) }
func (r rdpRemote) CutText(text string) error          { return r.s.CutText(text) }

// Resize follows the browser window where the server has the display
// control channel. A size it cannot take is not an error: the browser
// scales instead, and a closed session ends through Done.
func (r rdpRemote) Resize(w, h int) error {
	if !r.fixed {
		r.s.Resize(w, h)
	}
	return nil
}

// rdpEnded says why a running RDP session ended.
func rdpEnded(err error) string {
	switch {
	case errors.Is(err, rdp.ErrLoggedOff):
		return "The remote desktop session ended: the user logged off."
	case errors.Is(err, rdp.ErrDisconnected):
		return "The remote desktop session was ended by the server (disconnected by an administrator, another sign-in, or an idle timeout)."
	case err == nil:
		return "The remote desktop session ended."
	}
	return "The remote desktop session ended: " + err.Error() + "."
}

// rdpRefusal says in words why an RDP server could not be signed in to.
func rdpRefusal(t wire.Target, err error) *wire.Response {
	var cert *rdp.CertificateError
	switch {
	case errors.As(err, &cert):
		return &wire.Response{Code: wire.CodeHostKeyMismatch,
			Message: fmt.Sprintf("the TLS certificate of the RDP server at %s has changed: expected %s, got %s. This can mean the server's certificate was renewed, or that someone is intercepting the connection; an administrator must check and accept the new certificate on the resource's page", t, cert.Pinned, cert.Offered),
			HostKey: wire.CertPrefix + cert.Offered, HostKeyFingerprint: cert.Offered}
	case errors.Is(err, rdp.ErrAuthentication), errors.Is(err, rdp.ErrNoCredentials),
		errors.Is(err, rdp.ErrAccountLocked), errors.Is(err, rdp.ErrAccountDisabled), errors.Is(err, rdp.ErrAccountExpired),
		errors.Is(err, rdp.ErrAccountRestricted), errors.Is(err, rdp.ErrPasswordExpired), errors.Is(err, rdp.ErrPasswordMustChange),
		errors.Is(err, rdp.ErrLogonTypeNotGranted), errors.Is(err, rdp.ErrAccessDenied):
		return &wire.Response{Code: wire.CodeAuthFailed, Message: fmt.Sprintf("the RDP server at %s refused the sign-in: %v", t, err)}
	case errors.Is(err, rdp.ErrPinnedNeedsTLS):
		return &wire.Response{Code: wire.CodeUnsupported,
			Message: fmt.Sprintf("the RDP resource at %s is set to standard RDP security, which cannot check the server's pinned TLS certificate, so the gateway did not connect. An administrator can choose NLA or TLS for the resource, or forget the pinned certificate on the resource's page to use standard RDP security", t)}
	case errors.Is(err, rdp.ErrNegotiation), errors.Is(err, rdp.ErrTLS), errors.Is(err, rdp.ErrProtocol):
		return &wire.Response{Code: wire.CodeUnsupported, Message: fmt.Sprintf("cannot sign in to the RDP server at %s: %v", t, err)}
	case errors.Is(err, rdp.ErrRefused):
		return &wire.Response{Code: wire.CodeRefused, Message: fmt.Sprintf("the RDP server at %s refused the connection", t)}
	case errors.Is(err, rdp.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &wire.Response{Code: wire.CodeTimeout, Message: fmt.Sprintf("the RDP server at %s did not answer in time", t)}
	case errors.Is(err, rdp.ErrUnreachable):
		return &wire.Response{Code: wire.CodeUnreachable, Message: fmt.Sprintf("the RDP server at %s cannot be reached: %v", t, err)}
	}
	return &wire.Response{Code: wire.CodeUnreachable, Message: fmt.Sprintf("the RDP connection to %s failed: %v", t, err)}
}
