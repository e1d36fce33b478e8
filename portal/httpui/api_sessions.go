package httpui

import (
	"net/http"
	"time"

	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// apiSession is a running session as the API shows it.
type apiSession struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Resource   string    `json:"resource"`
	Protocol   string    `json:"protocol"`
	Gateway    string    `json:"gateway"`
	Segment    string    `json:"segment"`
	ClientAddr string    `json:"client_addr"`
	Start      time.Time `json:"start"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
	Posture    []string  `json:"posture_compliance_statuses"`
	// Kind is "tunnel" for a native client's TCP stream, which has the
	// device it came from (none for an API token) and where it goes.
	Kind   string `json:"kind"`
	Device string `json:"device,omitempty"`
	Target string `json:"target,omitempty"`
}

func toAPISession(ls *sessions.Session) apiSession {
	in, out := ls.Bytes()
	return apiSession{ID: ls.ID, User: ls.User.Name, Resource: ls.Resource.Name, Protocol: liveProtocol(ls),
		Gateway: ls.Gateway.Name, Segment: ls.Gateway.Segment, ClientAddr: ls.Client.Addr, Start: ls.Start,
		BytesIn: in, BytesOut: out, Posture: nonNilStrings(ls.Posture), Kind: liveKind(ls), Device: ls.Device.Name, Target: ls.TargetAddr}
}

// apiLiveSessions lists the sessions running now, newest first.
func (s *Server) apiLiveSessions(w http.ResponseWriter, r *http.Request, u store.User) error {
	out := []apiSession{}
	for _, ls := range s.live.All(r.Context()) {
		out = append(out, toAPISession(ls))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// apiTerminateSession ends one running session.
func (s *Server) apiTerminateSession(w http.ResponseWriter, r *http.Request, u store.User) error {
	ended := s.live.Terminate(u.Name, sessions.Filter{ID: r.PathValue("id")})
	if len(ended) == 0 {
		return store.ErrNotFound
	}
	return writeJSON(w, http.StatusOK, map[string]any{"terminated": []apiSession{toAPISession(ended[0])}})
}

// apiTerminateSessions ends every running session of a user, a resource
// or a gateway: {"user": …, "resource": …, "gateway": …}, all given ones
// matching.
func (s *Server) apiTerminateSessions(w http.ResponseWriter, r *http.Request, u store.User) error {
	var in struct {
		User     string `json:"user"`
		Resource string `json:"resource"`
		Gateway  string `json:"gateway"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	f := sessions.Filter{User: in.User, Resource: in.Resource, Gateway: in.Gateway}
	if f == (sessions.Filter{}) {
		return fieldErrors{"user": "Give a user, a resource or a gateway whose sessions to end."}
	}
	out := []apiSession{}
	for _, ls := range s.live.Terminate(u.Name, f) {
		out = append(out, toAPISession(ls))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"terminated": out})
}
