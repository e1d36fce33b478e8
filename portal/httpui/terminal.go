package httpui

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

const (
	// wsPingInterval keeps idle sessions alive through proxies and finds
	// browsers that vanished without closing.
	wsPingInterval = 30 * time.Second
	wsReadTimeout  = 2*wsPingInterval + 15*time.Second
	// wsWriteTimeout drops a browser that stops reading for this long; until
	// then a slow browser holds back the target through TCP backpressure.
	wsWriteTimeout = 60 * time.Second
	maxTermSize    = 1000
	// maxControlMessage bounds a JSON control message from the page (its
	// resize messages are under 50 bytes); a larger one is refused.
	maxControlMessage = 4 << 10
	// inputChunk is how much of a binary message (typed or pasted input)
	// the portal reads before passing it on: a message of any length
	// streams through in frames of at most this size, so a paste needs no
	// buffer of its size and the target's pace holds back the browser.
	inputChunk = 32 << 10
	// refusalInterval spaces the portal's notices of refused messages, so
	// a page that misbehaves in a loop does not flood its user.
	refusalInterval = time.Second
)

// control is a JSON text frame between browser and portal.
type control struct {
	Type    string `json:"type"`
	Cols    int    `json:"cols,omitempty"`
	Rows    int    `json:"rows,omitempty"`
	Status  *int   `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Codes of the "refused" control message: the portal ignored one message
// from the page and the session goes on.
const (
	refusedTooLarge  = "message_too_large"
	refusedMalformed = "malformed_message"
	refusedUnknown   = "unknown_message"
	refusedBadSize   = "bad_terminal_size"
)

// browserControl reads one control message from the page: the terminal
// size a resize asks for, or why the message is refused.
func browserControl(data []byte) (cols, rows int, refused *control) {
	refuse := func(code, msg string) (int, int, *control) {
		return 0, 0, &control{Type: "refused", Code: code, Message: msg}
	}
	if len(data) > maxControlMessage {
		return refuse(refusedTooLarge, fmt.Sprintf("The page sent a control message of more than %d KiB; the portal ignored it and the session goes on. Reload the page if the terminal misbehaves.", maxControlMessage>>10))
	}
	var c control
	if err := json.Unmarshal(data, &c); err != nil {
		return refuse(refusedMalformed, "The page sent a control message the portal could not read; the portal ignored it and the session goes on. Reload the page if the terminal misbehaves.")
	}
	if c.Type != "resize" {
		const maxQuoted = 32 // of an unknown type, in the message
		typ := []rune(c.Type)
		if len(typ) > maxQuoted {
			typ = append(typ[:maxQuoted], '…')
		}
		return refuse(refusedUnknown, fmt.Sprintf("The page sent a control message of unknown type %q; the portal ignored it and the session goes on. Reload the page if the terminal misbehaves.", string(typ)))
	}
	if c.Cols < 1 || c.Cols > maxTermSize || c.Rows < 1 || c.Rows > maxTermSize {
		return refuse(refusedBadSize, fmt.Sprintf("The terminal size %d×%d is outside 1 to %d columns and rows; the remote terminal keeps its size.", c.Cols, c.Rows, maxTermSize))
	}
	return c.Cols, c.Rows, nil
}

// sameOrigin reports whether a WebSocket upgrade comes from a page of this
// portal. Browsers always send Origin on WebSocket requests, so a missing one
// is refused too.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	o, err := url.Parse(r.Header.Get("Origin"))
	if err != nil || o.Host == "" {
		return false
	}
	return strings.EqualFold(o.Host, r.Host)
}

// grantedResource loads the resource at the request's {id} if u may use it,
// answering 404 (and auditing a denial) otherwise so ids cannot be probed.
func (s *Server) grantedResource(w http.ResponseWriter, r *http.Request, u store.User) (store.Resource, bool) {
	id, err := pathID(r)
	if err == nil {
		var res store.Resource
		res, err = s.Authz.Resource(r.Context(), u, id)
		if err == nil {
			return res, true
		}
	}
	switch {
	case errors.Is(err, authz.ErrDenied), errors.Is(err, store.ErrNotFound):
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionAuthzDenied, Target: r.URL.Path,
			Outcome: audit.OutcomeDenied, Reason: "no grant for this resource, or no such resource"})
		s.renderError(w, r, http.StatusNotFound, "There is no such resource, or you have no access to it.")
	default:
		s.serverError(w, r, err)
	}
	return store.Resource{}, false
}

func termSize(q url.Values) (cols, rows int) {
	cols, _ = strconv.Atoi(q.Get("cols"))
	rows, _ = strconv.Atoi(q.Get("rows"))
	if cols < 1 || cols > maxTermSize {
		cols = 80
	}
	if rows < 1 || rows > maxTermSize {
		rows = 24
	}
	return cols, rows
}

// sessionResource checks a session WebSocket request before the upgrade:
// from a page of this portal, for a resource granted to the user, of the
// protocol the endpoint serves. It answers the request itself otherwise.
func (s *Server) sessionResource(w http.ResponseWriter, r *http.Request, protocol, kind string) (store.User, store.Resource, bool) {
	u, _ := currentUser(r)
	if !sameOrigin(r) {
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionAuthzDenied, Target: r.URL.Path,
			Outcome: audit.OutcomeDenied, Reason: "WebSocket from another origin: " + r.Header.Get("Origin")})
		http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
		return u, store.Resource{}, false
	}
	res, ok := s.grantedResource(w, r, u)
	if !ok {
		return u, res, false
	}
	if res.Protocol != protocol && !(kind == "desktop" && res.Protocol == wire.ProtocolRDP) {
		s.renderError(w, r, http.StatusBadRequest, "This resource is not a "+kind+".")
		return u, res, false
	}
	return u, res, true
}

func (s *Server) terminalSocket(w http.ResponseWriter, r *http.Request) {
	u, res, ok := s.sessionResource(w, r, wire.ProtocolSSH, "terminal")
	if !ok {
		return
	}
	up := websocket.Upgrader{
		ReadBufferSize: 4 << 10, WriteBufferSize: 32 << 10,
		CheckOrigin: sameOrigin, HandshakeTimeout: 10 * time.Second,
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	s.wg.Add(1)
	defer s.wg.Done()
	defer ws.Close()
	// No read limit on the connection: the bridge bounds each message
	// itself, streaming input and refusing oversized control messages
	// without ending the session.

	cols, rows := termSize(r.URL.Query())
	id := rand.Text()
	t := &termSession{
		srv: s, ws: ws, user: u, res: res, client: clientAddr(r), id: id, cols: cols, rows: rows,
		log: s.Logger.With("session", id, "user", u.Name, "resource", res.Name),
	}
	t.run(s.ctx, r, cols, rows)
}

// termSession is one browser terminal bridged to a gateway session.
type termSession struct {
	srv    *Server
	ws     *websocket.Conn
	user   store.User
	res    store.Resource
	client string
	id     string
	log    *slog.Logger
	// cols and rows are the remote terminal's size, changed only by the
	// goroutine reading the browser once the session runs.
	cols, rows int
	// lastRefusal is when the browser was last told of a refused
	// message; only the goroutine reading the browser uses it.
	lastRefusal time.Time
	// watchers get a copy of the output for read-only viewers.
	watchers watchers
	// guard ends the session when access ends; the browser's input keeps
	// it from running idle.
	guard *sessionGuard
	// wmu orders messages to the browser: the relay and the guard's
	// warnings both write.
	wmu sync.Mutex
}

// fail tells the browser why the session could not start or ended, audits it
// and closes.
func (t *termSession) fail(r *http.Request, code, msg string, details map[string]string) {
	t.log.Warn("terminal connection failed", "code", code, "reason", msg)
	if details == nil {
		details = map[string]string{}
	}
	details["session"] = t.id
	details["code"] = code
	t.srv.record(r, audit.Event{Actor: t.user.Name, Action: audit.ActionConnect, Target: t.res.Name,
		ClientAddr: t.client, Outcome: audit.OutcomeFailure, Reason: msg, Details: details})
	t.sendControl(control{Type: "error", Code: code, Message: msg})
	t.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

func (t *termSession) sendControl(c control) error {
	b, _ := json.Marshal(c)
	return t.write(websocket.TextMessage, b)
}

func (t *termSession) write(mt int, b []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	return t.ws.WriteMessage(mt, b)
}

func (t *termSession) run(ctx context.Context, r *http.Request, cols, rows int) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := t.srv
	release, ok := s.acquireSession(t.user.ID)
	if !ok {
		t.fail(r, "too_many_sessions", fmt.Sprintf("You already have %d sessions open. Close one and try again.", maxSessionsPerUser), nil)
		return
	}
	defer release()
	conn, resp, gw, failure := s.dialResource(ctx, t.user, t.res, t.client, t.id, cols, rows, false)
	if failure != nil {
		t.fail(r, failure.code, failure.msg, failure.details)
		return
	}
	gwDetails := failure.detailsFor(gw, t.res)
	defer conn.Close()
	if t.res.HostKey == "" && resp.HostKey != "" {
		gwDetails["host_key_pinned"] = resp.HostKeyFingerprint
	}
	gwDetails["session"] = t.id
	start := time.Now()
	t.guard = s.newGuard(r.Context(), t.user, t.res, false)
	t.guard.warn = func(msg string) { t.sendControl(control{Type: "warning", Message: msg}) }
	defer s.addLive(&liveSession{id: t.id, user: t.user.Name, resource: t.res.Name, protocol: t.res.Protocol,
		gateway: gw.Name, client: t.client, start: start, conn: conn, term: t, guard: t.guard})()
	defer t.watchers.end()
	s.record(r, audit.Event{Actor: t.user.Name, Action: audit.ActionConnect, Target: t.res.Name,
		ClientAddr: t.client, Outcome: audit.OutcomeSuccess, Details: gwDetails})
	t.log.Info("terminal session started", "gateway", gw.Name, "segment", gw.Segment)
	if err := t.sendControl(control{Type: "connected", Message: fmt.Sprintf("Connected to %s as %s", t.res.Name, t.res.Login)}); err != nil {
		return
	}

	end, reason := t.bridge(ctx, conn)
	details := map[string]string{"session": t.id, "duration": time.Since(start).Round(time.Second).String(), "end": end}
	s.record(r, audit.Event{Actor: t.user.Name, Action: audit.ActionSessionEnd, Target: t.res.Name,
		ClientAddr: t.client, Outcome: audit.OutcomeSuccess, Reason: reason, Details: details})
	t.log.Info("terminal session ended", "end", end)
}

// bridge relays between browser and gateway until either side ends, and
// says how the session ended.
func (t *termSession) bridge(ctx context.Context, conn net.Conn) (end, reason string) {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Closing both connections unblocks every read and write below.
	closeBoth := func() {
		conn.Close()
		t.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "session closed"), time.Now().Add(time.Second))
		t.ws.Close()
	}
	stop := context.AfterFunc(ctx, closeBoth)
	// On return, close both here unless ctx already did: the browser
	// reader must not wait for its read deadline.
	defer func() {
		if stop() {
			closeBoth()
		}
		wg.Wait()
	}()

	fw := wire.NewFrameWriter(conn)

	browserGone := make(chan struct{})
	wg.Add(2)
	go func() { // browser → gateway; the only writer to the gateway
		defer wg.Done()
		// Deferred calls run last first: browserGone closes before cancel
		// cuts the gateway, so the session's end is put down to the browser.
		defer cancel()
		defer close(browserGone)
		t.ws.SetReadDeadline(time.Now().Add(wsReadTimeout))
		t.ws.SetPongHandler(func(string) error { return t.ws.SetReadDeadline(time.Now().Add(wsReadTimeout)) })
		buf := make([]byte, inputChunk)
		for {
			mt, rd, err := t.ws.NextReader()
			if err != nil {
				return
			}
			t.ws.SetReadDeadline(time.Now().Add(wsReadTimeout))
			switch mt {
			case websocket.BinaryMessage:
				t.guard.touch(t.srv.Now())
				err = t.forwardInput(rd, fw, buf)
			case websocket.TextMessage:
				err = t.browserControl(rd, fw, buf)
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // keepalive pings
		defer wg.Done()
		tick := time.NewTicker(wsPingInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if t.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)) != nil {
					cancel()
					return
				}
			}
		}
	}()

	// gateway → browser, on this goroutine.
	fr := wire.NewFrameReader(conn)
	for {
		ft, p, err := fr.Next()
		if err != nil {
			select {
			case <-browserGone:
				return "browser disconnected", ""
			default:
			}
			if t.srv.ctx.Err() != nil {
				t.sendControl(control{Type: "error", Code: "portal_shutdown", Message: "The portal is shutting down; the session was closed."})
				return "portal shut down", ""
			}
			if reason := gateways.CloseReason(conn); reason != "" {
				code := gateways.CloseCode(conn)
				t.sendControl(control{Type: "error", Code: code, Message: reason})
				return strings.ReplaceAll(code, "_", " "), reason
			}
			t.sendControl(control{Type: "error", Code: "gateway_lost", Message: "The connection to the gateway was lost; the session has ended."})
			return "gateway connection lost", ""
		}
		switch ft {
		case wire.FrameData:
			if err := t.write(websocket.BinaryMessage, p); err != nil {
				return "browser disconnected", ""
			}
			t.watchers.send(p)
		case wire.FrameExit:
			// The portal may have cut the connection itself (a revoked
			// gateway): the gateway can answer that with an exit frame
			// before the socket closes, so the portal's reason comes first.
			if reason := gateways.CloseReason(conn); reason != "" {
				code := gateways.CloseCode(conn)
				t.sendControl(control{Type: "error", Code: code, Message: reason})
				return strings.ReplaceAll(code, "_", " "), reason
			}
			ex, err := wire.ParseExit(p)
			if err != nil {
				t.log.Warn("bad exit frame from gateway", "err", err)
			}
			msg := exitMessage(ex)
			status := ex.Status
			t.sendControl(control{Type: "exit", Status: &status, Message: msg})
			t.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return endRemote, msg
		}
	}
}

// forwardInput passes one binary message from the browser (keystrokes or
// a paste of any length) to the gateway in frames of at most len(buf)
// bytes.
func (t *termSession) forwardInput(rd io.Reader, fw *wire.FrameWriter, buf []byte) error {
	for {
		n, err := io.ReadFull(rd, buf)
		if n > 0 {
			if werr := fw.Write(wire.FrameData, buf[:n]); werr != nil {
				return werr
			}
			// A long paste over a slow link is activity, not idleness.
			t.ws.SetReadDeadline(time.Now().Add(wsReadTimeout))
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil // the end of the message
		case err != nil:
			return err
		}
	}
}

// browserControl acts on one control message from the browser: a resize
// goes to the gateway unless the size is the current one; anything else
// is refused, with a notice to the browser, and the session goes on.
func (t *termSession) browserControl(rd io.Reader, fw *wire.FrameWriter, buf []byte) error {
	// Read at most one byte past the limit: enough to know a message is
	// too large; the WebSocket reader skips the rest of it.
	n, err := io.ReadFull(rd, buf[:maxControlMessage+1])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	cols, rows, refused := browserControl(buf[:n])
	if refused != nil {
		t.refuse(*refused)
		return nil
	}
	if cols == t.cols && rows == t.rows {
		return nil
	}
	t.cols, t.rows = cols, rows
	return fw.Write(wire.FrameResize, wire.ResizePayload(uint16(cols), uint16(rows)))
}

// refuse tells the browser that the portal ignored one of its messages,
// at most once per refusalInterval.
func (t *termSession) refuse(c control) {
	if now := t.srv.Now(); t.lastRefusal.IsZero() || now.Sub(t.lastRefusal) >= refusalInterval {
		t.lastRefusal = now
		t.log.Info("refused a message from the browser", "code", c.Code)
		t.sendControl(c)
	}
}

func exitMessage(ex wire.Exit) string {
	switch {
	case ex.Message != "":
		return "Session ended: " + ex.Message
	case ex.Signal != "":
		return "Session ended: the remote shell was killed by signal " + ex.Signal
	default:
		return fmt.Sprintf("Session ended (exit status %d)", ex.Status)
	}
}

// dialFailure is why a session could not be opened, in words for the user.
type dialFailure struct {
	code, msg string
	details   map[string]string
}

// detailsFor returns audit details naming the gateway and target; it works
// on a nil failure too, for the success path.
func (f *dialFailure) detailsFor(gw gateways.Gateway, res store.Resource) map[string]string {
	d := map[string]string{"gateway": gw.Name, "segment": gw.Segment, "target": net.JoinHostPort(res.Host, strconv.Itoa(res.Port))}
	if f != nil {
		for k, v := range f.details {
			d[k] = v
		}
	}
	return d
}

// desktopRequest turns a resource's options into a desktop session's. For
// RDP, a resource without a fixed size takes the browser window's, w×h
// pixels, when it is in range.
func desktopRequest(o store.Options, protocol string, w, h int, indexed bool) *wire.Desktop {
	d := &wire.Desktop{ViewOnly: o.ViewOnly, NoClipboardIn: !o.ClipboardIn(), NoClipboardOut: !o.ClipboardOut(),
		ColorDepth: o.ColorDepth, IndexedImages: indexed}
	if protocol != wire.ProtocolRDP {
		return d
	}
	d.Domain, d.Security, d.IgnoreCert, d.KeyboardLayout = o.Domain, o.Security, o.IgnoreCert, keyboardLayouts[o.KeyboardLayout]
	d.Width, d.Height, d.FixedSize = o.Width, o.Height, o.Width != 0
	if d.Width == 0 && w >= wire.MinDesktopSize && h >= wire.MinDesktopSize {
		d.Width, d.Height = min(w, wire.MaxDesktopSize), min(h, wire.MaxDesktopSize)
	}
	return d
}

// dialResource chooses a gateway for res and opens a terminal session to it
// through that gateway, pinning the host key on first use and keeping a
// changed one for an admin to accept. It is shared by terminals, desktops
// and the admin's connection test; cols and rows are a terminal's size in
// characters or a desktop's in pixels, and indexed says the browser
// decodes indexed images.
func (s *Server) dialResource(ctx context.Context, u store.User, res store.Resource, client, sessionID string, cols, rows int, indexed bool) (net.Conn, *wire.Response, gateways.Gateway, *dialFailure) {
	log := s.Logger.With("session", sessionID, "user", u.Name, "resource", res.Name)
	secrets, err := s.Store.ResourceSecrets(ctx, res.ID)
	if err != nil {
		log.Error("read resource credentials", "err", err)
		return nil, nil, gateways.Gateway{}, &dialFailure{details: map[string]string{}, code: "internal", msg: "The portal could not read the credentials of this resource. An administrator should check the portal log."}
	}
	gw, err := s.Gateways.Select(res.Tags)
	if err != nil {
		return nil, nil, gw, &dialFailure{details: map[string]string{}, code: "no_gateway", msg: capitalize(err.Error()) + ": ask an administrator to check the gateways."}
	}
	req := &wire.Request{
		Kind: wire.KindSession, Protocol: res.Protocol, SessionID: sessionID,
		User: u.Name, ClientAddr: client, Resource: res.Name,
		Target:      wire.Target{Host: res.Host, Port: res.Port},
		Credentials: wire.Credentials{Username: res.Login, Password: wire.Secret(secrets.Password), PrivateKey: wire.Secret(secrets.PrivateKey)},
	}
	req.HostKey = res.HostKey
	req.Recording = sessionRecording(res.Options)
	switch res.Protocol {
	case wire.ProtocolSSH:
		req.Terminal = &wire.Terminal{Term: "xterm-256color", Cols: cols, Rows: rows}
	case wire.ProtocolSFTP:
		// File sessions are not recorded: the portal audits each file
		// operation instead.
		req.Recording = nil
	default:
		req.Desktop = desktopRequest(res.Options, res.Protocol, cols, rows, indexed)
	}
	failure := &dialFailure{details: map[string]string{}}
	conn, resp, err := s.Gateways.Open(ctx, gw, req)
	if err != nil {
		var werr *wire.Error
		var unavailable *gateways.UnavailableError
		switch {
		case errors.As(err, &werr):
			if werr.Code == wire.CodeHostKeyMismatch && resp != nil && resp.HostKey != "" {
				if err := s.Store.SetSetting(ctx, offeredKeySetting(res.ID), resp.HostKey); err != nil {
					log.Error("keep offered host key", "err", err)
				}
				failure.details["offered_host_key"] = resp.HostKeyFingerprint
			}
			failure.code, failure.msg = string(werr.Code), werr.Message
		case errors.As(err, &unavailable):
			log.Error("gateway unavailable", "gateway", gw.Name, "err", err)
			failure.code = "gateway_unavailable"
			failure.msg = fmt.Sprintf("The gateway %s could not be reached, so the connection to %s was not opened. Try again, or ask an administrator to check the gateway.", gw.Name, res.Name)
			failure.details["error"] = unavailable.Err.Error()
		default:
			log.Error("open session", "err", err)
			failure.code, failure.msg = "internal", "The connection could not be opened because of an internal error."
		}
		failure.details = failure.detailsFor(gw, res)
		return nil, resp, gw, failure
	}
	if res.HostKey == "" && resp.HostKey != "" {
		if err := s.Store.PinHostKey(ctx, res.ID, resp.HostKey); err != nil {
			log.Error("pin host key", "err", err)
		}
	}
	return conn, resp, gw, nil
}
