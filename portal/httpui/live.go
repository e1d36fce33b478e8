package httpui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// sessionsPage lists the sessions running now, newest first; admins can
// end them.
func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	now := s.Now()
	v := ui.SessionsView{CanTerminate: u.Role == store.RoleAdmin}
	for _, ls := range s.live.All(r.Context()) {
		v.Sessions = append(v.Sessions, ui.SessionRow{ID: ls.ID, User: ls.User.Name, Resource: ls.Resource.Name, Protocol: liveProtocol(ls),
			Gateway: ls.Gateway.Name, ClientAddr: ls.Client.Addr, Start: ls.Start, Duration: now.Sub(ls.Start),
			Idle: ls.Idle(now), Watchable: ls.Watchable(), Posture: ls.Posture,
			Tunnel: ls.Kind == sessions.KindTCP, Device: ls.Device.Name, Target: ls.TargetAddr})
		v.Users = appendNew(v.Users, ls.User.Name)
		v.Resources = appendNew(v.Resources, ls.Resource.Name)
		v.Gateways = appendNew(v.Gateways, ls.Gateway.Name)
	}
	for _, l := range [][]string{v.Users, v.Resources, v.Gateways} {
		slices.SortFunc(l, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	}
	if r.URL.Query().Get("partial") == "1" {
		// The page's own refresh: the table alone.
		s.render(w, r, http.StatusOK, ui.SessionsList(v))
		return
	}
	s.render(w, r, http.StatusOK, ui.Sessions(s.page(r, "Live sessions", "sessions"), v))
}

// liveProtocol is the protocol a running session is listed with: file
// browsing runs SFTP on an SSH resource.
func liveProtocol(ls *sessions.Session) string {
	switch ls.Kind {
	case sessions.KindFiles:
		return "sftp"
	case sessions.KindTCP:
		return "tcp"
	}
	return ls.Resource.Protocol
}

// liveKind is what a running session is: "tunnel" for a native client's
// TCP stream, else its session kind (terminal, desktop, files).
func liveKind(ls *sessions.Session) string {
	if ls.Kind == sessions.KindTCP {
		return "tunnel"
	}
	return string(ls.Kind)
}

func appendNew(l []string, v string) []string {
	if v == "" || slices.Contains(l, v) {
		return l
	}
	return append(l, v)
}

// terminateSession ends a running session; its user is told an
// administrator ended it.
func (s *Server) terminateSession(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	ended := s.live.Terminate(actor.Name, sessions.Filter{ID: r.PathValue("id")})
	if len(ended) == 0 {
		s.setFlash(r, "error", "That session has already ended.")
		http.Redirect(w, r, "/sessions", http.StatusSeeOther)
		return
	}
	s.done(w, r, fmt.Sprintf("Ended %s's session on %s.", ended[0].User.Name, ended[0].Resource.Name), "/sessions")
}

// terminateSessions ends every running session of a user, a resource or
// a gateway (all the form names must match).
func (s *Server) terminateSessions(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	f := sessions.Filter{User: r.PostForm.Get("user"), Resource: r.PostForm.Get("resource"), Gateway: r.PostForm.Get("gateway")}
	if f == (sessions.Filter{}) {
		s.setFlash(r, "error", "Choose a user, a resource or a gateway whose sessions to end.")
		http.Redirect(w, r, "/sessions", http.StatusSeeOther)
		return
	}
	ended := s.live.Terminate(actor.Name, f)
	switch len(ended) {
	case 0:
		s.setFlash(r, "error", "No running session matched; nothing was ended.")
		http.Redirect(w, r, "/sessions", http.StatusSeeOther)
	case 1:
		s.done(w, r, "Ended 1 session.", "/sessions")
	default:
		s.done(w, r, fmt.Sprintf("Ended %d sessions.", len(ended)), "/sessions")
	}
}

// maxWatchMessage bounds what a viewer may send: it has nothing to say.
const maxWatchMessage = 512

// watchPage is the read-only terminal of a running session.
func (s *Server) watchPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ls := s.live.Find(r.Context(), id)
	if ls == nil || !ls.Watchable() {
		s.renderError(w, r, http.StatusNotFound, "That terminal session is not running (desktop sessions cannot be watched yet).")
		return
	}
	s.render(w, r, http.StatusOK, ui.Terminal(s.page(r, "Watching "+ls.User.Name, "sessions"), ui.TerminalView{
		ResourceName: fmt.Sprintf("%s on %s (watching, read-only)", ls.User.Name, ls.Resource.Name), WSPath: "/sessions/" + id + "/watch/ws", Watch: true,
	}))
}

