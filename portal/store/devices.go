package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors of device credentials; DeviceUsable and VerifyDeviceCredential
// wrap them (or ErrNotFound).
var (
	ErrDeviceRevoked = errors.New("the device was revoked")
	ErrDeviceExpired = errors.New("the device's credential has expired")
)

// Errors of the device code exchange, named as in RFC 8628 section 3.5.
var (
	ErrAuthorizationPending = errors.New("the request has not been approved yet")
	ErrSlowDown             = errors.New("polling too fast")
	ErrAccessDenied         = errors.New("the request was denied")
	ErrExpiredToken         = errors.New("the request has expired")
	ErrInvalidGrant         = errors.New("unknown device code or bad signature")
)

// ErrTooManyDeviceRequests is returned when the pending sign-in requests
// are at their bound, in all or from one client address.
var ErrTooManyDeviceRequests = errors.New("too many pending device sign-in requests")

// Bounds of device sign-in requests.
const (
	// DeviceRequestTTL is how long a request waits for approval.
	DeviceRequestTTL = 10 * time.Minute
	// DevicePollInterval is the least time between polls the client is told.
	DevicePollInterval = 2 * time.Second
	// maxPendingRequests and maxPendingPerAddr bound the pending requests,
	// so that unauthenticated clients cannot fill the table.
	maxPendingRequests = 1000
	maxPendingPerAddr  = 10
	// requestKeep is how long an expired request is kept to answer its
	// client "expired_token" rather than "invalid_grant".
	requestKeep = time.Hour
	// deviceTouchEvery spares writes: last use is recorded at most this often
	// (or when the address changes).
	deviceTouchEvery = time.Minute
	// maxCredentialLen bounds a presented credential before it is parsed.
	maxCredentialLen = 128
)

// DeviceCredentialPrefix starts every device credential.
const DeviceCredentialPrefix = "kwd_"

// userCodeAlphabet has no vowels (no words) and none of 0/O/1/I.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// userCodeLen is the letters of a user code, shown as XXXX-XXXX.
const userCodeLen = 8

// Device is a native client a user approved.
type Device struct {
	ID        int64
	UserID    int64
	Name      string
	OS        string
	Arch      string
	Version   string
	PublicKey ed25519.PublicKey
	// ExpiresAt is when the credential ends; zero before it is handed out.
	ExpiresAt  time.Time
	CreatedAt  time.Time
	LastUsedAt time.Time
	LastAddr   string
	RevokedAt  time.Time
	// MFAAt is when the device's user last passed an MFA check for it:
	// approving it from a browser session that had passed one, or a
	// step-up since (SetDeviceMFA); zero is never.
	MFAAt time.Time
}

// Revoked reports whether the device was revoked.
func (d Device) Revoked() bool { return !d.RevokedAt.IsZero() }

// DeviceRequest is a pending device sign-in.
type DeviceRequest struct {
	ID int64
	// UserCode is the code without its dash: FormatUserCode shows it.
	UserCode   string
	PublicKey  ed25519.PublicKey
	Name       string
	OS         string
	Arch       string
	Version    string
	ClientAddr string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	Status     string
}

// FormatUserCode shows a user code as XXXX-XXXX.
func FormatUserCode(c string) string {
	if len(c) != userCodeLen {
		return c
	}
	return c[:4] + "-" + c[4:]
}

