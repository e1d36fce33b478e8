package httpui

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

// tunnelSetting holds "off" when an admin turned tunnel mode off; it is on
// by default.
const tunnelSetting = "gateways.tunnel"

// SyncGateways loads gateways and the tunnel setting from the store into
// the pool; it runs at start and after every gateway change.
func (s *Server) SyncGateways(ctx context.Context) error {
	gs, err := s.Store.ListGateways(ctx)
	if err != nil {
		return fmt.Errorf("load gateways: %w", err)
	}
	tunnel, err := s.Store.GetSetting(ctx, tunnelSetting)
	if err != nil {
		return err
	}
	segs, err := s.Store.ListSegments(ctx)
	if err != nil {
		return fmt.Errorf("load segments: %w", err)
	}
	sel := make([]gateways.Segment, 0, len(segs))
	for _, sg := range segs {
		sel = append(sel, gateways.Segment{Name: sg.Name, ServesUntagged: sg.ServesUntagged})
	}
	s.Gateways.SetTunnel(tunnel != "off")
	s.Gateways.SetSegments(sel)
	s.Gateways.Set(gateways.FromStore(gs))
	if s.RelayAddresses != nil {
		s.RelayAddresses(relayAddresses(gs))
	}
	if s.DefaultNetworks != nil {
		seg, err := s.Store.SegmentByName(ctx, store.DefaultSegment)
		if err != nil {
			return err
		}
		var nets []netip.Prefix
		for _, n := range seg.AllowedNetworks {
			if p, err := netip.ParsePrefix(n); err == nil {
				nets = append(nets, p)
			}
		}
		s.DefaultNetworks(nets)
	}
	return nil
}

func (s *Server) syncOrLog() {
	if err := s.SyncGateways(s.ctx); err != nil {
		s.Logger.Error("sync gateways", "err", err)
	}
}

func uptime(d time.Duration) string {
	if d == 0 {
		return ""
	}
	d = d.Round(time.Minute)
	if d >= 24*time.Hour {
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	}
	return strings.TrimSuffix(d.String(), "0s")
}

func (s *Server) gatewayRows() map[string]gateways.Status {
	out := map[string]gateways.Status{}
	for _, st := range s.Gateways.Statuses() {
		out[st.ID] = st
	}
	return out
}

func rowOf(g store.Gateway, st gateways.Status) ui.GatewayRow {
	return ui.GatewayRow{ID: g.ID, Name: g.Name, Address: net.JoinHostPort(g.Host, strconv.Itoa(g.SSHPort)),
		State: string(st.State), LastCheck: st.LastCheck, LastError: st.LastError, Version: st.Version,
		Uptime: uptime(st.Uptime), ActiveSessions: st.ActiveSessions, Embedded: g.Embedded}
}

func (s *Server) gatewaysPage(w http.ResponseWriter, r *http.Request) {
	s.renderGateways(w, r, http.StatusOK, ui.GatewaysView{})
}

func (s *Server) renderGateways(w http.ResponseWriter, r *http.Request, status int, v ui.GatewaysView) {
	ctx := r.Context()
	segs, err := s.Store.ListSegments(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	gs, err := s.Store.ListGateways(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	health := s.gatewayRows()
	v.Tunnel = s.Gateways.Tunnel()
	for _, sg := range segs {
		sv := ui.SegmentView{ID: sg.ID, Name: sg.Name, Description: sg.Description, AllowedNetworks: strings.Join(sg.AllowedNetworks, "\n"),
			ServesUntagged: sg.ServesUntagged}
		for _, g := range gs {
			if g.SegmentID == sg.ID {
				sv.Gateways = append(sv.Gateways, rowOf(g, health[strconv.FormatInt(g.ID, 10)]))
			}
		}
		v.Segments = append(v.Segments, sv)
	}
	s.render(w, r, status, ui.Gateways(s.page(r, "Gateways", "gateways"), v))
}

func (s *Server) tunnelForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	on := r.PostForm.Get("tunnel") == "on"
	if err := s.setTunnel(r, actor, on); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.done(w, r, "Tunnel mode is "+map[bool]string{true: "on", false: "off"}[on]+" for new connections.", "/admin/gateways")
}

// parseNetworks reads one CIDR (or address) per line or comma.
func parseNetworks(text string) ([]string, string) {
	var out []string
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' || r == ' ' || r == '\r' }) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Sprintf("%q is not a network such as 10.0.0.0/8 or an address.", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked().String())
	}
	if len(out) > 100 {
		return nil, "Give at most 100 networks."
	}
	return out, ""
}