// watchSocket streams a running terminal's output to a read-only viewer,
// from the moment it joins. Watching is a connection like the others: the
// hook and the policies decide it, and it is audited.
func (s *Server) watchSocket(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if !sameOrigin(r) {
		http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
		return
	}
	id := r.PathValue("id")
	if s.Cluster != nil && s.live.Get(id) == nil {
		// Running on another replica: that one serves the watch, and
		// audits it.
		if ls := s.live.Find(r.Context(), id); ls != nil && ls.Replica != "" {
			s.Cluster.ForwardWatch(w, r, ls.Replica, id, u.ID, s.clientInfo(r).Addr)
			return
		}
	}
	s.watch(w, r, u, s.clientInfo(r), s.Sessions.Token(r.Context()), id, sameOrigin)
}

// ForwardedWatch serves a watch another replica forwarded (its internal
// listener authenticated that replica): the viewer is looked up again
// and must still be an admin or auditor.
func (s *Server) ForwardedWatch(w http.ResponseWriter, r *http.Request, sessionID string, viewer int64, clientAddr string) {
	u, err := s.Store.UserByID(r.Context(), viewer)
	if err != nil || u.Disabled || (u.Role != store.RoleAdmin && u.Role != store.RoleAuditor) {
		http.Error(w, "the viewer may not watch sessions", http.StatusForbidden)
		return
	}
	// The origin was checked by the replica the browser is connected to.
	anyOrigin := func(*http.Request) bool { return true }
	s.watch(w, r, u, clientinfo.Info{Addr: clientAddr}, "", sessionID, anyOrigin)
}

// watch streams the running terminal id to the viewer u.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, u store.User, client clientinfo.Info, webToken, id string, checkOrigin func(*http.Request) bool) {
	adm, err := s.live.Admit(r.Context(), sessions.Request{User: u, Kind: sessions.KindWatch, WatchID: id,
		Client: client, WebToken: webToken})
	var refusal *sessions.Refusal
	if err != nil {
		refusal = asRefusal(err)
		if refusal.Code == "not_running" {
			http.Error(w, "no such terminal session", http.StatusNotFound)
			return
		}
	}
	up := websocket.Upgrader{ReadBufferSize: 1 << 10, WriteBufferSize: 32 << 10, CheckOrigin: checkOrigin, HandshakeTimeout: 10 * time.Second}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	// A viewer sends nothing but control frames.
	ws.SetReadLimit(maxWatchMessage)
	s.wg.Add(1)
	defer s.wg.Done()
	defer ws.Close()
	write := func(mt int, b []byte) error {
		ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		return ws.WriteMessage(mt, b)
	}
	closeWith := func(c control) {
		b, _ := json.Marshal(c)
		write(websocket.TextMessage, b)
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	}
	if refusal != nil {
		closeWith(control{Type: "error", Code: refusal.Code, Message: refusal.Message})
		return
	}
	view, err := s.live.Open(r.Context(), adm)
	if err != nil {
		closeWith(control{Type: "error", Code: asRefusal(err).Code, Message: asRefusal(err).Message})
		return
	}
	target := view.Target
	ch, ok := target.Watchers.Add()
	if !ok {
		view.End("session ended", "")
		closeWith(control{Type: "exit", Message: "The session has ended."})
		return
	}
	defer target.Watchers.Remove(ch)
	end := "viewer left"
	defer func() { view.End(end, "") }()
	// The viewer sends nothing; reading notices when it leaves.
	left := make(chan struct{})
	go func() {
		defer close(left)
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	hello, _ := json.Marshal(control{Type: "connected", Message: fmt.Sprintf("Watching %s on %s, read-only, from now on", target.User.Name, target.Resource.Name)})
	if write(websocket.TextMessage, hello) != nil {
		return
	}
	for {
		select {
		case <-left:
			return
		case <-s.ctx.Done():
			end = "portal shut down"
			return
		case p, ok := <-ch:
			if !ok {
				end = "session ended"
				closeWith(control{Type: "exit", Message: "The session ended, or this view fell behind it."})
				return
			}
			if write(websocket.BinaryMessage, p) != nil {
				return
			}
		}
	}
}

// asRefusal returns err as a refusal, an internal error when it is none.
func asRefusal(err error) *sessions.Refusal {
	if ref, ok := err.(*sessions.Refusal); ok {
		return ref
	}
	return &sessions.Refusal{Code: "internal", Status: http.StatusInternalServerError, Message: "The connection could not be opened because of an internal error."}
}