// NormalizeUserCode reads a code as a person typed it: case, spaces and
// dashes do not matter. It returns "" for anything that cannot be a code.
func NormalizeUserCode(in string) string {
	if len(in) > 32 {
		return ""
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(in) {
		switch {
		case r == '-' || r == ' ':
		case strings.ContainsRune(userCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return ""
		}
	}
	if b.Len() != userCodeLen {
		return ""
	}
	return b.String()
}

func newUserCode() string {
	b := make([]byte, userCodeLen)
	for i := range b {
		// rand.Text is uniform over its own alphabet; draw a byte and
		// reject the biased tail instead.
		for {
			var x [1]byte
			rand.Read(x[:])
			if int(x[0]) < 256/len(userCodeAlphabet)*len(userCodeAlphabet) {
				b[i] = userCodeAlphabet[int(x[0])%len(userCodeAlphabet)]
				break
			}
		}
	}
	return string(b)
}

// CreateDeviceRequest records a sign-in request of a client at addr and
// returns the device code it polls with (shown once, only its hash is
// kept). It sweeps expired requests first, and refuses with
// ErrTooManyDeviceRequests past the bounds.
func (s *Store) CreateDeviceRequest(ctx context.Context, req DeviceRequest) (string, DeviceRequest, error) {
	if len(req.PublicKey) != ed25519.PublicKeySize {
		return "", DeviceRequest{}, fmt.Errorf("create device request: public key of %d bytes", len(req.PublicKey))
	}
	now := s.now()
	code := "kwdc_" + rand.Text() + rand.Text()
	req.CreatedAt, req.ExpiresAt, req.Status = now.UTC(), now.Add(DeviceRequestTTL).UTC(), "pending"
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_requests WHERE expires_at < ?`, millis(now.Add(-requestKeep))); err != nil {
			return err
		}
		var all, here int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN client_addr = ? THEN 1 ELSE 0 END), 0) FROM device_requests WHERE expires_at > ? AND status = 'pending'`,
			req.ClientAddr, millis(now)).Scan(&all, &here); err != nil {
			return err
		}
		if all >= maxPendingRequests || here >= maxPendingPerAddr {
			return ErrTooManyDeviceRequests
		}
		// A user code may collide (20^8 codes); draw again.
		for range 5 {
			req.UserCode = newUserCode()
			// ON CONFLICT rather than catching the error: on PostgreSQL
			// an error ends the transaction.
			err := tx.QueryRowContext(ctx, `INSERT INTO device_requests (device_code_hash, user_code, public_key, name, os, arch, version, client_addr, created_at, expires_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id`, hashToken(code), req.UserCode, []byte(req.PublicKey), req.Name, req.OS, req.Arch, req.Version,
				req.ClientAddr, millis(req.CreatedAt), millis(req.ExpiresAt)).Scan(&req.ID)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			return nil
		}
		return errors.New("no free user code")
	})
	if err != nil {
		if errors.Is(err, ErrTooManyDeviceRequests) {
			return "", DeviceRequest{}, err
		}
		return "", DeviceRequest{}, fmt.Errorf("create device request: %w", err)
	}
	return code, req, nil
}

const requestColumns = `id, user_code, public_key, name, os, arch, version, client_addr, created_at, expires_at, status`

func scanRequest(row interface{ Scan(...any) error }) (DeviceRequest, error) {
	var r DeviceRequest
	var key []byte
	var created, expires int64
	if err := row.Scan(&r.ID, &r.UserCode, &key, &r.Name, &r.OS, &r.Arch, &r.Version, &r.ClientAddr, &created, &expires, &r.Status); err != nil {
		return DeviceRequest{}, notFound(err)
	}
	r.PublicKey = ed25519.PublicKey(key)
	r.CreatedAt, r.ExpiresAt = fromMillis(created), fromMillis(expires)
	return r, nil
}

// PendingDeviceRequest returns the pending, unexpired request with the user
// code a person typed (see NormalizeUserCode), or ErrNotFound.
func (s *Store) PendingDeviceRequest(ctx context.Context, userCode string) (DeviceRequest, error) {
	c := NormalizeUserCode(userCode)
	if c == "" {
		return DeviceRequest{}, ErrNotFound
	}
	return scanRequest(s.db.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM device_requests WHERE user_code = ? AND status = 'pending' AND expires_at > ?`,
		c, millis(s.now())))
}

// ApproveDeviceRequest approves the pending request with user code for
// userID: the device is made now, bound to the user and to the request's
// key; its credential is handed out when the client next polls.
func (s *Store) ApproveDeviceRequest(ctx context.Context, userCode string, userID int64) (Device, error) {
	var d Device
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		r, err := scanRequest(tx.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM device_requests WHERE user_code = ? AND status = 'pending' AND expires_at > ?`,
			NormalizeUserCode(userCode), millis(now)))
		if err != nil {
			return err
		}
		d = Device{UserID: userID, Name: r.Name, OS: r.OS, Arch: r.Arch, Version: r.Version, PublicKey: r.PublicKey, CreatedAt: now.UTC()}
		err = tx.QueryRowContext(ctx, `INSERT INTO devices (user_id, name, os, arch, version, public_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			userID, d.Name, d.OS, d.Arch, d.Version, []byte(d.PublicKey), millis(d.CreatedAt)).Scan(&d.ID)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE device_requests SET status = 'approved', user_id = ?, device_id = ? WHERE id = ?`, userID, d.ID, r.ID)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Device{}, err
		}
		return Device{}, fmt.Errorf("approve device request: %w", err)
	}
	return d, nil
}

