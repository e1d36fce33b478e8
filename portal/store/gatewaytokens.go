package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Key slots of a gateway's keys (as wire.SlotPrimary, wire.SlotSecondary).
const (
	SlotPrimary   = "primary"
	SlotSecondary = "secondary"
)

// gatewayKeySize is the size of a gateway key.
const gatewayKeySize = 32

// GatewayKey is one of a gateway's two keys its access tokens are made with.
type GatewayKey struct {
	Secret []byte
	// Generation goes up each time the key is regenerated.
	Generation    int64
	RegeneratedAt time.Time
}

// LogValue keeps the secret out of logs.
func (k GatewayKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("generation", k.Generation), slog.Time("regenerated_at", k.RegeneratedAt))
}

// GatewayCredentials are a gateway's keys and the state of its token.
type GatewayCredentials struct {
	GatewayID int64
	Primary   GatewayKey
	Secondary GatewayKey
	// ActiveSlot is the slot new tokens are made on.
	ActiveSlot string
	// Bootstrap lets the gateway get a first token with its signature
	// alone (its key was just pinned).
	Bootstrap bool
	// The token last issued: its slot, when, until when.
	TokenSlot      string
	TokenIssuedAt  time.Time
	TokenExpiresAt time.Time
	// RenewError is why the gateway's last renewal failed, as it reported
	// at RenewErrorAt; "" once a renewal worked.
	RenewError   string
	RenewErrorAt time.Time
}

// Key returns the key of slot.
func (c GatewayCredentials) Key(slot string) (GatewayKey, error) {
	switch slot {
	case SlotPrimary:
		return c.Primary, nil
	case SlotSecondary:
		return c.Secondary, nil
	}
	return GatewayKey{}, fmt.Errorf("unknown key slot %q", slot)
}

func validSlot(slot string) error {
	if slot != SlotPrimary && slot != SlotSecondary {
		return fmt.Errorf("unknown key slot %q: use primary or secondary", slot)
	}
	return nil
}

func gatewayKeyAD(id int64, slot string) []byte {
	return []byte("gateway-key:" + strconv.FormatInt(id, 10) + ":" + slot)
}

func (s *Store) newGatewayKey(id int64, slot string) ([]byte, error) {
	key := make([]byte, gatewayKeySize)
	rand.Read(key)
	sealed, err := s.sealer.Seal(key, gatewayKeyAD(id, slot))
	if err != nil {
		return nil, fmt.Errorf("seal %s key of gateway %d: %w", slot, id, err)
	}
	return sealed, nil
}

// ensureGatewayCredentials gives gateway id its two keys once.
func (s *Store) ensureGatewayCredentials(ctx context.Context, id int64) error {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM gateway_credentials WHERE gateway_id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("keys of gateway %d: %w", id, err)
	}
	if n > 0 {
		return nil
	}
	p, err := s.newGatewayKey(id, SlotPrimary)
	if err != nil {
		return err
	}
	sec, err := s.newGatewayKey(id, SlotSecondary)
	if err != nil {
		return err
	}
	now := millis(s.now())
	if _, err := s.db.ExecContext(ctx, `INSERT INTO gateway_credentials (gateway_id, primary_key, primary_at, secondary_key, secondary_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		id, p, now, sec, now); err != nil {
		return fmt.Errorf("create keys of gateway %d: %w", id, notFound(err))
	}
	return nil
}

// GatewayCredentials returns gateway id's keys and token state, making its
// keys the first time.
func (s *Store) GatewayCredentials(ctx context.Context, id int64) (GatewayCredentials, error) {
	if err := s.ensureGatewayCredentials(ctx, id); err != nil {
		return GatewayCredentials{}, err
	}
	c := GatewayCredentials{GatewayID: id}
	var psealed, ssealed []byte
	var pat, sat, iat, exp, eat int64
	var boot bool
	err := s.db.QueryRowContext(ctx, `SELECT primary_key, primary_gen, primary_at, secondary_key, secondary_gen, secondary_at, active_slot, bootstrap,
		token_slot, token_issued_at, token_expires_at, renew_error, renew_error_at FROM gateway_credentials WHERE gateway_id = ?`, id).
		Scan(&psealed, &c.Primary.Generation, &pat, &ssealed, &c.Secondary.Generation, &sat, &c.ActiveSlot, &boot,
			&c.TokenSlot, &iat, &exp, &c.RenewError, &eat)
	if err != nil {
		return GatewayCredentials{}, fmt.Errorf("keys of gateway %d: %w", id, notFound(err))
	}
	if c.Primary.Secret, err = s.sealer.Open(psealed, gatewayKeyAD(id, SlotPrimary)); err != nil {
		return GatewayCredentials{}, fmt.Errorf("primary key of gateway %d: %w", id, err)
	}
	if c.Secondary.Secret, err = s.sealer.Open(ssealed, gatewayKeyAD(id, SlotSecondary)); err != nil {
		return GatewayCredentials{}, fmt.Errorf("secondary key of gateway %d: %w", id, err)
	}
	c.Bootstrap = boot
	c.Primary.RegeneratedAt, c.Secondary.RegeneratedAt = fromMillis(pat), fromMillis(sat)
	c.TokenIssuedAt, c.TokenExpiresAt, c.RenewErrorAt = fromMillis(iat), fromMillis(exp), fromMillis(eat)
	return c, nil
}

// RegenerateGatewayKey replaces the key of slot with a new random one and
// raises its generation, so every token made with the old key is refused.
func (s *Store) RegenerateGatewayKey(ctx context.Context, id int64, slot string) (GatewayKey, error) {
	if err := validSlot(slot); err != nil {
		return GatewayKey{}, err
	}
	if err := s.ensureGatewayCredentials(ctx, id); err != nil {
		return GatewayKey{}, err
	}
	sealed, err := s.newGatewayKey(id, slot)
	if err != nil {
		return GatewayKey{}, err
	}
	// The column names come from validSlot's two values, never from input.
	if _, err := s.db.ExecContext(ctx, `UPDATE gateway_credentials SET `+slot+`_key = ?, `+slot+`_gen = `+slot+`_gen + 1, `+slot+`_at = ? WHERE gateway_id = ?`,
		sealed, millis(s.now()), id); err != nil {
		return GatewayKey{}, fmt.Errorf("regenerate %s key of gateway %d: %w", slot, id, err)
	}
	c, err := s.GatewayCredentials(ctx, id)
	if err != nil {
		return GatewayKey{}, err
	}
	return c.Key(slot)
}

// SetGatewayTokenSlot chooses the slot new tokens of gateway id are made on.
func (s *Store) SetGatewayTokenSlot(ctx context.Context, id int64, slot string) error {
	if err := validSlot(slot); err != nil {
		return err
	}
	if err := s.ensureGatewayCredentials(ctx, id); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE gateway_credentials SET active_slot = ? WHERE gateway_id = ?`, slot, id); err != nil {
		return fmt.Errorf("set token slot of gateway %d: %w", id, err)
	}
	return nil
}

