package wire

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Headers of a request a gateway signs with its key, so the portal can
// authenticate gateways on its ordinary HTTPS listener without client
// certificates (which would make browsers ask for one).
const (
	HeaderGatewayID = "X-Keyway-Gateway"
	HeaderTime      = "X-Keyway-Time"
	HeaderSignature = "X-Keyway-Signature"
)

// maxClockSkew bounds how old or new a signed request may be.
const maxClockSkew = 2 * time.Minute

func signedText(method, path, gatewayID, ts string) []byte {
	return []byte("keyway-gateway-request\n" + method + "\n" + path + "\n" + gatewayID + "\n" + ts)
}

// SignRequest adds the gateway's signature over method, path, id and time.
func SignRequest(r *http.Request, id *Identity, gatewayID string, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := ed25519.Sign(id.key, signedText(r.Method, r.URL.Path, gatewayID, ts))
	r.Header.Set(HeaderGatewayID, gatewayID)
	r.Header.Set(HeaderTime, ts)
	r.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
}

// VerifyRequest checks a signed request against the gateway's pinned key.
func VerifyRequest(r *http.Request, key ed25519.PublicKey, now time.Time) error {
	ts := r.Header.Get(HeaderTime)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("missing or malformed request time")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxClockSkew || d < -maxClockSkew {
		return fmt.Errorf("request time is %s off the portal's clock", d.Round(time.Second))
	}
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(HeaderSignature))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("missing or malformed signature")
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, signedText(r.Method, r.URL.Path, r.Header.Get(HeaderGatewayID), ts), sig) {
		return errors.New("signature does not match the gateway's key")
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
}

// GatewayConfig is what a gateway pulls from the portal.
type GatewayConfig struct {
	Version   int64  `json:"version"`
	GatewayID string `json:"gateway_id"`
	Name      string `json:"name"`
	Segment   string `json:"segment"`
	// AllowedNetworks are the CIDRs the gateway may dial; empty allows any.
	AllowedNetworks []string `json:"allowed_networks"`
}

// GatewayFile is the config file a remote gateway runs with, as the portal
// offers it for download. It holds no secret: the gateway makes its own
// key, and the portal's key and certificate fingerprint are public.
type GatewayFile struct {
	GatewayID        string            `json:"gateway_id"`
	Name             string            `json:"name"`
	Segment          string            `json:"segment"`
	PortalURL        string            `json:"portal_url"`
	PortalKey        string            `json:"portal_key"`
	PortalCertSHA256 string            `json:"portal_cert_sha256,omitempty"`
	StateDir         string            `json:"state_dir"`
	Listen           map[string]string `json:"listen"`
	PullIntervalSecs int               `json:"pull_interval_seconds"`
	// SpoolMinFreeMB is the free disk space, in MiB, the recording spool
	// (state_dir/spool) needs to start a recording; 0 means 64.
	SpoolMinFreeMB int `json:"spool_min_free_mb,omitempty"`
}