// DenyDeviceRequest denies the pending request with user code; its client
// is told access_denied.
func (s *Store) DenyDeviceRequest(ctx context.Context, userCode string, userID int64) (DeviceRequest, error) {
	var r DeviceRequest
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = scanRequest(tx.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM device_requests WHERE user_code = ? AND status = 'pending' AND expires_at > ?`,
			NormalizeUserCode(userCode), millis(s.now())))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE device_requests SET status = 'denied', user_id = ? WHERE id = ?`, userID, r.ID)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return DeviceRequest{}, err
		}
		return DeviceRequest{}, fmt.Errorf("deny device request: %w", err)
	}
	r.Status = "denied"
	return r, nil
}

// DeviceTokenMessage is what a client signs to exchange its device code.
func DeviceTokenMessage(deviceCode string) []byte {
	return []byte("keyway-device-token\n" + deviceCode)
}

// ExchangeDeviceCode hands out the credential of an approved request, once,
// to the holder of the request's key (sig is its ed25519 signature over
// DeviceTokenMessage). The credential is valid for ttl. Errors:
// ErrInvalidGrant, ErrAuthorizationPending, ErrSlowDown, ErrAccessDenied,
// ErrExpiredToken.
func (s *Store) ExchangeDeviceCode(ctx context.Context, deviceCode string, sig []byte, ttl time.Duration) (string, Device, error) {
	if len(deviceCode) > maxCredentialLen {
		return "", Device{}, ErrInvalidGrant
	}
	var cred string
	var d Device
	var outcome error
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		var id, lastPoll, expires int64
		var key []byte
		var status string
		var deviceID sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT id, public_key, expires_at, last_poll_at, status, device_id FROM device_requests WHERE device_code_hash = ?`,
			hashToken(deviceCode)).Scan(&id, &key, &expires, &lastPoll, &status, &deviceID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrInvalidGrant
		}
		if err != nil {
			return err
		}
		// Only the key's holder learns anything about the request.
		if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, DeviceTokenMessage(deviceCode), sig) {
			return ErrInvalidGrant
		}
		if !now.Before(fromMillis(expires)) {
			return ErrExpiredToken
		}
		switch status {
		case "denied":
			return ErrAccessDenied
		case "pending":
			// Half the interval: clients' timers are not exact.
			tooSoon := lastPoll != 0 && now.Sub(fromMillis(lastPoll)) < DevicePollInterval/2
			if _, err := tx.ExecContext(ctx, `UPDATE device_requests SET last_poll_at = ? WHERE id = ?`, millis(now), id); err != nil {
				return err
			}
			// Committed with the poll time: the answer is no error
			// of the transaction.
			outcome = ErrAuthorizationPending
			if tooSoon {
				outcome = ErrSlowDown
			}
			return nil
		}
		if !deviceID.Valid {
			return ErrInvalidGrant
		}
		var err2 error
		d, err2 = scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, deviceID.Int64))
		if err2 != nil {
			return err2
		}
		cred = DeviceCredentialPrefix + strconv.FormatInt(d.ID, 10) + "_" + rand.Text() + rand.Text()
		d.ExpiresAt = now.Add(ttl).UTC()
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET credential_hash = ?, credential_expires_at = ? WHERE id = ?`,
			hashToken(cred), millis(d.ExpiresAt), d.ID); err != nil {
			return err
		}
		// The request goes, so that a second exchange gets invalid_grant.
		_, err = tx.ExecContext(ctx, `DELETE FROM device_requests WHERE id = ?`, id)
		return err
	})
	if err != nil {
		for _, e := range []error{ErrInvalidGrant, ErrAuthorizationPending, ErrSlowDown, ErrAccessDenied, ErrExpiredToken} {
			if errors.Is(err, e) {
				return "", Device{}, e
			}
		}
		return "", Device{}, fmt.Errorf("exchange device code: %w", err)
	}
	if outcome != nil {
		return "", Device{}, outcome
	}
	return cred, d, nil
}

