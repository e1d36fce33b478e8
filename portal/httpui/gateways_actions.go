package httpui

import (
	"cmp"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// Gateway and segment actions, shared by the Gateways pages and the API.

type segmentInput struct {
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	AllowedNetworks []string `json:"allowed_networks"`
	// ServesUntagged: absent means on for a new segment and unchanged for
	// an update.
	ServesUntagged *bool `json:"serves_untagged"`
}

func (in *segmentInput) validate(isNew bool) fieldErrors {
	fe := fieldErrors{}
	in.Name, in.Description = strings.TrimSpace(in.Name), strings.TrimSpace(in.Description)
	if isNew {
		checkName(fe, "name", in.Name)
	}
	if len(in.Description) > maxDescription {
		fe["description"] = "Keep the description under 500 characters."
	}
	nets, msg := parseNetworks(strings.Join(in.AllowedNetworks, "\n"))
	if msg != "" {
		fe["allowed_networks"] = msg
	}
	in.AllowedNetworks = nets
	return fe
}

func (s *Server) createSegment(r *http.Request, actor store.User, in segmentInput) (store.Segment, error) {
	if fe := in.validate(true); len(fe) > 0 {
		return store.Segment{}, fe
	}
	untagged := in.ServesUntagged == nil || *in.ServesUntagged
	seg, err := s.Store.CreateSegment(r.Context(), store.Segment{Name: in.Name, Description: in.Description, AllowedNetworks: in.AllowedNetworks,
		ServesUntagged: untagged})
	if err != nil {
		return store.Segment{}, conflictOrErr(err, "name")
	}
	s.syncOrLog()
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSegmentCreate, Target: seg.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"allowed_networks": strings.Join(seg.AllowedNetworks, ","), "serves_untagged": strconv.FormatBool(seg.ServesUntagged)}})
	return seg, nil
}

// updateSegment saves a segment's description and networks; its name is
// fixed because resources refer to it by tag.
func (s *Server) updateSegment(r *http.Request, actor store.User, id int64, in segmentInput) (store.Segment, error) {
	seg, err := s.Store.SegmentByID(r.Context(), id)
	if err != nil {
		return seg, err
	}
	if fe := in.validate(false); len(fe) > 0 {
		return seg, fe
	}
	seg.Description, seg.AllowedNetworks = in.Description, in.AllowedNetworks
	if in.ServesUntagged != nil {
		seg.ServesUntagged = *in.ServesUntagged
	}
	if err := s.Store.UpdateSegment(r.Context(), seg); err != nil {
		return seg, err
	}
	s.syncOrLog()
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSegmentUpdate, Target: seg.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"allowed_networks": strings.Join(seg.AllowedNetworks, ","), "serves_untagged": strconv.FormatBool(seg.ServesUntagged)}})
	return s.Store.SegmentByID(r.Context(), id)
}

func (s *Server) deleteSegment(r *http.Request, actor store.User, id int64) error {
	seg, err := s.Store.SegmentByID(r.Context(), id)
	if err == nil {
		err = s.Store.DeleteSegment(r.Context(), id)
	}
	if errors.Is(err, store.ErrInUse) {
		return fieldErrors{"segment": capitalize(strings.TrimSuffix(err.Error(), ": in use")) + "."}
	}
	if err != nil {
		return err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSegmentDelete, Target: seg.Name, Outcome: audit.OutcomeSuccess})
	return nil
}

type gatewayInput struct {
	Name           string `json:"name"`
	SegmentID      int64  `json:"segment_id"`
	Host           string `json:"host"`
	SSHPort        int    `json:"ssh_port"`
	RDPPort        int    `json:"rdp_port"`
	VNCPort        int    `json:"vnc_port"`
	ManagementPort int    `json:"management_port"`
}

