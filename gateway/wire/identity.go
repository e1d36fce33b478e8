package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// publicKeyPrefix starts the text form of a public key, the form admins
// copy from a gateway and paste into the portal.
const publicKeyPrefix = "ed25519:"

// Identity is one side's Ed25519 key and the self-signed certificate that
// presents it in TLS. No CA is involved: the peer pins the public key.
type Identity struct {
	key  ed25519.PrivateKey
	cert tls.Certificate
}

// NewIdentity wraps key in a freshly made self-signed certificate.
func NewIdentity(key ed25519.PrivateKey) (*Identity, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "keyway"},
		NotBefore:    time.Now().Add(-24 * time.Hour),
		// The certificate only carries the key; trust comes from pinning,
		// so it need not expire while the key is in use.
		NotAfter:    time.Now().AddDate(100, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return &Identity{key: key, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}, nil
}

// LoadOrCreateIdentity reads the PEM (PKCS#8) Ed25519 key at path, or
// creates one there with mode 0600 when the file does not exist.
func LoadOrCreateIdentity(path string) (*Identity, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encode key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create key directory: %w", err)
		}
		// O_EXCL: two processes starting at once must not both write a key.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create key file: %w", err)
		}
		if err := errors.Join(pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}), f.Close()); err != nil {
			return nil, fmt.Errorf("write key file %s: %w", path, err)
		}
		return NewIdentity(key)
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key file %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s: not an Ed25519 key", path)
	}
	return NewIdentity(key)
}

// PublicKey returns the identity's public key.
func (id *Identity) PublicKey() ed25519.PublicKey { return id.key.Public().(ed25519.PublicKey) }

// PublicKeyString returns the public key as "ed25519:<base64>".
func (id *Identity) PublicKeyString() string { return FormatPublicKey(id.PublicKey()) }

// FormatPublicKey returns k as "ed25519:<base64>".
func FormatPublicKey(k ed25519.PublicKey) string {
	return publicKeyPrefix + base64.StdEncoding.EncodeToString(k)
}

// ParsePublicKey reads a key in the form PublicKeyString writes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	b64, ok := strings.CutPrefix(s, publicKeyPrefix)
	if !ok {
		return nil, errors.New(`public key must start with "ed25519:"`)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("public key is not valid base64: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key has %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// Fingerprint is a short, stable name for a public key, for logs and errors.
func Fingerprint(k []byte) string {
	sum := sha256.Sum256(k)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// peerKey returns the Ed25519 key of the single certificate a peer sent.
func peerKey(rawCerts [][]byte) (ed25519.PublicKey, error) {
	if len(rawCerts) != 1 {
		return nil, fmt.Errorf("peer sent %d certificates, want exactly 1", len(rawCerts))
	}
	c, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("parse peer certificate: %w", err)
	}
	k, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("peer certificate does not hold an Ed25519 key")
	}
	return k, nil
}

// ServerTLSConfig is the TLS configuration of a listener that accepts only
// clients whose key trusted approves. trusted is called for every handshake,
// so revoking a key takes effect for the next connection.
func ServerTLSConfig(id *Identity, trusted func(ed25519.PublicKey) bool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			k, err := peerKey(raw)
			if err != nil {
				return err
			}
			if !trusted(k) {
				return fmt.Errorf("client key %s is not trusted", Fingerprint(k))
			}
			return nil
		},
	}
}

// ClientTLSConfig is the TLS configuration for dialing a peer whose public
// key is pinned.
func ClientTLSConfig(id *Identity, pinned ed25519.PublicKey) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		// Chain verification is replaced by the pin check below.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			k, err := peerKey(raw)
			if err != nil {
				return err
			}
			if len(pinned) == 0 || !pinned.Equal(k) {
				return fmt.Errorf("server key %s does not match the pinned key %s", Fingerprint(k), Fingerprint(pinned))
			}
			return nil
		},
	}
}
