package httpui

import (
	"bytes"
	"encoding/json"
	"sync"

	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// liveSession is a terminal or desktop session running through this
// portal.
type liveSession struct {
	id, user, resource, protocol, gateway, client string
	start                                         time.Time
	conn                                          net.Conn     // to the gateway
	term                                          *termSession // nil for desktops
	// guard ends the session when its access does; nil for sessions the
	// guard does not watch (an admin's connection test).
	guard *sessionGuard
}

// addLive registers a running session until the returned func is called.
func (s *Server) addLive(ls *liveSession) (remove func()) {
	s.mu.Lock()
	if s.live == nil {
		s.live = map[string]*liveSession{}
	}
	s.live[ls.id] = ls
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.live, ls.id)
		s.mu.Unlock()
	}
}

// sessionsPage lists the sessions running now, newest first; admins can
// end them.
func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	now := s.Now()
	s.mu.Lock()
	v := ui.SessionsView{CanTerminate: u.Role == store.RoleAdmin}
	for _, ls := range s.live {
		row := ui.SessionRow{ID: ls.id, User: ls.user, Resource: ls.resource, Protocol: ls.protocol,
			Gateway: ls.gateway, ClientAddr: ls.client, Start: ls.start, Duration: now.Sub(ls.start), Watchable: ls.term != nil}
		if ls.guard != nil {
			row.Idle = now.Sub(time.Unix(0, ls.guard.lastInput.Load()))
		}
		v.Sessions = append(v.Sessions, row)
	}
	s.mu.Unlock()
	slices.SortFunc(v.Sessions, func(a, b ui.SessionRow) int { return b.Start.Compare(a.Start) })
	if r.URL.Query().Get("partial") == "1" {
		// The page's own refresh: the table alone.
		s.render(w, r, http.StatusOK, ui.SessionsList(v))
		return
	}
	s.render(w, r, http.StatusOK, ui.Sessions(s.page(r, "Live sessions", "sessions"), v))
}

// terminateSession ends a running session; its user is told an
// administrator ended it.
func (s *Server) terminateSession(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id := r.PathValue("id")
	s.mu.Lock()
	ls := s.live[id]
	s.mu.Unlock()
	if ls == nil {
		s.setFlash(r, "error", "That session has already ended.")
		http.Redirect(w, r, "/sessions", http.StatusSeeOther)
		return
	}
	gateways.Terminate(ls.conn, fmt.Sprintf("An administrator (%s) ended this session.", actor.Name))
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSessionTerminate, Target: ls.resource, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"session": ls.id, "user": ls.user, "gateway": ls.gateway}})
	s.done(w, r, fmt.Sprintf("Ended %s's session on %s.", ls.user, ls.resource), "/sessions")
}

// maxWatchMessage bounds what a viewer may send: it has nothing to say.
const maxWatchMessage = 512

// watchBuffer is how many output chunks a watcher may fall behind before
// it is dropped; the session itself never waits for watchers.
const watchBuffer = 256

// watchers fans a terminal's output out to read-only viewers.
type watchers struct {
	mu    sync.Mutex
	set   map[chan []byte]struct{}
	ended bool
}

// add registers a viewer; its channel closes when the session ends or the
// viewer falls behind. ok is false once the session has ended.
func (w *watchers) add() (ch chan []byte, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return nil, false
	}
	if w.set == nil {
		w.set = map[chan []byte]struct{}{}
	}
	ch = make(chan []byte, watchBuffer)
	w.set[ch] = struct{}{}
	return ch, true
}

// remove unregisters a viewer that left.
func (w *watchers) remove(ch chan []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.set[ch]; ok {
		delete(w.set, ch)
		close(ch)
	}
}

// send gives every viewer a copy of p, dropping viewers that are full.
func (w *watchers) send(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.set {
		select {
		case ch <- bytes.Clone(p):
		default:
			delete(w.set, ch)
			close(ch)
		}
	}
}

// end closes every viewer's channel: the session is over.
func (w *watchers) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	for ch := range w.set {
		close(ch)
	}
	w.set = nil
}

// watchPage is the read-only terminal of a running session.
func (s *Server) watchPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	ls := s.live[id]
	s.mu.Unlock()
	if ls == nil || ls.term == nil {
		s.renderError(w, r, http.StatusNotFound, "That terminal session is not running (desktop sessions cannot be watched yet).")
		return
	}
	s.render(w, r, http.StatusOK, ui.Terminal(s.page(r, "Watching "+ls.user, "sessions"), ui.TerminalView{
		ResourceName: fmt.Sprintf("%s on %s (watching, read-only)", ls.user, ls.resource), WSPath: "/sessions/" + id + "/watch/ws", Watch: true,
	}))
}

// watchSocket streams a running terminal's output to a read-only viewer,
// from the moment it joins. Watching is an audit event.
func (s *Server) watchSocket(w http.ResponseWriter, r *http.Request) {
	u, _ := currentUser(r)
	if !sameOrigin(r) {
		http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	ls := s.live[id]
	s.mu.Unlock()
	if ls == nil || ls.term == nil {
		http.Error(w, "no such terminal session", http.StatusNotFound)
		return
	}
	ch, ok := ls.term.watchers.add()
	if !ok {
		http.Error(w, "the session has ended", http.StatusNotFound)
		return
	}
	up := websocket.Upgrader{ReadBufferSize: 1 << 10, WriteBufferSize: 32 << 10, CheckOrigin: sameOrigin, HandshakeTimeout: 10 * time.Second}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		ls.term.watchers.remove(ch)
		return
	}
	// A viewer sends nothing but control frames.
	ws.SetReadLimit(maxWatchMessage)
	s.wg.Add(1)
	defer s.wg.Done()
	defer ws.Close()
	defer ls.term.watchers.remove(ch)
	s.record(r, audit.Event{Actor: u.Name, Action: audit.ActionSessionWatch, Target: ls.resource, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"session": ls.id, "user": ls.user}})
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
	write := func(mt int, b []byte) error {
		ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		return ws.WriteMessage(mt, b)
	}
	hello, _ := json.Marshal(control{Type: "connected", Message: fmt.Sprintf("Watching %s on %s, read-only, from now on", ls.user, ls.resource)})
	if write(websocket.TextMessage, hello) != nil {
		return
	}
	for {
		select {
		case <-left:
			return
		case <-s.ctx.Done():
			return
		case p, ok := <-ch:
			if !ok {
				bye, _ := json.Marshal(control{Type: "exit", Message: "The session ended, or this view fell behind it."})
				write(websocket.TextMessage, bye)
				ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				return
			}
			if write(websocket.BinaryMessage, p) != nil {
				return
			}
		}
	}
}