const deviceColumns = `id, user_id, name, os, arch, version, public_key, credential_expires_at, created_at, last_used_at, last_addr, revoked_at, mfa_at`

func scanDevice(row interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var key []byte
	var expires, created, used, revoked, mfaAt int64
	if err := row.Scan(&d.ID, &d.UserID, &d.Name, &d.OS, &d.Arch, &d.Version, &key, &expires, &created, &used, &d.LastAddr, &revoked, &mfaAt); err != nil {
		return Device{}, notFound(err)
	}
	d.PublicKey = ed25519.PublicKey(key)
	d.ExpiresAt, d.CreatedAt, d.LastUsedAt, d.RevokedAt = fromMillis(expires), fromMillis(created), fromMillis(used), fromMillis(revoked)
	d.MFAAt = fromMillis(mfaAt)
	return d, nil
}

// DeviceByID returns a device.
func (s *Store) DeviceByID(ctx context.Context, id int64) (Device, error) {
	return scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
}

// usable says why d may not be used now, or nil.
func (d Device) usable(now time.Time) error {
	switch {
	case d.Revoked():
		return fmt.Errorf("device %d: %w", d.ID, ErrDeviceRevoked)
	case d.ExpiresAt.IsZero() || !now.Before(d.ExpiresAt):
		return fmt.Errorf("device %d: %w", d.ID, ErrDeviceExpired)
	}
	return nil
}

// DeviceUsable reports whether device id may be used now: nil, or an error
// wrapping ErrDeviceRevoked, ErrDeviceExpired or ErrNotFound.
func (s *Store) DeviceUsable(ctx context.Context, id int64) error {
	d, err := s.DeviceByID(ctx, id)
	if err != nil {
		return fmt.Errorf("device %d: %w", id, err)
	}
	return d.usable(s.now())
}

// VerifyDeviceCredential returns the device a presented credential
// kwd_<id>_<secret> belongs to. A malformed, unknown or wrong credential
// gives ErrNotFound; a right one of a revoked device or an expired
// credential an error wrapping ErrDeviceRevoked or ErrDeviceExpired, with
// the device (so that the caller can check the holder's key first).
func (s *Store) VerifyDeviceCredential(ctx context.Context, cred string) (Device, error) {
	rest, ok := strings.CutPrefix(cred, DeviceCredentialPrefix)
	if !ok || len(cred) > maxCredentialLen {
		return Device{}, ErrNotFound
	}
	idText, _, ok := strings.Cut(rest, "_")
	id, err := strconv.ParseInt(idText, 10, 64)
	if !ok || err != nil || id <= 0 {
		return Device{}, ErrNotFound
	}
	var hash string
	d, err := s.DeviceByID(ctx, id)
	if err != nil {
		return Device{}, err
	}
	if err := s.db.QueryRowContext(ctx, `SELECT credential_hash FROM devices WHERE id = ?`, id).Scan(&hash); err != nil {
		return Device{}, notFound(err)
	}
	// A revoked device's hash is kept, so that its holder is told so.
	if hash == "" || subtle.ConstantTimeCompare([]byte(hash), []byte(hashToken(cred))) != 1 {
		return Device{}, ErrNotFound
	}
	return d, d.usable(s.now())
}

