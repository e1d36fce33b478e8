package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// DefaultSegment is the segment of the portal's embedded gateway.
const DefaultSegment = "default"

// Segment is a named group of gateways that resources are tied to by tag.
type Segment struct {
	ID              int64
	Name            string
	Description     string
	AllowedNetworks []string
	// ServesUntagged lets the segment's gateways serve resources that no
	// tag ties to a segment; off, they only get their own resources (and
	// their credentials).
	ServesUntagged bool
	Gateways       int
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Gateway is a gateway as an admin configured it.
type Gateway struct {
	ID        int64
	Name      string
	SegmentID int64
	Segment   string
	Host      string
	// Session ports: SSHPort (7993) for SSH and SFTP, RDPPort (7994),
	// VNCPort (7995); ManagementPort (443) for status checks.
	SSHPort        int
	RDPPort        int
	VNCPort        int
	ManagementPort int
	// PublicKey is "ed25519:<base64>"; "" while the gateway is pending.
	PublicKey string
	Embedded  bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// CreateSegment inserts seg.
func (s *Store) CreateSegment(ctx context.Context, seg Segment) (Segment, error) {
	now := millis(s.now())
	nets, _ := json.Marshal(nonNil(seg.AllowedNetworks))
	err := s.db.QueryRowContext(ctx, `INSERT INTO segments (name, description, allowed_networks, serves_untagged, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		seg.Name, seg.Description, string(nets), seg.ServesUntagged, now, now).Scan(&seg.ID)
	if err != nil {
		return Segment{}, fmt.Errorf("create segment %s: %w", seg.Name, conflict(err, fmt.Sprintf("a segment named %s already exists", seg.Name)))
	}
	return s.SegmentByID(ctx, seg.ID)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// UpdateSegment saves seg's description, allowed networks and whether it
// serves untagged resources. The name of a segment is fixed: resources
// refer to it by tag.
func (s *Store) UpdateSegment(ctx context.Context, seg Segment) error {
	nets, _ := json.Marshal(nonNil(seg.AllowedNetworks))
	res, err := s.db.ExecContext(ctx, `UPDATE segments SET description = ?, allowed_networks = ?, serves_untagged = ?, updated_at = ? WHERE id = ?`,
		seg.Description, string(nets), seg.ServesUntagged, millis(s.now()), seg.ID)
	if err != nil {
		return fmt.Errorf("update segment %d: %w", seg.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ErrInUse is returned when deleting something others still refer to.
var ErrInUse = errors.New("in use")

// DeleteSegment deletes an empty segment other than the default one.
func (s *Store) DeleteSegment(ctx context.Context, id int64) error {
	seg, err := s.SegmentByID(ctx, id)
	if err != nil {
		return err
	}
	if seg.Name == DefaultSegment {
		return fmt.Errorf("the default segment holds the embedded gateway: %w", ErrInUse)
	}
	if seg.Gateways > 0 {
		return fmt.Errorf("segment %s still has %d gateways: %w", seg.Name, seg.Gateways, ErrInUse)
	}
	return deleteByID(ctx, s.db, "segments", id)
}

const segmentColumns = `sg.id, sg.name, sg.description, sg.allowed_networks, sg.serves_untagged, sg.created_at, sg.updated_at, (SELECT COUNT(*) FROM gateways g WHERE g.segment_id = sg.id)`

func scanSegment(row interface{ Scan(...any) error }) (Segment, error) {
	var sg Segment
	var nets string
	var created, updated int64
	if err := row.Scan(&sg.ID, &sg.Name, &sg.Description, &nets, &sg.ServesUntagged, &created, &updated, &sg.Gateways); err != nil {
		return Segment{}, err
	}
	sg.CreatedAt, sg.UpdatedAt = fromMillis(created), fromMillis(updated)
	if err := json.Unmarshal([]byte(nets), &sg.AllowedNetworks); err != nil {
		return Segment{}, fmt.Errorf("networks of segment %d: %w", sg.ID, err)
	}
	return sg, nil
}

// SegmentByID returns a segment.
func (s *Store) SegmentByID(ctx context.Context, id int64) (Segment, error) {
	sg, err := scanSegment(s.db.QueryRowContext(ctx, `SELECT `+segmentColumns+` FROM segments sg WHERE sg.id = ?`, id))
	if err != nil {
		return Segment{}, fmt.Errorf("segment %d: %w", id, notFound(err))
	}
	return sg, nil
}

// SegmentByName returns a segment by name.
func (s *Store) SegmentByName(ctx context.Context, name string) (Segment, error) {
	sg, err := scanSegment(s.db.QueryRowContext(ctx, `SELECT `+segmentColumns+` FROM segments sg WHERE sg.name = ?`, name))
	if err != nil {
		return Segment{}, fmt.Errorf("segment %s: %w", name, notFound(err))
	}
	return sg, nil
}

// ListSegments returns all segments by name.
func (s *Store) ListSegments(ctx context.Context) ([]Segment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+segmentColumns+` FROM segments sg ORDER BY sg.name`)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	defer rows.Close()
	var out []Segment
	for rows.Next() {
		sg, err := scanSegment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sg)
	}
	return out, rows.Err()
}

// CreateGateway inserts g.
func (s *Store) CreateGateway(ctx context.Context, g Gateway) (Gateway, error) {
	now := millis(s.now())
	err := s.db.QueryRowContext(ctx, `INSERT INTO gateways (name, segment_id, host, ssh_port, rdp_port, vnc_port, management_port, public_key, embedded, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		g.Name, g.SegmentID, g.Host, g.SSHPort, g.RDPPort, g.VNCPort, g.ManagementPort, g.PublicKey, g.Embedded, now, now).Scan(&g.ID)
	if err != nil {
		return Gateway{}, fmt.Errorf("create gateway %s: %w", g.Name, conflict(err, fmt.Sprintf("a gateway named %s already exists", g.Name)))
	}
	if g.PublicKey != "" {
		if err := s.setGatewayBootstrap(ctx, g.ID, true); err != nil {
			return Gateway{}, err
		}
	}
	return s.GatewayByID(ctx, g.ID)
}

// UpdateGateway saves g's name, address and ports (not its key).
func (s *Store) UpdateGateway(ctx context.Context, g Gateway) error {
	res, err := s.db.ExecContext(ctx, `UPDATE gateways SET name = ?, host = ?, ssh_port = ?, rdp_port = ?, vnc_port = ?, management_port = ?, updated_at = ? WHERE id = ?`,
		g.Name, g.Host, g.SSHPort, g.RDPPort, g.VNCPort, g.ManagementPort, millis(s.now()), g.ID)
	if err != nil {
		return fmt.Errorf("update gateway %d: %w", g.ID, conflict(err, fmt.Sprintf("a gateway named %s already exists", g.Name)))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetGatewayKey pins a gateway's public key; "" revokes it (pending again).
// A pinned key lets the gateway get one first access token with its
// signature alone.
func (s *Store) SetGatewayKey(ctx context.Context, id int64, key string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE gateways SET public_key = ?, updated_at = ? WHERE id = ?`, key, millis(s.now()), id)
	if err != nil {
		return fmt.Errorf("set key of gateway %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return s.setGatewayBootstrap(ctx, id, key != "")
}

// DeleteGateway deletes a gateway.
func (s *Store) DeleteGateway(ctx context.Context, id int64) error {
	return deleteByID(ctx, s.db, "gateways", id)
}

const gatewayColumns = `g.id, g.name, g.segment_id, sg.name, g.host, g.ssh_port, g.rdp_port, g.vnc_port, g.management_port, g.public_key, g.embedded, g.created_at, g.updated_at`

func scanGateway(row interface{ Scan(...any) error }) (Gateway, error) {
	var g Gateway
	var created, updated int64
	if err := row.Scan(&g.ID, &g.Name, &g.SegmentID, &g.Segment, &g.Host, &g.SSHPort, &g.RDPPort, &g.VNCPort, &g.ManagementPort, &g.PublicKey, &g.Embedded, &created, &updated); err != nil {
		return Gateway{}, err
	}
	g.CreatedAt, g.UpdatedAt = fromMillis(created), fromMillis(updated)
	return g, nil
}

// GatewayByID returns a gateway.
func (s *Store) GatewayByID(ctx context.Context, id int64) (Gateway, error) {
	g, err := scanGateway(s.db.QueryRowContext(ctx, `SELECT `+gatewayColumns+` FROM gateways g JOIN segments sg ON sg.id = g.segment_id WHERE g.id = ?`, id))
	if err != nil {
		return Gateway{}, fmt.Errorf("gateway %d: %w", id, notFound(err))
	}
	return g, nil
}

// ListGateways returns all gateways by segment and name.
func (s *Store) ListGateways(ctx context.Context) ([]Gateway, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+gatewayColumns+` FROM gateways g JOIN segments sg ON sg.id = g.segment_id ORDER BY sg.name, g.name`)
	if err != nil {
		return nil, fmt.Errorf("list gateways: %w", err)
	}
	defer rows.Close()
	var out []Gateway
	for rows.Next() {
		g, err := scanGateway(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// EnsureEmbeddedGateway records the portal's embedded gateway in the
// default segment with its current host, ports and key (taken from g),
// creating it once.
func (s *Store) EnsureEmbeddedGateway(ctx context.Context, g Gateway) (Gateway, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM gateways WHERE embedded = 1`).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		seg, err := s.SegmentByName(ctx, DefaultSegment)
		if err != nil {
			return Gateway{}, err
		}
		g.Name, g.SegmentID, g.Embedded = "embedded", seg.ID, true
		return s.CreateGateway(ctx, g)
	case err != nil:
		return Gateway{}, fmt.Errorf("find embedded gateway: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE gateways SET host = ?, ssh_port = ?, rdp_port = ?, vnc_port = ?, management_port = ?, public_key = ?, updated_at = ? WHERE id = ?`,
		g.Host, g.SSHPort, g.RDPPort, g.VNCPort, g.ManagementPort, g.PublicKey, millis(s.now()), id); err != nil {
		return Gateway{}, fmt.Errorf("update embedded gateway: %w", err)
	}
	// The portal starts its own gateway: it may always get a first token.
	if err := s.setGatewayBootstrap(ctx, id, true); err != nil {
		return Gateway{}, err
	}
	return s.GatewayByID(ctx, id)
}

// GatewaySession is a session the portal opened through a gateway, kept so
// that the recording the gateway uploads can be checked against it.
type GatewaySession struct {
	SessionID  string
	GatewayID  int64
	User       string
	Resource   string
	Protocol   string
	ClientAddr string
	// StartedAt is when the portal began to open it, OpenedAt when the
	// gateway answered; EndedAt when the portal's side closed (zero while
	// it runs, or when the portal stopped first).
	StartedAt time.Time
	OpenedAt  time.Time
	EndedAt   time.Time
}

// AddGatewaySession records a session the portal opened.
func (s *Store) AddGatewaySession(ctx context.Context, gs GatewaySession) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO gateway_sessions (session_id, gateway_id, "user", resource, protocol, client_addr, started_at, opened_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		gs.SessionID, gs.GatewayID, gs.User, gs.Resource, gs.Protocol, gs.ClientAddr, millis(gs.StartedAt), millis(gs.OpenedAt))
	if err != nil {
		return fmt.Errorf("record session %s: %w", gs.SessionID, conflict(err, "a session with this ID was already recorded"))
	}
	return nil
}

// EndGatewaySession records when a session's portal side closed.
func (s *Store) EndGatewaySession(ctx context.Context, sessionID string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE gateway_sessions SET ended_at = ? WHERE session_id = ? AND ended_at = 0`, millis(at), sessionID); err != nil {
		return fmt.Errorf("record end of session %s: %w", sessionID, err)
	}
	return nil
}

// GatewaySessionByID returns a session the portal opened.
func (s *Store) GatewaySessionByID(ctx context.Context, sessionID string) (GatewaySession, error) {
	var gs GatewaySession
	var started, opened, ended int64
	err := s.db.QueryRowContext(ctx, `SELECT session_id, gateway_id, "user", resource, protocol, client_addr, started_at, opened_at, ended_at FROM gateway_sessions WHERE session_id = ?`, sessionID).
		Scan(&gs.SessionID, &gs.GatewayID, &gs.User, &gs.Resource, &gs.Protocol, &gs.ClientAddr, &started, &opened, &ended)
	if err != nil {
		return GatewaySession{}, fmt.Errorf("session %s: %w", sessionID, notFound(err))
	}
	gs.StartedAt, gs.OpenedAt = fromMillis(started), fromMillis(opened)
	if ended != 0 {
		gs.EndedAt = fromMillis(ended)
	}
	return gs, nil
}