func (s *Server) createSegmentForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.GatewaysView{Name: r.PostForm.Get("name"), Description: r.PostForm.Get("description"), Networks: r.PostForm.Get("allowed_networks")}
	untagged := formServesUntagged(r)
	v.ServesUntagged = untagged == nil || *untagged
	// then=gateway: the form on the new-gateway page, which continues there.
	thenGateway := r.PostForm.Get("then") == "gateway"
	seg, err := s.createSegment(r, actor, segmentInput{Name: v.Name, Description: v.Description, AllowedNetworks: []string{v.Networks},
		ServesUntagged: untagged})
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		if thenGateway {
			s.render(w, r, http.StatusUnprocessableEntity, ui.GatewayForm(s.page(r, "New gateway", "gateways"), ui.GatewayFormView{
				NeedSegment: true, SegmentName: v.Name, SegmentDescription: v.Description, SegmentNetworks: v.Networks, Errors: errs}))
			return
		}
		v.Errors = errs
		s.renderGateways(w, r, http.StatusUnprocessableEntity, v)
	}) {
		return
	}
	if thenGateway {
		s.done(w, r, fmt.Sprintf("Segment %s was created. Now describe its first gateway.", quote(seg.Name)), fmt.Sprintf("/admin/gateways/new?segment=%d", seg.ID))
		return
	}
	s.done(w, r, fmt.Sprintf("Segment %s was created. Add a gateway to it, then tag resources with %s.", quote(seg.Name), quote(seg.Name)), "/admin/gateways")
}

// formServesUntagged reads the segment form's "serves untagged resources"
// checkbox. The form marks that it has the checkbox (an unticked one is
// not sent), so a post without the marker leaves the setting alone.
func formServesUntagged(r *http.Request) *bool {
	if r.PostForm.Get("untagged_field") == "" {
		return nil
	}
	on := r.PostForm.Get("serves_untagged") == "on"
	return &on
}

func (s *Server) updateSegmentForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	var seg store.Segment
	if err == nil {
		seg, err = s.updateSegment(r, actor, id, segmentInput{Description: r.PostForm.Get("description"), AllowedNetworks: []string{r.PostForm.Get("allowed_networks")},
			ServesUntagged: formServesUntagged(r)})
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.done(w, r, fmt.Sprintf("Segment %s was saved; its gateways pick up the change within 10 seconds.", quote(seg.Name)), "/admin/gateways")
}

func (s *Server) deleteSegmentForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = s.deleteSegment(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.done(w, r, "The segment was deleted.", "/admin/gateways")
}

