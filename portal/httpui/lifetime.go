package httpui

import (
	"context"
	"crypto/rand"
	"net/http"
	"time"

	"github.com/keyway-dev/keyway/portal/clientinfo"
)

// kickGuard asks the session manager to check every running session now,
// after a change that may end some (a grant removed, a user disabled, a
// password changed, a policy changed).
func (s *Server) kickGuard() { s.live.Kick() }

// endSignedOut ends the running sessions opened from the sign-in session
// token, which has just signed out.
func (s *Server) endSignedOut(token string) { s.live.EndSignedOut(token) }

// clientInfo says who the client of r is, after trusted-proxy handling.
func (s *Server) clientInfo(r *http.Request) clientinfo.Info { return s.ClientInfo.Info(r) }

// endpointIDSetting keeps the id this portal gives the connection
// authorization hook, made once.
const endpointIDSetting = "endpoint_id"

// endpointID returns this portal's id, making it on first use. Replicas
// sharing a database share it.
func (s *Server) endpointID() string {
	if s.Store == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := s.Store.GetSetting(ctx, endpointIDSetting)
	if err == nil && id == "" {
		id = "keyway-" + rand.Text()[:16]
		err = s.Store.SetSetting(ctx, endpointIDSetting, id)
	}
	if err != nil {
		s.Logger.Error("read this portal's endpoint id", "err", err)
	}
	return id
}

// endRemote is how a session ended by the target (the shell exited, the
// desktop closed) is audited, whatever the protocol; the target's own
// words go in the event's reason.
const endRemote = "remote ended"