func (s *Server) createGateway(r *http.Request, actor store.User, in gatewayInput) (store.Gateway, error) {
	fe := fieldErrors{}
	in.Name, in.Host = strings.TrimSpace(in.Name), strings.TrimSpace(in.Host)
	checkName(fe, "name", in.Name)
	if !hostPattern.MatchString(in.Host) {
		fe["host"] = "Enter the host name or address the portal reaches the gateway at."
	}
	in.SSHPort, in.RDPPort, in.VNCPort = cmp.Or(in.SSHPort, 7993), cmp.Or(in.RDPPort, 7994), cmp.Or(in.VNCPort, 7995)
	in.ManagementPort = cmp.Or(in.ManagementPort, 443)
	for field, p := range map[string]int{"ssh_port": in.SSHPort, "rdp_port": in.RDPPort, "vnc_port": in.VNCPort, "management_port": in.ManagementPort} {
		if p < 1 || p > 65535 {
			fe[field] = "Enter a port from 1 to 65535."
		}
	}
	seg, err := s.Store.SegmentByID(r.Context(), in.SegmentID)
	if err != nil || seg.Name == store.DefaultSegment {
		fe["segment_id"] = "Choose a segment (the default segment holds only the embedded gateway)."
	}
	if len(fe) > 0 {
		return store.Gateway{}, fe
	}
	g, err := s.Store.CreateGateway(r.Context(), store.Gateway{Name: in.Name, SegmentID: in.SegmentID, Host: in.Host,
		SSHPort: in.SSHPort, RDPPort: in.RDPPort, VNCPort: in.VNCPort, ManagementPort: in.ManagementPort})
	if err != nil {
		return store.Gateway{}, conflictOrErr(err, "name")
	}
	s.syncOrLog()
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGatewayCreate, Target: g.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"segment": g.Segment, "address": net.JoinHostPort(g.Host, strconv.Itoa(g.SSHPort))}})
	return g, nil
}

// setGatewayKey pins key (as the gateway printed it) for a gateway, or
// revokes its key when key is "". Either cuts off its running sessions.
func (s *Server) setGatewayKey(r *http.Request, actor store.User, id int64, key string) (store.Gateway, error) {
	g, err := s.Store.GatewayByID(r.Context(), id)
	if err != nil {
		return g, err
	}
	if g.Embedded {
		return g, fieldErrors{"public_key": "The embedded gateway's key is managed by the portal."}
	}
	previous := ""
	if k, err := wire.ParsePublicKey(g.PublicKey); err == nil {
		previous = wire.Fingerprint(k)
	}
	stored, action, details := "", audit.ActionGatewayRevoke, map[string]string{"key": previous}
	if key != "" {
		k, err := wire.ParsePublicKey(key)
		if err != nil {
			return g, fieldErrors{"public_key": "This is not a gateway key: " + err.Error() + ". Copy the whole line the gateway printed, starting with ed25519:."}
		}
		stored, action = wire.FormatPublicKey(k), audit.ActionGatewayKey
		details = map[string]string{"key": wire.Fingerprint(k), "previous": previous}
	}
	if err := s.Store.SetGatewayKey(r.Context(), id, stored); err != nil {
		return g, err
	}
	s.syncOrLog()
	s.record(r, audit.Event{Actor: actor.Name, Action: action, Target: g.Name, Outcome: audit.OutcomeSuccess, Details: details})
	return s.Store.GatewayByID(r.Context(), id)
}

func (s *Server) deleteGateway(r *http.Request, actor store.User, id int64) (store.Gateway, error) {
	g, err := s.Store.GatewayByID(r.Context(), id)
	if err != nil {
		return g, err
	}
	if g.Embedded {
		return g, fieldErrors{"gateway": "The embedded gateway cannot be deleted."}
	}
	if err := s.Store.DeleteGateway(r.Context(), id); err != nil {
		return g, err
	}
	s.syncOrLog()
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionGatewayDelete, Target: g.Name, Outcome: audit.OutcomeSuccess})
	return g, nil
}

func (s *Server) setTunnel(r *http.Request, actor store.User, on bool) error {
	val := map[bool]string{true: "on", false: "off"}[on]
	if err := s.Store.SetSetting(r.Context(), tunnelSetting, val); err != nil {
		return err
	}
	s.Gateways.SetTunnel(on)
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionTunnelMode, Target: "tunnel mode", Outcome: audit.OutcomeSuccess, Details: map[string]string{"tunnel": val}})
	return nil
}
