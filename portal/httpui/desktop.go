package httpui

import (
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/logctx"
	"github.com/keyway-dev/keyway/portal/sessions"
)

// Guacamole status codes sent to the browser (guacamole-common-js shows
// the instruction's message and acts on the code).
const (
	guacUpstreamError    = 0x0203
	guacUpstreamNotFound = 0x0207
	guacSessionClosed    = 0x020B
	guacClientBadRequest = 0x0300
	guacClientForbidden  = 0x0303
	guacClientOverrun    = 0x030D
)

// gatewayLimits bound what the portal accepts from a gateway's display
// stream: image chunks are small, but let a whole frame's clipboard pass.
var gatewayLimits = guac.Limits{MaxElement: 1 << 20, MaxElements: 32}

// endRefused is how a desktop session the portal closed on a browser
// message it would not take is audited; the words the user saw go in the
// event's reason.
const endRefused = "browser message refused"

// wsFlushSize is how much display data the portal gathers into one
// WebSocket message at most.
const wsFlushSize = 64 << 10

// desktopSocket serves guacamole-common-js's WebSocket tunnel for a VNC or
// RDP resource: it relays the gateway's Guacamole instructions unchanged and
// checks the browser's before passing them on.
func (s *Server) desktopSocket(w http.ResponseWriter, r *http.Request) {
	// The browser's window size (query string of the tunnel's connect),
	// which an RDP desktop may take, and the image formats it decodes
	// beyond PNG and JPEG.
	q := r.URL.Query()
	width, _ := strconv.Atoi(q.Get("width"))
	height, _ := strconv.Atoi(q.Get("height"))
	adm, refusal, ok := s.admitSocket(w, r, sessions.Request{Kind: sessions.KindDesktop, Cols: width, Rows: height, Indexed: q.Get("indexed") == "1"})
	if !ok {
		return
	}
	// Compression, where the browser offers it (all do), takes back most
	// of what base64 adds to the images. Huffman coding alone: it costs
	// little, and without matching repeated strings it gives nothing to
	// the attacks on compression under TLS (CRIME, BREACH), which learn a
	// secret from how well it matches data of their own.
	up := websocket.Upgrader{ReadBufferSize: 8 << 10, WriteBufferSize: 64 << 10, CheckOrigin: sameOrigin,
		HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"guacamole"}, EnableCompression: true}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	if err := ws.SetCompressionLevel(flate.HuffmanOnly); err != nil {
		ws.Close()
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	defer ws.Close()
	// No read limit on the connection: gorilla would close at once with
	// no word to the user. readMessage bounds each message instead, and the
	// relay says why it ends the session.

	var wsMu sync.Mutex // writes come from the relay and from ping echoes
	send := func(b []byte) error {
		wsMu.Lock()
		defer wsMu.Unlock()
		ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		return ws.WriteMessage(websocket.TextMessage, b)
	}
	closeWith := func(msg string, status int) {
		send(guac.New("error", msg, strconv.Itoa(status)).AppendTo(nil))
		wsMu.Lock()
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, strconv.Itoa(status)), time.Now().Add(time.Second))
		wsMu.Unlock()
	}
	// The tunnel opens once the browser sees an id; a refusal is then
	// told as the tunnel's error.
	id := "refused"
	if adm != nil {
		id = adm.ID()
	}
	if err := send(guac.New("", id).AppendTo(nil)); err != nil {
		return
	}
	if refusal != nil {
		closeWith(refusal.Message, desktopRefusalStatus(refusal))
		return
	}
	ctx, cancel := context.WithCancel(logctx.Copy(s.ctx, r.Context()))
	defer cancel()
	sess, err := s.live.Open(ctx, adm)
	if err != nil {
		ref := asRefusal(err)
		closeWith(ref.Message, desktopRefusalStatus(ref))
		return
	}
	log := s.requestLogger(r).With("session", sess.ID, "user", sess.User.Name, "resource", sess.Resource.Name)
	sess.SetWarn(func(msg string) { send(guac.New("msg", strconv.Itoa(guacMsgWarning), msg).AppendTo(nil)) })
	sess.OnNotice(func(n sessions.Notice) { send(noticeInstruction(n, s.Now()).AppendTo(nil)) })
	log.Info("desktop session started", "gateway", sess.Gateway.Name)
	end, reason := s.relayDesktop(ctx, ws, sess.Conn, sess, send, closeWith)
	sess.End(end, reason)
}

// desktopRefusalStatus is the Guacamole status a refused desktop is closed with:
// the browser words some of them itself, but shows the portal's message.
func desktopRefusalStatus(ref *sessions.Refusal) int {
	switch ref.Code {
	case "no_grant", "hook", "policy", "too_many_sessions", "wrong_kind":
		return guacClientForbidden
	}
	return guacUpstreamNotFound
}

