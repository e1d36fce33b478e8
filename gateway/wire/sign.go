package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Headers of a request a gateway signs with its key, so the portal can
// authenticate gateways on its ordinary HTTPS listener without client
// certificates (which would make browsers ask for one).
const (
	HeaderGatewayID = "X-Keyway-Gateway"
	HeaderTime      = "X-Keyway-Time"
	HeaderSignature = "X-Keyway-Signature"
	// HeaderNonce makes every signed request unique: the portal refuses a
	// nonce it has seen while the request's time is still acceptable.
	HeaderNonce = "X-Keyway-Nonce"
	// HeaderBodySHA256 is the hex SHA-256 of the request's body, which the
	// signature covers; the portal checks the body against it.
	HeaderBodySHA256 = "X-Keyway-Body-SHA256"
	// HeaderConfigSignature carries the portal's signature of a config it
	// sends a gateway, made with the key the gateway's config file pins.
	HeaderConfigSignature = "X-Keyway-Config-Signature"
)

// Limits of signed requests.
const (
	// maxClockSkew bounds how old or new a signed request may be.
	maxClockSkew = 2 * time.Minute
	// maxNonce bounds the nonce header.
	maxNonce = 64
	// nonceLifetime is how long a nonce is remembered: past it, the
	// request's time is outside maxClockSkew anyway.
	nonceLifetime = 2*maxClockSkew + 10*time.Second
)

// EmptyBody is the SHA-256 of a request without a body.
var EmptyBody = sha256.Sum256(nil)

// ErrReplay is returned by VerifyRequest for a nonce already seen.
var ErrReplay = errors.New("request replayed: its nonce was already used")

// ErrNonceCacheFull is returned when the portal remembers as many nonces
// as it may and none has expired: it refuses rather than forgets.
var ErrNonceCacheFull = errors.New("too many gateway requests in the last minutes; try again shortly")

// signedText is what a gateway signs (version 2): the method, the path
// with its query (so an upload's offset is covered), the gateway, the time,
// the nonce, the body's digest and the recording metadata header's digest.
func signedText(method, uri, gatewayID, ts, nonce, bodyHex, recording string) []byte {
	rec := sha256.Sum256([]byte(recording))
	return []byte("keyway-gateway-request-v2\n" + method + "\n" + uri + "\n" + gatewayID + "\n" + ts + "\n" +
		nonce + "\n" + bodyHex + "\n" + hex.EncodeToString(rec[:]))
}

// SignRequest adds the gateway's signature over the request's method, path
// and query, the gateway's id, the time, a fresh nonce, body (the SHA-256
// of the body the request sends) and its HeaderRecording. Set that header
// before signing.
func SignRequest(r *http.Request, id *Identity, gatewayID string, now time.Time, body [sha256.Size]byte) {
	ts := strconv.FormatInt(now.Unix(), 10)
	nonce := rand.Text()
	bodyHex := hex.EncodeToString(body[:])
	sig := ed25519.Sign(id.key, signedText(r.Method, r.URL.RequestURI(), gatewayID, ts, nonce, bodyHex, r.Header.Get(HeaderRecording)))
	r.Header.Set(HeaderGatewayID, gatewayID)
	r.Header.Set(HeaderTime, ts)
	r.Header.Set(HeaderNonce, nonce)
	r.Header.Set(HeaderBodySHA256, bodyHex)
	r.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
}

// VerifyRequest checks a signed request against the gateway's pinned key
// and records its nonce in seen, refusing one seen before. It returns the
// SHA-256 the body must have; the caller checks the body against it.
func VerifyRequest(r *http.Request, key ed25519.PublicKey, now time.Time, seen *NonceCache) ([sha256.Size]byte, error) {
	var body [sha256.Size]byte
	ts := r.Header.Get(HeaderTime)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return body, errors.New("missing or malformed request time")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxClockSkew || d < -maxClockSkew {
		return body, fmt.Errorf("request time is %s off the portal's clock", d.Round(time.Second))
	}
	nonce := r.Header.Get(HeaderNonce)
	if nonce == "" {
		return body, errors.New("the request is signed the old way (no nonce, body not covered): upgrade the gateway to the portal's version")
	}
	if len(nonce) > maxNonce {
		return body, errors.New("malformed nonce")
	}
	bodyHex := r.Header.Get(HeaderBodySHA256)
	if n, err := hex.Decode(body[:], []byte(bodyHex)); err != nil || n != sha256.Size || len(bodyHex) != 2*sha256.Size {
		return body, errors.New("missing or malformed body digest")
	}
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(HeaderSignature))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return body, errors.New("missing or malformed signature")
	}
	gatewayID := r.Header.Get(HeaderGatewayID)
	if len(key) != ed25519.PublicKeySize ||
		!ed25519.Verify(key, signedText(r.Method, r.URL.RequestURI(), gatewayID, ts, nonce, bodyHex, r.Header.Get(HeaderRecording)), sig) {
		return body, errors.New("signature does not match the gateway's key")
	}
	// Only signed requests reach the cache, so nobody without a gateway's
	// key can fill it.
	if err := seen.Add(gatewayID+"\n"+nonce, now); err != nil {
		return body, err
	}
	return body, nil
}

// NonceCache remembers the nonces of recent signed requests, at most a
// fixed number, each for as long as its request could be accepted.
type NonceCache struct {
	max int

	mu    sync.Mutex
	seen  map[string]struct{}
	queue []nonceEntry // oldest first; times only grow
}