// TouchDevice records that d was used from addr; at most once a minute
// unless the address changed, to spare writes on busy devices.
func (s *Store) TouchDevice(ctx context.Context, d Device, addr string) error {
	now := s.now()
	if now.Sub(d.LastUsedAt) < deviceTouchEvery && addr == d.LastAddr {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE devices SET last_used_at = ?, last_addr = ? WHERE id = ?`, millis(now), addr, d.ID); err != nil {
		return fmt.Errorf("record use of device %d: %w", d.ID, err)
	}
	return nil
}

// ListDevices returns a user's devices, newest first.
func (s *Store) ListDevices(ctx context.Context, userID int64) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = ? ORDER BY id DESC`, userID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// RevokeDevice revokes one of userID's devices; its credential stops
// working at once. Revoking a revoked device again is not an error.
func (s *Store) RevokeDevice(ctx context.Context, userID, deviceID int64) (Device, error) {
	var d Device
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ? AND user_id = ?`, deviceID, userID))
		if err != nil || d.Revoked() {
			return err
		}
		d.RevokedAt = s.now().UTC()
		_, err = tx.ExecContext(ctx, `UPDATE devices SET revoked_at = ? WHERE id = ?`, millis(d.RevokedAt), d.ID)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Device{}, err
		}
		return Device{}, fmt.Errorf("revoke device: %w", err)
	}
	return d, nil
}

// Setting keys and bounds of native clients.
const (
	SettingClientCredentialHours  = "client_credential_hours"
	SettingClientStreamsPerDevice = "client_streams_per_device"
	SettingClientStreamsPerUser   = "client_streams_per_user"
)

// ClientLimits are the admin's settings for native clients.
type ClientLimits struct {
	CredentialHours  int `json:"credential_hours"`
	StreamsPerDevice int `json:"streams_per_device"`
	StreamsPerUser   int `json:"streams_per_user"`
}

// Bounds of ClientLimits fields, and their defaults. A device's streams
// share one HTTP/2 connection, which takes at most 1,024 at once: past
// that its client would wait for a free one instead of being refused.
var (
	DefaultClientLimits = ClientLimits{CredentialHours: 12, StreamsPerDevice: 256, StreamsPerUser: 512}
	MinClientLimits     = ClientLimits{CredentialHours: 1, StreamsPerDevice: 1, StreamsPerUser: 1}
	MaxClientLimits     = ClientLimits{CredentialHours: 720, StreamsPerDevice: 1000, StreamsPerUser: 20000}
)

// CredentialTTL is how long a new device credential is valid.
func (l ClientLimits) CredentialTTL() time.Duration {
	return time.Duration(l.CredentialHours) * time.Hour
}

// Validate says which field is out of bounds, in words.
func (l ClientLimits) Validate() map[string]string {
	errs := map[string]string{}
	check := func(field, what string, v, lo, hi int) {
		if v < lo || v > hi {
			errs[field] = fmt.Sprintf("%s must be between %d and %d.", what, lo, hi)
		}
	}
	check("credential_hours", "The credential lifetime", l.CredentialHours, MinClientLimits.CredentialHours, MaxClientLimits.CredentialHours)
	check("streams_per_device", "Streams per device", l.StreamsPerDevice, MinClientLimits.StreamsPerDevice, MaxClientLimits.StreamsPerDevice)
	check("streams_per_user", "Streams per user", l.StreamsPerUser, MinClientLimits.StreamsPerUser, MaxClientLimits.StreamsPerUser)
	return errs
}

// ClientLimits returns the native-client settings; unset or unreadable
// values (out of bounds) take their defaults.
func (s *Store) ClientLimits(ctx context.Context) (ClientLimits, error) {
	l := DefaultClientLimits
	for _, f := range []struct {
		key    string
		v      *int
		lo, hi int
	}{
		{SettingClientCredentialHours, &l.CredentialHours, MinClientLimits.CredentialHours, MaxClientLimits.CredentialHours},
		{SettingClientStreamsPerDevice, &l.StreamsPerDevice, MinClientLimits.StreamsPerDevice, MaxClientLimits.StreamsPerDevice},
		{SettingClientStreamsPerUser, &l.StreamsPerUser, MinClientLimits.StreamsPerUser, MaxClientLimits.StreamsPerUser},
	} {
		text, err := s.GetSetting(ctx, f.key)
		if err != nil {
			return DefaultClientLimits, err
		}
		if n, err := strconv.Atoi(text); err == nil && n >= f.lo && n <= f.hi {
			*f.v = n
		}
	}
	return l, nil
}

// SetClientLimits stores l after checking its bounds.
func (s *Store) SetClientLimits(ctx context.Context, l ClientLimits) error {
	if errs := l.Validate(); len(errs) > 0 {
		return fmt.Errorf("client limits out of bounds: %v", errs)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for k, v := range map[string]int{
			SettingClientCredentialHours:  l.CredentialHours,
			SettingClientStreamsPerDevice: l.StreamsPerDevice,
			SettingClientStreamsPerUser:   l.StreamsPerUser,
		} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
				k, strconv.Itoa(v)); err != nil {
				return fmt.Errorf("write setting %s: %w", k, err)
			}
		}
		return nil
	})
}