// relayDesktop copies instructions both ways until either side ends, and
// says how the session ended.
func (s *Server) relayDesktop(ctx context.Context, ws *websocket.Conn, conn net.Conn, sess relayed, send func([]byte) error, closeWith func(string, int)) (end, reason string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	closeBoth := func() { conn.Close(); ws.Close() }
	stop := context.AfterFunc(ctx, closeBoth)
	var wg sync.WaitGroup
	// On return, close both here unless ctx already did: the browser
	// reader must not wait for its read deadline.
	defer func() {
		if stop() {
			closeBoth()
		}
		wg.Wait()
	}()

	browserGone := make(chan struct{})
	leave := sync.OnceFunc(func() { close(browserGone) })
	// refused is why the portal ended the session on a message from the
	// browser; set before browserGone closes.
	var refused string
	wg.Add(1)
	go func() { // browser → gateway, checked instruction by instruction
		defer wg.Done()
		// Deferred calls run last first: browserGone closes before cancel
		// cuts the gateway, so the session's end is put down to the browser.
		defer cancel()
		defer leave()
		var out []byte
		ws.SetReadDeadline(time.Now().Add(wsReadTimeout))
		for {
			mt, msg, err := readMessage(ws, maxBrowserMessage())
			if errors.Is(err, errMessageTooLarge) {
				refused = fmt.Sprintf("This page sent the portal a message of more than %d KiB, which it does not take; the session was closed. Reload the page to connect again.", maxBrowserMessage()>>10)
				closeWith(refused, guacClientOverrun)
				return
			}
			if err != nil {
				return
			}
			ws.SetReadDeadline(time.Now().Add(wsReadTimeout))
			if mt != websocket.TextMessage {
				continue
			}
			rd := guac.NewReader(bytes.NewReader(msg), guac.BrowserLimits)
			out = out[:0]
			for {
				in, err := rd.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil { // the stream cannot be followed past it
					refused = "This page sent the portal an instruction it could not read (" + err.Error() + "); the session was closed. Reload the page to connect again."
					closeWith(refused, guacClientBadRequest)
					return
				}
				if in.Opcode == "" { // the tunnel's own: echo pings
					if len(in.Args) > 0 && in.Args[0] == "ping" {
						send(in.AppendTo(nil))
					}
					continue
				}
				if personInput[in.Opcode] {
					sess.Touch()
				}
				if in.Opcode == "disconnect" {
					// The page is closing (guacamole-common-js says so
					// before it closes the socket). The gateway ends the
					// session at once, which must not be put down to the
					// gateway connection.
					leave()
				}
				out = in.AppendTo(out)
			}
			if len(out) > 0 {
				if _, err := conn.Write(out); err != nil {
					return
				}
			}
		}
	}()

	// gateway → browser: whole instructions, one WebSocket message per
	// frame (or per 64 KiB).
	rd := guac.NewReader(conn, gatewayLimits)
	var batch []byte
	for {
		in, err := rd.Read()
		if err != nil {
			select {
			case <-browserGone:
				if refused != "" {
					return endRefused, refused
				}
				return "browser disconnected", ""
			default:
			}
			if len(batch) > 0 {
				send(batch)
			}
			if reason := sess.CloseReason(); reason != "" {
				closeWith(reason, guacSessionClosed)
				return strings.ReplaceAll(sess.CloseCode(), "_", " "), reason
			}
			if s.ctx.Err() != nil {
				closeWith("The portal is shutting down; the session was closed.", guacSessionClosed)
				return "portal shut down", ""
			}
			if gatewayRestarted(sess) {
				closeWith(sessions.MsgGatewayShutdown, guacSessionClosed)
				return "gateway shutting down", sessions.MsgGatewayShutdown
			}
			closeWith("The connection to the gateway was lost; the session has ended.", guacUpstreamError)
			return "gateway connection lost", ""
		}
		batch = in.AppendTo(batch)
		if in.Opcode == "error" {
			send(batch)
			wsClose(ws, guacUpstreamError)
			return endRemote, "The desktop closed: " + firstArg(in)
		}
		// Send at the end of a frame, when the batch is large, or when
		// nothing more has arrived (a clipboard change on an idle screen).
		if in.Opcode == "sync" || len(batch) >= wsFlushSize || rd.Buffered() == 0 {
			if err := send(batch); err != nil {
				return "browser disconnected", ""
			}
			batch = batch[:0]
		}
	}
}

// personInput are the browser's instructions that a person made: they keep a
// session from running idle, while the browser's own (sync, ack) do not.
var personInput = map[string]bool{"key": true, "mouse": true, "touch": true, "clipboard": true}

// guacMsgWarning is the code of the msg instruction that carries a warning
// to the user (the session ends soon); guacamole-common-js hands codes it
// does not know to the page's onmsg.
const guacMsgWarning = 0x4B57

// maxBrowserMessage bounds one WebSocket message from the browser.
func maxBrowserMessage() int64 { return int64(guac.BrowserLimits.MaxElement) + 4096 }

// errMessageTooLarge: a browser's message went past its limit.
var errMessageTooLarge = errors.New("message from the browser too large")

// readMessage reads one message of at most limit bytes. The connection's
// read limit counts bytes as they arrive, which compression lets a
// browser multiply by a thousand; this counts them decompressed.
func readMessage(ws *websocket.Conn, limit int64) (int, []byte, error) {
	mt, r, err := ws.NextReader()
	if err != nil {
		return 0, nil, err
	}
	msg, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(msg)) > limit {
		return 0, nil, errMessageTooLarge
	}
	return mt, msg, nil
}

func wsClose(ws *websocket.Conn, status int) {
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, strconv.Itoa(status)), time.Now().Add(time.Second))
}

func firstArg(in guac.Instruction) string {
	if len(in.Args) > 0 {
		return in.Args[0]
	}
	return ""
}