func (s *Server) gatewayForm(w http.ResponseWriter, r *http.Request, status int, v ui.GatewayFormView, segment string) {
	segs, err := s.Store.ListSegments(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, sg := range segs {
		if sg.Name == store.DefaultSegment {
			continue // holds the embedded gateway only
		}
		val := strconv.FormatInt(sg.ID, 10)
		v.Segments = append(v.Segments, ui.Option{Value: val, Label: sg.Name, Selected: val == segment})
	}
	// The default segment holds only the embedded gateway, so a first
	// remote gateway needs a segment of its own: the page asks for it.
	v.NeedSegment = len(v.Segments) == 0
	s.render(w, r, status, ui.GatewayForm(s.page(r, "New gateway", "gateways"), v))
}

func (s *Server) newGatewayPage(w http.ResponseWriter, r *http.Request) {
	s.gatewayForm(w, r, http.StatusOK, ui.GatewayFormView{SSHPort: "7993", RDPPort: "7994", VNCPort: "7995", MgmtPort: "443"}, r.URL.Query().Get("segment"))
}

func (s *Server) createGatewayForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	if err := r.ParseForm(); err != nil {
		s.serverError(w, r, err)
		return
	}
	v := ui.GatewayFormView{Name: r.PostForm.Get("name"), Host: r.PostForm.Get("host"),
		SSHPort: r.PostForm.Get("ssh_port"), RDPPort: r.PostForm.Get("rdp_port"), VNCPort: r.PostForm.Get("vnc_port"),
		MgmtPort: r.PostForm.Get("management_port")}
	segment := r.PostForm.Get("segment_id")
	in := gatewayInput{Name: v.Name, Host: v.Host, SSHPort: formPort(v.SSHPort), RDPPort: formPort(v.RDPPort), VNCPort: formPort(v.VNCPort),
		ManagementPort: formPort(v.MgmtPort)}
	in.SegmentID, _ = strconv.ParseInt(segment, 10, 64)
	g, err := s.createGateway(r, actor, in)
	if s.formFailed(w, r, err, func(errs ui.Errors) {
		v.Errors = errs
		s.gatewayForm(w, r, http.StatusUnprocessableEntity, v, segment)
	}) {
		return
	}
	s.done(w, r, fmt.Sprintf("Gateway %s was created. Download its config file and start it.", quote(g.Name)), fmt.Sprintf("/admin/gateways/%d", g.ID))
}

// formPort reads a port field; anything unreadable becomes -1, which the
// validation reports.
func formPort(text string) int {
	n, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil {
		return -1
	}
	return n
}

func (s *Server) gatewayView(r *http.Request) (ui.GatewayView, store.Gateway, error) {
	id, err := pathID(r)
	if err != nil {
		return ui.GatewayView{}, store.Gateway{}, err
	}
	g, err := s.Store.GatewayByID(r.Context(), id)
	if err != nil {
		return ui.GatewayView{}, g, err
	}
	v := ui.GatewayView{GatewayRow: rowOf(g, s.gatewayRows()[strconv.FormatInt(g.ID, 10)]), Segment: g.Segment,
		ManagementAddr: net.JoinHostPort(g.Host, strconv.Itoa(g.ManagementPort))}
	if k, err := wire.ParsePublicKey(g.PublicKey); err == nil {
		v.KeyFingerprint = wire.Fingerprint(k)
	}
	if err := s.tokenView(r.Context(), &v, g); err != nil {
		return v, g, err
	}
	return v, g, nil
}

func (s *Server) gatewayPage(w http.ResponseWriter, r *http.Request) {
	v, g, err := s.gatewayView(r)
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.render(w, r, http.StatusOK, ui.GatewayPage(s.page(r, "Gateway "+g.Name, "gateways"), v))
}

func (s *Server) gatewayKeyForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	if err == nil {
		err = r.ParseForm()
	}
	var g store.Gateway
	if err == nil {
		// An empty field must not reach setGatewayKey, where "" revokes.
		if key := strings.TrimSpace(r.PostForm.Get("public_key")); key == "" {
			err = fieldErrors{"public_key": "Paste the key the gateway printed."}
		} else {
			g, err = s.setGatewayKey(r, actor, id, key)
		}
	}
	if errs := asFieldErrors(err); errs != nil && !errors.Is(err, store.ErrNotFound) {
		v, _, verr := s.gatewayView(r)
		if verr != nil {
			s.actionError(w, r, verr, "/admin/gateways")
			return
		}
		v.Errors = errs
		s.render(w, r, http.StatusUnprocessableEntity, ui.GatewayPage(s.page(r, "Gateway "+v.Name, "gateways"), v))
		return
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.done(w, r, fmt.Sprintf("The key of %s is pinned. It shows as available once a health check reaches it.", quote(g.Name)), fmt.Sprintf("/admin/gateways/%d", g.ID))
}

func (s *Server) revokeGatewayForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var g store.Gateway
	if err == nil {
		g, err = s.setGatewayKey(r, actor, id, "")
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.done(w, r, fmt.Sprintf("The key of %s was revoked; it is cut off and pending until a new key is pasted.", quote(g.Name)), fmt.Sprintf("/admin/gateways/%d", g.ID))
}

