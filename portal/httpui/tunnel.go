package httpui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/splice"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// Native clients (keyway) open each TCP stream as a CONNECT request on
// the portal's HTTPS listener: over HTTP/2 many streams share one
// connection, each with its own flow control; over HTTP/1.1 the
// connection is hijacked and carries one stream. The Keyway-Target header
// says where the stream goes.

// Headers of a stream.
const (
	headerSession = "Keyway-Session"
	// headerEnd is an HTTP/2 trailer saying why the portal ended a stream
	// (an administrator, a revoked grant), when it did.
	headerEnd = "Keyway-End"
)

const (
	// maxTargetHeader bounds Keyway-Target: "terminal/", a resource name
	// and a short query, or "net/" and a DNS name with a port.
	maxTargetHeader = 512
	// h1TunnelHeaderTimeout bounds writing the answer of an HTTP/1.1
	// CONNECT to a client that does not read.
	h1TunnelHeaderTimeout = 10 * time.Second
)

var termPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// tunnelTarget is a parsed Keyway-Target.
type tunnelTarget struct {
	kind string // "resource", "net" or "terminal"
	// name is a resource's name; addr the host:port of a net target.
	name, addr string
	cols, rows int
	term       string
}

// parseTunnelTarget reads a Keyway-Target header; the error is in words
// for the user.
func parseTunnelTarget(v string) (tunnelTarget, error) {
	if v == "" {
		return tunnelTarget{}, errors.New("the request has no Keyway-Target header saying where to connect")
	}
	if len(v) > maxTargetHeader {
		return tunnelTarget{}, fmt.Errorf("the Keyway-Target header is longer than %d bytes", maxTargetHeader)
	}
	kind, rest, _ := strings.Cut(v, "/")
	switch kind {
	case "resource":
		if !namePattern.MatchString(rest) {
			return tunnelTarget{}, fmt.Errorf("%q is not a resource name", rest)
		}
		return tunnelTarget{kind: kind, name: rest}, nil
	case "net":
		if rest == "" {
			return tunnelTarget{}, errors.New("net/ needs an address as host:port")
		}
		return tunnelTarget{kind: kind, addr: rest}, nil
	case "terminal":
		name, query, _ := strings.Cut(rest, "?")
		if !namePattern.MatchString(name) {
			return tunnelTarget{}, fmt.Errorf("%q is not a resource name", name)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return tunnelTarget{}, errors.New("the terminal options are not a valid query (cols=80&rows=24&term=xterm-256color)")
		}
		t := tunnelTarget{kind: kind, name: name, cols: 80, rows: 24, term: "xterm-256color"}
		for _, f := range []struct {
			key string
			v   *int
		}{{"cols", &t.cols}, {"rows", &t.rows}} {
			if s := q.Get(f.key); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 || n > maxTermSize {
					return tunnelTarget{}, fmt.Errorf("%s must be a number from 1 to %d", f.key, maxTermSize)
				}
				*f.v = n
			}
		}
		if s := q.Get("term"); s != "" {
			if !termPattern.MatchString(s) {
				return tunnelTarget{}, errors.New("term must be a terminal type such as xterm-256color (letters, digits, . _ + -, up to 64)")
			}
			t.term = s
		}
		return t, nil
	}
	return tunnelTarget{}, errors.New("the Keyway-Target header must start with resource/, net/ or terminal/")
}

// errNoClientCredential is a request with no bearer credential at all.
var errNoClientCredential = errors.New("no credential")

// clientAuth authenticates a native client: a device credential with its
// key's proof (keyway login), or an API token (scripts), for which the
// device is zero. Errors are *clientAuthError.
func (s *Server) clientAuth(r *http.Request) (store.User, sessions.Device, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return store.User{}, sessions.Device{}, &clientAuthError{code: "invalid_credential",
			msg: "The request carries no credential: run keyway login, or set KEYWAY_TOKEN to an API token.", err: errNoClientCredential}
	}
	switch u, d, err := s.deviceAuth(r); {
	case err == nil:
		return u, sessions.Device{ID: d.ID, Name: d.Name, ExpiresAt: d.ExpiresAt, MFAAt: d.MFAAt}, nil
	case isInternalAuthError(err):
		return store.User{}, sessions.Device{}, err
	case !errors.Is(err, errNoDeviceCredential):
		code, msg := deviceAuthError(err)
		return store.User{}, sessions.Device{}, &clientAuthError{code: code, msg: msg, err: err}
	}
	u, _, err := s.Store.TokenUser(r.Context(), token)
	if err != nil {
		return store.User{}, sessions.Device{}, &clientAuthError{code: "invalid_credential",
			msg: "The credential is unknown, expired or revoked: run keyway login again.", err: err}
	}
	return u, sessions.Device{}, nil
}

