package httpui

import (
	"context"
	"net/http"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// clientStatus is what a native client learns after sign-in: who it is,
// and what it may reach.
type clientStatus struct {
	User      string                `json:"user"`
	Device    *clientStatusDevice   `json:"device"`
	Resources []clientStatusRes     `json:"resources"`
	Networks  []clientStatusNetwork `json:"networks"`
	Limits    clientStatusLimits    `json:"limits"`
}

type clientStatusDevice struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	ExpiresAt time.Time `json:"expires_at"`
}

// clientStatusRes is a resource: Tunnel says keyway tunnel may reach it,
// Terminal that keyway ssh gives a recorded terminal.
type clientStatusRes struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Tunnel   bool   `json:"tunnel"`
	Terminal bool   `json:"terminal"`
}

type clientStatusNetwork struct {
	Name    string `json:"name"`
	Segment string `json:"segment"`
	Rules   string `json:"rules"`
}

type clientStatusLimits struct {
	StreamsPerDevice int `json:"streams_per_device"`
	StreamsPerUser   int `json:"streams_per_user"`
}

// apiClientStatus answers GET /api/v1/client/status.
func (s *Server) apiClientStatus(w http.ResponseWriter, r *http.Request) {
	u, device, err := s.clientAuth(r)
	if err != nil {
		s.clientAuthFailed(w, r, err)
		return
	}
	out, err := s.clientStatus(r.Context(), u, device)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "client status", "user", u.Name, "err", err)
		writeClientError(w, http.StatusInternalServerError, "internal", "The portal could not list your resources; try again.")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// clientStatus lists the resources and networks u has session grants on.
func (s *Server) clientStatus(ctx context.Context, u store.User, device sessions.Device) (clientStatus, error) {
	rs, err := s.Store.ResourcesForUser(ctx, u.ID)
	if err != nil {
		return clientStatus{}, err
	}
	access, err := s.Store.AccessByResource(ctx, u.ID)
	if err != nil {
		return clientStatus{}, err
	}
	out := clientStatus{User: u.Name, Resources: []clientStatusRes{}, Networks: []clientStatusNetwork{}}
	if device.ID != 0 {
		out.Device = &clientStatusDevice{ID: device.ID, Name: device.Name, ExpiresAt: device.ExpiresAt}
	}
	l := s.live.StreamLimits(ctx)
	out.Limits = clientStatusLimits{StreamsPerDevice: l.PerDevice, StreamsPerUser: l.PerUser}
	for _, res := range rs {
		if !access[res.ID].Terminal {
			continue
		}
		if res.Protocol == store.ProtocolNetwork {
			segment := ""
			if gw, err := s.Gateways.Select(res.Tags); err == nil {
				segment = gw.Segment
			}
			out.Networks = append(out.Networks, clientStatusNetwork{Name: res.Name, Segment: segment, Rules: res.Options.Networks})
			continue
		}
		out.Resources = append(out.Resources, clientStatusRes{Name: res.Name, Protocol: res.Protocol, Host: res.Host, Port: res.Port,
			Tunnel:   res.Protocol == store.ProtocolTCP || res.Options.Tunnel,
			Terminal: res.Protocol == wire.ProtocolSSH})
	}
	return out, nil
}