func (s *Server) deleteGatewayForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var g store.Gateway
	if err == nil {
		g, err = s.deleteGateway(r, actor, id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	s.done(w, r, fmt.Sprintf("Gateway %s was deleted.", quote(g.Name)), "/admin/gateways")
}

func (s *Server) gatewayConfigFile(w http.ResponseWriter, r *http.Request) {
	_, g, err := s.gatewayView(r)
	if err != nil {
		s.actionError(w, r, err, "/admin/gateways")
		return
	}
	f := wire.GatewayFile{
		GatewayID: strconv.FormatInt(g.ID, 10), Name: g.Name, Segment: g.Segment,
		PortalURL: s.PortalURL, PortalKey: s.PortalKey, PortalTLSKeySHA256: s.PortalTLSKeySHA256,
		StateDir: "/var/lib/keyway-gateway", PullIntervalSecs: 10,
		Listen: map[string]string{"ssh": fmt.Sprintf(":%d", g.SSHPort), "rdp": fmt.Sprintf(":%d", g.RDPPort), "vnc": fmt.Sprintf(":%d", g.VNCPort),
			"management": fmt.Sprintf(":%d", g.ManagementPort), "health": ":8081"},
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="gateway-%s.json"`, g.Name))
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(f)
}

// authGateway checks a gateway's signed request (authGatewaySignature)
// and its access token (authGatewayToken). On failure it has answered
// the request.
func (s *Server) authGateway(w http.ResponseWriter, r *http.Request, what string) (store.Gateway, [sha256.Size]byte, bool) {
	g, body, ok := s.authGatewaySignature(w, r, what)
	if ok {
		ok = s.authGatewayToken(w, r, g, what)
	}
	return g, body, ok
}

// authGatewaySignature checks a gateway's signed request against its pinned key:
// unknown, pending and revoked gateways, replayed requests and those
// signed the old way are refused. It returns the SHA-256 the signature
// gives the request's body, which handlers reading a body check. On
// failure it has answered the request.
func (s *Server) authGatewaySignature(w http.ResponseWriter, r *http.Request, what string) (store.Gateway, [sha256.Size]byte, bool) {
	var body [sha256.Size]byte
	id, err := strconv.ParseInt(r.Header.Get(wire.HeaderGatewayID), 10, 64)
	var g store.Gateway
	if err == nil {
		g, err = s.Store.GatewayByID(r.Context(), id)
	}
	var key []byte
	if err == nil {
		key, err = wire.ParsePublicKey(g.PublicKey)
		if err != nil {
			err = errors.New("the gateway has no pinned key (pending or revoked)")
		}
	}
	if err == nil {
		body, err = wire.VerifyRequest(r, key, s.Now(), s.nonces)
	}
	if errors.Is(err, wire.ErrNonceCacheFull) {
		w.Header().Set("Retry-After", "10")
		writeJSONError(w, http.StatusServiceUnavailable, err.Error())
		return g, body, false
	}
	if err != nil {
		s.Logger.WarnContext(r.Context(), "gateway "+what+" refused", "gateway", r.Header.Get(wire.HeaderGatewayID), "client", s.ClientInfo.Addr(r), "err", err)
		writeJSONError(w, http.StatusUnauthorized, "not an enrolled gateway: "+err.Error())
		return g, body, false
	}
	return g, body, true
}

// gatewayPullConfig answers a gateway's signed config pull with its config,
// signed with the portal's key.
func (s *Server) gatewayPullConfig(w http.ResponseWriter, r *http.Request) {
	g, _, ok := s.authGateway(w, r, "config pull")
	if !ok {
		return
	}
	seg, err := s.Store.SegmentByID(r.Context(), g.SegmentID)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "segment unreadable")
		return
	}
	gs, err := s.Store.ListGateways(r.Context())
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "gateways unreadable")
		return
	}
	// A change of the segment or of any gateway (their addresses are the
	// relay list) gives a newer version.
	version := seg.UpdatedAt.UnixMilli()
	for _, o := range gs {
		version = max(version, o.UpdatedAt.UnixMilli())
	}
	c := wire.GatewayConfig{
		Version: version, GatewayID: strconv.FormatInt(g.ID, 10),
		Name: g.Name, Segment: seg.Name, AllowedNetworks: nonNilStrings(seg.AllowedNetworks),
		RelayAddresses: relayAddresses(gs),
	}
	for _, k := range append([]string{s.PortalTLSKeySHA256}, s.PortalTLSNextKeys...) {
		if k != "" && !slices.Contains(c.PortalTLSKeys, k) {
			c.PortalTLSKeys = append(c.PortalTLSKeys, k)
		}
	}
	body, err := json.Marshal(c)
	if err != nil || s.PortalIdentity == nil {
		writeJSONError(w, http.StatusInternalServerError, "the portal cannot sign configs")
		return
	}
	w.Header().Set(wire.HeaderConfigSignature, wire.SignConfig(s.PortalIdentity, c.GatewayID, body))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}

// relayAddresses are the session listeners of the gateways that have a
// key: the only addresses a gateway relays to.
func relayAddresses(gs []store.Gateway) []string {
	out := []string{}
	for _, g := range gs {
		if g.PublicKey == "" {
			continue
		}
		for _, port := range []int{g.SSHPort, g.RDPPort, g.VNCPort} {
			a := net.JoinHostPort(g.Host, strconv.Itoa(port))
			if port > 0 && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// testResourceForm opens and closes a real connection to a resource through
// the gateway that would be chosen, and reports the outcome.
func (s *Server) testResourceForm(w http.ResponseWriter, r *http.Request) {
	actor, _ := currentUser(r)
	id, err := pathID(r)
	var res store.Resource
	if err == nil {
		res, err = s.Store.ResourceByID(r.Context(), id)
	}
	if err != nil {
		s.actionError(w, r, err, "/admin/resources")
		return
	}
	back := fmt.Sprintf("/admin/resources/%d", id)
	if res.Protocol == store.ProtocolNetwork {
		// A network has no one address to dial.
		s.setFlash(r, "error", "A network resource has no single address to test; test a connection with keyway proxy instead.")
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	// The test sends the stored credentials: the audit names where to and
	// what, whether or not a gateway was reached.
	sent := map[string]string{"target": net.JoinHostPort(res.Host, strconv.Itoa(res.Port)), "credentials": credentialsSent(res)}
	if res.HostKey == "" {
		sent["host_key"] = "none pinned"
	}
	start := time.Now()
	sess, err := s.live.Start(r.Context(), sessions.Request{User: actor, ResourceID: res.ID, Kind: sessions.KindTest,
		Client: s.clientInfo(r), Cols: 80, Rows: 24, Details: sent})
	if err != nil {
		// The session manager audited the failure, with what was sent.
		s.setFlash(r, "error", "Test failed: "+asRefusal(err).Message)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	sess.End("test done", "")
	took := time.Since(start).Round(time.Millisecond)
	details := sess.Details(nil)
	maps.Copy(details, sent)
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionResourceTest, Target: res.Name, Outcome: audit.OutcomeSuccess,
		Details: details})
	gw := sess.Gateway
	msg := fmt.Sprintf("Connected to %s through gateway %s (segment %s) in %s", quote(res.Name), quote(gw.Name), quote(gw.Segment), took)
	if sess.Response.HostKeyFingerprint != "" {
		msg += "; host key " + sess.Response.HostKeyFingerprint
	}
	s.done(w, r, msg+".", back)
}

// credentialsSent names the kinds of stored credentials a connection to res
// sends, for the audit log.
func credentialsSent(res store.Resource) string {
	var kinds []string
	if res.HasPassword {
		kinds = append(kinds, "password")
	}
	if res.HasPrivateKey {
		kinds = append(kinds, "private key")
	}
	if len(kinds) == 0 {
		return "none"
	}
	return strings.Join(kinds, " and ")
}
