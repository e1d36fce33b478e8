package httpui

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

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
	conn                                          net.Conn // to the gateway
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
	s.mu.Lock()
	v := ui.SessionsView{CanTerminate: u.Role == store.RoleAdmin}
	for _, ls := range s.live {
		v.Sessions = append(v.Sessions, ui.SessionRow{ID: ls.id, User: ls.user, Resource: ls.resource, Protocol: ls.protocol,
			Gateway: ls.gateway, ClientAddr: ls.client, Start: ls.start})
	}
	s.mu.Unlock()
	slices.SortFunc(v.Sessions, func(a, b ui.SessionRow) int { return b.Start.Compare(a.Start) })
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
