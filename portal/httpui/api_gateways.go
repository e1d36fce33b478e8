package httpui

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/store"
)

type apiSegment struct {
	ID              int64    `json:"id"`
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	AllowedNetworks []string `json:"allowed_networks"`
	ServesUntagged  bool     `json:"serves_untagged"`
	Gateways        int      `json:"gateways"`
}

func toAPISegment(sg store.Segment) apiSegment {
	return apiSegment{sg.ID, sg.Name, sg.Description, nonNilStrings(sg.AllowedNetworks), sg.ServesUntagged, sg.Gateways}
}

type apiGateway struct {
	ID             int64     `json:"id"`
	Name           string    `json:"name"`
	Segment        string    `json:"segment"`
	SegmentID      int64     `json:"segment_id"`
	Address        string    `json:"address"`
	RDPAddr        string    `json:"rdp_address"`
	VNCAddr        string    `json:"vnc_address"`
	ManagementAddr string    `json:"management_address"`
	KeyFingerprint string    `json:"key_fingerprint,omitempty"`
	Embedded       bool      `json:"embedded"`
	State          string    `json:"state"`
	LastCheck      time.Time `json:"last_check,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
	Version        string    `json:"version,omitempty"`
	UptimeSeconds  int64     `json:"uptime_seconds"`
	ActiveSessions int       `json:"active_sessions"`
}

func (s *Server) toAPIGateway(g store.Gateway) apiGateway {
	st := s.gatewayRows()[strconv.FormatInt(g.ID, 10)]
	a := apiGateway{ID: g.ID, Name: g.Name, Segment: g.Segment, SegmentID: g.SegmentID,
		Address:        net.JoinHostPort(g.Host, strconv.Itoa(g.SSHPort)),
		RDPAddr:        net.JoinHostPort(g.Host, strconv.Itoa(g.RDPPort)),
		VNCAddr:        net.JoinHostPort(g.Host, strconv.Itoa(g.VNCPort)),
		ManagementAddr: net.JoinHostPort(g.Host, strconv.Itoa(g.ManagementPort)),
		Embedded:       g.Embedded, State: string(st.State), LastCheck: st.LastCheck, LastError: st.LastError,
		Version: st.Version, UptimeSeconds: int64(st.Uptime.Seconds()), ActiveSessions: st.ActiveSessions}
	if k, err := wire.ParsePublicKey(g.PublicKey); err == nil {
		a.KeyFingerprint = wire.Fingerprint(k)
	}
	return a
}

func (s *Server) apiListSegments(w http.ResponseWriter, r *http.Request, _ store.User) error {
	segs, err := s.Store.ListSegments(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiSegment, 0, len(segs))
	for _, sg := range segs {
		out = append(out, toAPISegment(sg))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateSegment(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in segmentInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	seg, err := s.createSegment(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, toAPISegment(seg))
}

func (s *Server) apiUpdateSegment(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in segmentInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	seg, err := s.updateSegment(r, actor, id, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPISegment(seg))
}

func (s *Server) apiDeleteSegment(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.deleteSegment(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiListGateways(w http.ResponseWriter, r *http.Request, _ store.User) error {
	gs, err := s.Store.ListGateways(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiGateway, 0, len(gs))
	for _, g := range gs {
		out = append(out, s.toAPIGateway(g))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiCreateGateway(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in gatewayInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	g, err := s.createGateway(r, actor, in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.toAPIGateway(g))
}

func (s *Server) apiGetGateway(w http.ResponseWriter, r *http.Request, _ store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	g, err := s.Store.GatewayByID(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toAPIGateway(g))
}

func (s *Server) apiSetGatewayKey(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct {
		PublicKey string `json:"public_key"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.PublicKey == "" {
		return fieldErrors{"public_key": "Give the key the gateway printed; to revoke, use DELETE."}
	}
	g, err := s.setGatewayKey(r, actor, id, in.PublicKey)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toAPIGateway(g))
}

func (s *Server) apiRevokeGatewayKey(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	g, err := s.setGatewayKey(r, actor, id, "")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toAPIGateway(g))
}

func (s *Server) apiDeleteGateway(w http.ResponseWriter, r *http.Request, actor store.User) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := s.deleteGateway(r, actor, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiSetTunnel(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in struct {
		Tunnel *bool `json:"tunnel"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Tunnel == nil {
		return fieldErrors{"tunnel": "Give true or false."}
	}
	if err := s.setTunnel(r, actor, *in.Tunnel); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]bool{"tunnel": *in.Tunnel})
}
