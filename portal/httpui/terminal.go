package httpui

import (
	"context"
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

	"github.com/keyway-dev/keyway/gateway/logctx"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/sessions"
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
	// Notice, Seconds and Deadline are a warning that the session will be
	// closed (the portal restarts): its words without the time, the
	// seconds left and the time (RFC 3339) when it closes.
	Notice   string `json:"notice,omitempty"`
	Seconds  *int   `json:"seconds,omitempty"`
	Deadline string `json:"deadline,omitempty"`
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

// relayed is what a relay needs of its session: to note the user's input
// and to say why the portal cut it.
type relayed interface {
	Touch()
	CloseCode() string
	CloseReason() string
}

// admitSocket checks a session WebSocket request before the upgrade: it
// must come from a page of this portal (answered 403 otherwise, with no
// upgrade), and the session manager must admit it. The admission runs on
// the request's context, so a browser that leaves while the hook is asked
// cancels the call. A refusal is returned for the handler to tell through
// the socket once upgraded: a browser's WebSocket cannot read an HTTP
// error.
func (s *Server) admitSocket(w http.ResponseWriter, r *http.Request, req sessions.Request) (*sessions.Admission, *sessions.Refusal, bool) {
	u, _ := currentUser(r)
	if !sameOrigin(r) {
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionAuthzDenied, Target: r.URL.Path,
			Outcome: audit.OutcomeDenied, Reason: "WebSocket from another origin: " + r.Header.Get("Origin")})
		http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
		return nil, nil, false
	}
	req.User = u
	req.ResourceID, _ = pathID(r) // a malformed id is a resource that does not exist
	req.Client = s.clientInfo(r)
	req.WebToken = s.Sessions.Token(r.Context())
	req.MFAAt = s.sessionMFAAt(r)
	a, err := s.live.Admit(r.Context(), req)
	if err != nil {
		var ref *sessions.Refusal
		if !errors.As(err, &ref) {
			ref = &sessions.Refusal{Code: "internal", Message: "The connection could not be opened because of an internal error."}
		}
		return nil, ref, true
	}
	return a, nil, true
}

func (s *Server) terminalSocket(w http.ResponseWriter, r *http.Request) {
	cols, rows := termSize(r.URL.Query())
	adm, refusal, ok := s.admitSocket(w, r, sessions.Request{Kind: sessions.KindTerminal, Cols: cols, Rows: rows})
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

	t := &termSession{srv: s, ws: ws, cols: cols, rows: rows, log: s.requestLogger(r)}
	if refusal != nil {
		t.fail(refusal)
		return
	}
	t.run(logctx.Copy(s.ctx, r.Context()), adm)
}

// termSession is one browser terminal bridged to a gateway session.
type termSession struct {
	srv  *Server
	ws   *websocket.Conn
	sess relayed
	// watchers get a copy of the output for read-only viewers.
	watchers *sessions.Watchers
	log      *slog.Logger
	// cols and rows are the remote terminal's size, changed only by the
	// goroutine reading the browser once the session runs.
	cols, rows int
	// lastRefusal is when the browser was last told of a refused
	// message; only the goroutine reading the browser uses it.
	lastRefusal time.Time
	// wmu orders messages to the browser: the relay and the guard's
	// warnings both write.
	wmu sync.Mutex
}

// fail tells the browser why the session could not start, and closes.
// The session manager has audited it.
func (t *termSession) fail(ref *sessions.Refusal) {
	t.log.Warn("terminal connection refused", "code", ref.Code, "reason", ref.Reason)
	t.sendControl(control{Type: "error", Code: ref.Code, Message: ref.Message})
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

func (t *termSession) run(ctx context.Context, adm *sessions.Admission) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess, err := t.srv.live.Open(ctx, adm)
	if err != nil {
		var ref *sessions.Refusal
		if errors.As(err, &ref) {
			t.fail(ref)
		}
		return
	}
	t.sess, t.watchers = sess, sess.Watchers
	t.log = t.log.With("session", sess.ID, "user", sess.User.Name, "resource", sess.Resource.Name)
	sess.SetWarn(func(msg string) { t.sendControl(control{Type: "warning", Message: msg}) })
	sess.OnNotice(func(n sessions.Notice) { t.sendControl(noticeControl(n, t.srv.Now())) })
	if err := t.sendControl(control{Type: "connected", Message: fmt.Sprintf("Connected to %s as %s", sess.Resource.Name, sess.Resource.Login)}); err != nil {
		sess.End("browser disconnected", "")
		return
	}
	end, reason := t.bridge(ctx, sess.Conn)
	sess.End(end, reason)
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
				t.sess.Touch()
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
			if reason := t.sess.CloseReason(); reason != "" {
				code := t.sess.CloseCode()
				t.sendControl(control{Type: "error", Code: code, Message: reason})
				return strings.ReplaceAll(code, "_", " "), reason
			}
			if gatewayRestarted(t.sess) {
				t.sendControl(control{Type: "error", Code: sessions.CodeGatewayShutdown, Message: sessions.MsgGatewayShutdown})
				return "gateway shutting down", sessions.MsgGatewayShutdown
			}
			t.sendControl(control{Type: "error", Code: "gateway_lost", Message: "The connection to the gateway was lost; the session has ended."})
			return "gateway connection lost", ""
		}
		switch ft {
		case wire.FrameData:
			if err := t.write(websocket.BinaryMessage, p); err != nil {
				return "browser disconnected", ""
			}
			t.watchers.Send(p)
		case wire.FrameExit:
			// The portal may have cut the connection itself (a revoked
			// gateway): the gateway can answer that with an exit frame
			// before the socket closes, so the portal's reason comes first.
			if reason := t.sess.CloseReason(); reason != "" {
				code := t.sess.CloseCode()
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