// clientAuthError is why a native client's credential was refused.
type clientAuthError struct {
	code, msg string
	err       error
}

func (e *clientAuthError) Error() string { return e.msg }
func (e *clientAuthError) Unwrap() error { return e.err }

// clientAuthFailed answers a refused credential with 401.
func (s *Server) clientAuthFailed(w http.ResponseWriter, r *http.Request, err error) {
	var ce *clientAuthError
	if !errors.As(err, &ce) {
		s.Logger.ErrorContext(r.Context(), "authenticate native client", "err", err)
		writeClientError(w, http.StatusInternalServerError, "internal", "The portal could not check the credential; try again.")
		return
	}
	if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, errNoClientCredential) {
		s.Logger.WarnContext(r.Context(), "native client credential refused", "code", ce.code, "err", ce.err)
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="keyway", error="invalid_token"`)
	writeClientError(w, http.StatusUnauthorized, ce.code, ce.msg)
}

// tunnel serves a CONNECT request: one native client stream.
func (s *Server) tunnel(w http.ResponseWriter, r *http.Request) {
	u, device, err := s.clientAuth(r)
	if err != nil {
		s.clientAuthFailed(w, r, err)
		return
	}
	t, err := parseTunnelTarget(r.Header.Get(headerTarget))
	if err != nil {
		s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionConnect, Target: truncateRunes(r.Header.Get(headerTarget), 80),
			ClientAddr: s.clientInfo(r).Addr, Outcome: audit.OutcomeDenied, Reason: err.Error(), Details: map[string]string{"code": "bad_target", "kind": "tcp"}})
		writeClientError(w, http.StatusBadRequest, "bad_target", capitalizeFirst(err.Error())+".")
		return
	}
	// An API token (no device) has passed no MFA check: a resource that
	// asks for step-up refuses it.
	req := sessions.Request{Kind: sessions.KindTCP, User: u, Device: device, Client: s.clientInfo(r), MFAAt: device.MFAAt}
	if req.Client.ClientVersion == "" {
		req.Client.ClientVersion = truncateRunes(r.Header.Get("User-Agent"), 128)
	}
	if t.kind == "terminal" {
		req.Kind, req.Cols, req.Rows, req.Term = sessions.KindTerminal, t.cols, t.rows, t.term
	}
	var sess *sessions.Session
	switch t.kind {
	case "net":
		req.Target = t.addr
		sess, err = s.live.StartNetwork(r.Context(), req)
	default:
		// A name that is no resource is asked as id 0: the session
		// manager refuses it exactly like one without a grant.
		if res, lerr := s.Store.ResourceByName(r.Context(), t.name); lerr == nil {
			req.ResourceID = res.ID
		} else if !errors.Is(lerr, store.ErrNotFound) {
			s.Logger.ErrorContext(r.Context(), "look up resource", "name", t.name, "err", lerr)
		}
		sess, err = s.live.Start(r.Context(), req)
	}
	if err != nil {
		var ref *sessions.Refusal
		if !errors.As(err, &ref) {
			s.Logger.ErrorContext(r.Context(), "start stream", "user", u.Name, "err", err)
			ref = &sessions.Refusal{Code: "internal", Status: http.StatusInternalServerError, Message: "The connection could not be opened because of an internal error."}
		}
		status := ref.Status
		if status == 0 {
			status = http.StatusBadGateway
		}
		if ref.Code == sessions.CodeStepUp {
			s.writeStepUpRefusal(w, r, device, ref)
			return
		}
		writeClientError(w, status, ref.Code, ref.Message)
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	var end, reason string
	if r.ProtoMajor >= 2 {
		end, reason = s.serveH2Stream(w, r, sess, t.kind == "terminal")
	} else {
		end, reason = s.serveH1Stream(w, sess, t.kind == "terminal")
	}
	sess.End(end, reason)
}

// serveH2Stream carries a stream on an HTTP/2 request: the request body
// is the client's bytes, the response body the target's.
func (s *Server) serveH2Stream(w http.ResponseWriter, r *http.Request, sess *sessions.Session, terminal bool) (end, reason string) {
	rc := http.NewResponseController(w)
	// A stream may stay quiet for hours: the server's body deadline does
	// not apply.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set(headerSession, sess.ID)
	w.Header().Set("Trailer", headerEnd)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return "client disconnected", ""
	}
	out := &flushWriter{w: w, rc: rc}
	st := &stream{srv: s, sess: sess, in: r.Body, out: out, stopIn: func() { r.Body.Close() }}
	if terminal {
		end, reason = st.terminal()
	} else {
		end, reason = st.tcp()
	}
	if code := sess.CloseCode(); code != "" {
		w.Header().Set(headerEnd, code+": "+strings.ReplaceAll(sess.CloseReason(), "\n", " "))
	}
	return end, reason
}

// serveH1Stream hijacks an HTTP/1.1 CONNECT and carries the stream on the
// raw connection.
func (s *Server) serveH1Stream(w http.ResponseWriter, sess *sessions.Session, terminal bool) (end, reason string) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.Logger.Error("hijack CONNECT", "err", err)
		return "client disconnected", ""
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(h1TunnelHeaderTimeout))
	fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\n%s: %s\r\n\r\n", headerSession, sess.ID)
	if err := brw.Flush(); err != nil {
		return "client disconnected", ""
	}
	conn.SetDeadline(time.Time{})
	// Bytes the client sent after its request are in brw's buffer.
	var in io.Reader = conn
	if brw.Reader.Buffered() > 0 {
		in = io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), conn)
	}
	if terminal {
		st := &stream{srv: s, sess: sess, in: in, out: conn, stopIn: func() { conn.Close() }}
		return st.terminal()
	}
	stop := context.AfterFunc(s.ctx, func() { sess.Conn.Close() })
	defer stop()
	// As TCP does: each side's end is passed on to the other, which may go
	// on sending until it ends too.
	_, _, err = splice.Join(&h1Conn{Conn: conn, in: in}, &sessionConn{Conn: sess.Conn, sess: sess})
	switch {
	case s.ctx.Err() != nil:
		return "portal shut down", ""
	case sess.CloseReason() != "":
		return strings.ReplaceAll(sess.CloseCode(), "_", " "), sess.CloseReason()
	case err != nil:
		return "client disconnected", ""
	}
	return endRemote, ""
}

// h1Conn is a hijacked client connection, read through what the server
// had buffered.
type h1Conn struct {
	net.Conn
	in io.Reader
}

func (c *h1Conn) Read(p []byte) (int, error) { return c.in.Read(p) }

func (c *h1Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// sessionConn is a session's gateway connection that can half-close.
type sessionConn struct {
	net.Conn
	sess *sessions.Session
}

func (c *sessionConn) CloseWrite() error { return c.sess.CloseWrite() }

// flushWriter flushes each write to the client at once.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}

// stream relays one client stream and its gateway session.
type stream struct {
	srv  *Server
	sess *sessions.Session
	in   io.Reader
	out  io.Writer
	// stopIn unblocks a read of in.
	stopIn func()
}

// tcp relays raw bytes both ways on an HTTP/2 stream. HTTP/2 has no way
// for a handler to end its response while it still reads the request:
// the target's end ends the stream, and the client is asked to stop
// sending (RST_STREAM NO_ERROR). The client's end is passed on to the
// target, which may go on sending.
func (st *stream) tcp() (end, reason string) {
	conn := st.sess.Conn
	stop := context.AfterFunc(st.srv.ctx, func() { conn.Close() })
	defer stop()
	upDone := make(chan error, 1)
	go func() { // client → target
		_, err := copyStream(conn, st.in)
		if err != nil || st.sess.CloseWrite() != nil {
			conn.Close()
		}
		upDone <- err
	}()
	_, downErr := copyStream(st.out, conn)
	var upErr error
	select {
	case upErr = <-upDone:
	default:
		// The stream is over: the client's reader and a write to a
		// target that stopped reading must both come unstuck.
		st.stopIn()
		conn.Close()
		upErr = <-upDone
	}
	switch {
	case st.srv.ctx.Err() != nil:
		return "portal shut down", ""
	case st.sess.CloseReason() != "":
		return strings.ReplaceAll(st.sess.CloseCode(), "_", " "), st.sess.CloseReason()
	case downErr != nil && (isWriteErr(downErr) || (upErr != nil && !isWriteErr(upErr))):
		return "client disconnected", ""
	}
	return endRemote, ""
}

// errWrite marks a copy that failed writing, not reading.
type errWrite struct{ error }

func (e errWrite) Unwrap() error { return e.error }

func isWriteErr(err error) bool {
	var we errWrite
	return errors.As(err, &we)
}

// copyStream copies src to dst until src ends (nil) or either fails,
// with splice.Copy's small buffer while the stream idles; a failed write
// comes back as errWrite.
func copyStream(dst io.Writer, src io.Reader) (int64, error) {
	return splice.Copy(markWrites{dst}, src)
}

// markWrites marks its writer's errors as errWrite.
type markWrites struct{ w io.Writer }

func (m markWrites) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		err = errWrite{err}
	}
	return n, err
}

// terminal relays a terminal session as wire frames: from the client
// only FrameData and FrameResize, to it FrameData and FrameExit.
func (st *stream) terminal() (end, reason string) {
	sess, conn := st.sess, st.sess.Conn
	stop := context.AfterFunc(st.srv.ctx, func() { conn.Close() })
	defer stop()
	var wmu sync.Mutex
	send := func(t wire.FrameType, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return wire.WriteFrame(st.out, t, p)
	}
	sess.SetWarn(func(msg string) { send(wire.FrameData, []byte("\r\n[keyway] "+msg+"\r\n")) })
	upDone := make(chan string, 1)
	go func() { // client → gateway; the only writer to the gateway
		fr, fw := wire.NewFrameReader(st.in), wire.NewFrameWriter(conn)
		why := ""
		defer func() { conn.Close(); upDone <- why }()
		for {
			ft, p, err := fr.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					why = "the client sent a malformed frame"
				}
				return
			}
			switch ft {
			case wire.FrameData:
				sess.Touch()
			case wire.FrameResize:
				if _, _, err := wire.ParseResize(p); err != nil {
					why = "the client sent a bad terminal size"
					return
				}
			default:
				why = fmt.Sprintf("the client sent a frame of type %d, which it may not", ft)
				return
			}
			if err := fw.Write(ft, p); err != nil {
				return
			}
		}
	}()
	end, reason = st.terminalDown(send)
	st.stopIn()
	conn.Close() // a write to a gateway that stopped reading comes unstuck
	if why := <-upDone; why != "" && end == "client disconnected" {
		reason = capitalizeFirst(why) + "."
		end = "protocol error"
		st.srv.Logger.Info("native terminal stream ended", "session", sess.ID, "reason", why)
	}
	return end, reason
}

// terminalDown relays the gateway's frames to the client until the
// session ends, and says how.
func (st *stream) terminalDown(send func(wire.FrameType, []byte) error) (end, reason string) {
	sess := st.sess
	fr := wire.NewFrameReader(sess.Conn)
	for {
		ft, p, err := fr.Next()
		if err != nil {
			if st.srv.ctx.Err() != nil {
				send(wire.FrameExit, wire.Exit{Status: 255, Message: "The portal is shutting down; the session was closed."}.Payload())
				return "portal shut down", ""
			}
			if reason := sess.CloseReason(); reason != "" {
				send(wire.FrameExit, wire.Exit{Status: 255, Message: reason}.Payload())
				return strings.ReplaceAll(sess.CloseCode(), "_", " "), reason
			}
			return "client disconnected", ""
		}
		switch ft {
		case wire.FrameData:
			if err := send(wire.FrameData, p); err != nil {
				return "client disconnected", ""
			}
			sess.Watchers.Send(p)
		case wire.FrameExit:
			if reason := sess.CloseReason(); reason != "" {
				send(wire.FrameExit, wire.Exit{Status: 255, Message: reason}.Payload())
				return strings.ReplaceAll(sess.CloseCode(), "_", " "), reason
			}
			ex, err := wire.ParseExit(p)
			if err != nil {
				st.srv.Logger.Warn("bad exit frame from gateway", "err", err)
			}
			send(wire.FrameExit, ex.Payload())
			return endRemote, exitMessage(ex)
		}
	}
}

// capitalizeFirst upper-cases the first letter of s.
func capitalizeFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// truncateRunes cuts s to n runes, for a hostile string put in the log.
func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