// setGatewayBootstrap lets gateway id get one first token with its
// signature alone (on), or not (off).
func (s *Store) setGatewayBootstrap(ctx context.Context, id int64, on bool) error {
	if err := s.ensureGatewayCredentials(ctx, id); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE gateway_credentials SET bootstrap = ? WHERE gateway_id = ?`, on, id); err != nil {
		return fmt.Errorf("set first token of gateway %d: %w", id, err)
	}
	return nil
}

// ErrNoBootstrap is returned by TakeGatewayBootstrap when the gateway may
// not get a token without one.
var ErrNoBootstrap = errors.New("the gateway has no valid access token and no first token is due (one is due when an admin pastes its key)")

// TakeGatewayBootstrap uses up gateway id's right to a first token, or
// returns ErrNoBootstrap. Of two requests at once, one wins.
func (s *Store) TakeGatewayBootstrap(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE gateway_credentials SET bootstrap = 0 WHERE gateway_id = ? AND bootstrap = 1`, id)
	if err != nil {
		return fmt.Errorf("first token of gateway %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNoBootstrap
	}
	return nil
}

// RecordGatewayToken notes the token just issued to gateway id; a
// renewal that worked clears the last renewal error.
func (s *Store) RecordGatewayToken(ctx context.Context, id int64, slot string, issued, expires time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE gateway_credentials SET token_slot = ?, token_issued_at = ?, token_expires_at = ?, renew_error = '', renew_error_at = 0 WHERE gateway_id = ?`,
		slot, millis(issued), millis(expires), id); err != nil {
		return fmt.Errorf("record token of gateway %d: %w", id, err)
	}
	return nil
}

// SetGatewayRenewError notes why gateway id's last renewal failed, as it
// reported.
func (s *Store) SetGatewayRenewError(ctx context.Context, id int64, msg string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE gateway_credentials SET renew_error = ?, renew_error_at = ? WHERE gateway_id = ?`, msg, millis(at), id); err != nil {
		return fmt.Errorf("record renewal error of gateway %d: %w", id, err)
	}
	return nil
}

// GatewayTokenExpiry is when the token last issued to a gateway expires.
type GatewayTokenExpiry struct {
	Gateway string
	Expires time.Time
}

// GatewayTokenExpiries lists the gateways issued a token and when it
// expires, by gateway name, for metrics.
func (s *Store) GatewayTokenExpiries(ctx context.Context) ([]GatewayTokenExpiry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT g.name, c.token_expires_at FROM gateways g JOIN gateway_credentials c ON c.gateway_id = g.id
		WHERE c.token_expires_at > 0 ORDER BY g.name`)
	if err != nil {
		return nil, fmt.Errorf("list gateway token expiries: %w", err)
	}
	defer rows.Close()
	var out []GatewayTokenExpiry
	for rows.Next() {
		var e GatewayTokenExpiry
		var ms int64
		if err := rows.Scan(&e.Gateway, &ms); err != nil {
			return nil, fmt.Errorf("list gateway token expiries: %w", err)
		}
		e.Expires = fromMillis(ms)
		out = append(out, e)
	}
	return out, rows.Err()
}