type nonceEntry struct {
	key     string
	expires time.Time
}

// NewNonceCache returns a cache of at most max nonces.
func NewNonceCache(max int) *NonceCache {
	return &NonceCache{max: max, seen: map[string]struct{}{}}
}

// Add records key, seen at now, or returns ErrReplay if it is remembered,
// or ErrNonceCacheFull if max unexpired nonces are.
func (c *NonceCache) Add(key string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(c.queue) && !now.Before(c.queue[n].expires) {
		delete(c.seen, c.queue[n].key)
		n++
	}
	if n > 0 {
		c.queue = append(c.queue[:0:0], c.queue[n:]...)
	}
	if _, ok := c.seen[key]; ok {
		return ErrReplay
	}
	if len(c.queue) >= c.max {
		return ErrNonceCacheFull
	}
	exp := now.Add(nonceLifetime)
	if l := len(c.queue); l > 0 && exp.Before(c.queue[l-1].expires) {
		exp = c.queue[l-1].expires // a clock that stepped back keeps the order
	}
	c.seen[key] = struct{}{}
	c.queue = append(c.queue, nonceEntry{key, exp})
	return nil
}

// Len is the number of nonces remembered.
func (c *NonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// configSigned is what the portal signs of a config it sends gateway id.
func configSigned(gatewayID string, body []byte) []byte {
	return append([]byte("keyway-gateway-config\n"+gatewayID+"\n"), body...)
}

// SignConfig returns the portal's signature of the config body it sends
// gateway gatewayID, for HeaderConfigSignature.
func SignConfig(id *Identity, gatewayID string, body []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(id.key, configSigned(gatewayID, body)))
}

// VerifyConfig checks the portal's signature of a config body.
func VerifyConfig(portal ed25519.PublicKey, gatewayID string, body []byte, sig string) error {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return errors.New("the config is not signed by the portal (an older portal, or something between gateway and portal)")
	}
	if len(portal) != ed25519.PublicKeySize || !ed25519.Verify(portal, configSigned(gatewayID, body), raw) {
		return errors.New("the config's signature does not match the portal key in the gateway's config file")
	}
	return nil
}

// Status is what a gateway's management listener reports.
type Status struct {
	GatewayID      string `json:"gateway_id"`
	Version        string `json:"version"`
	UptimeSeconds  int64  `json:"uptime_seconds"`
	ActiveSessions int    `json:"active_sessions"`
	ConfigVersion  int64  `json:"config_version"`
	// Error, with HTTP 503, says why the gateway cannot take sessions now
	// (no signed config yet, its session listener failing).
	Error string `json:"error,omitempty"`
	// DrainDeadline, set while the gateway drains (with Error and HTTP
	// 503), is when it closes the sessions still running.
	DrainDeadline time.Time `json:"drain_deadline,omitzero"`
}

// GatewayConfig is what a gateway pulls from the portal, signed with the
// portal's key (HeaderConfigSignature).
type GatewayConfig struct {
	Version   int64  `json:"version"`
	GatewayID string `json:"gateway_id"`
	Name      string `json:"name"`
	Segment   string `json:"segment"`
	// AllowedNetworks are the CIDRs the gateway may dial; empty allows any.
	AllowedNetworks []string `json:"allowed_networks"`
	// RelayAddresses are the session listeners (host:port) of the gateways
	// the portal has enrolled: the only addresses a relay may reach.
	RelayAddresses []string `json:"relay_addresses"`
	// PortalTLSKeys are the hex SHA-256 digests of the public keys
	// (SubjectPublicKeyInfo) of the HTTPS certificates the portal serves or
	// will serve; a gateway whose config file pins the portal accepts them.
	PortalTLSKeys []string `json:"portal_tls_keys,omitempty"`
}

// GatewayFile is the config file a remote gateway runs with, as the portal
// offers it for download. It holds no secret: the gateway makes its own
// key, and the portal's keys are public.
type GatewayFile struct {
	GatewayID string `json:"gateway_id"`
	Name      string `json:"name"`
	Segment   string `json:"segment"`
	PortalURL string `json:"portal_url"`
	PortalKey string `json:"portal_key"`
	// PortalCertSHA256 pins the portal's exact HTTPS certificate (files of
	// earlier versions); PortalTLSKeySHA256 pins its key, which survives
	// renewals. With neither, the system's CAs decide.
	PortalCertSHA256   string            `json:"portal_cert_sha256,omitempty"`
	PortalTLSKeySHA256 string            `json:"portal_tls_key_sha256,omitempty"`
	StateDir           string            `json:"state_dir"`
	Listen             map[string]string `json:"listen"`
	PullIntervalSecs   int               `json:"pull_interval_seconds"`
	// SpoolMinFreeMB is the free disk space, in MiB, the recording spool
	// (state_dir/spool) needs to start a recording; 0 means 64.
	SpoolMinFreeMB int `json:"spool_min_free_mb,omitempty"`
	// TLSMinVersion ("1.2", the default, or "1.3") and TLSClientCiphers
	// (comma-separated TLS 1.2 cipher suites; empty: Go's defaults) govern
	// the gateway's HTTPS connections to the portal; see gateway/tlsconf.
	// The session and management listeners always require TLS 1.3.
	TLSMinVersion    string `json:"tls_min_version,omitempty"`
	TLSClientCiphers string `json:"tls_client_ciphers,omitempty"`
}
