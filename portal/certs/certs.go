// Package certs provides the portal's HTTPS certificate: one given by the
// operator, or a self-signed one generated on first run.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Load reads a certificate and key pair from PEM files.
func Load(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load TLS certificate %s: %w", certFile, err)
	}
	return c, nil
}

// renewBefore is how long before it expires the self-signed certificate
// is renewed (at the portal's start), keeping its key.
const renewBefore = 30 * 24 * time.Hour

// LoadOrCreateSelfSigned returns the self-signed certificate kept in dir
// (tls.crt, tls.key), creating it for localhost and the loopback addresses
// plus hosts when it does not exist yet. created reports a new certificate.
// One that expires within 30 days is renewed with the same key, so that
// gateways, which pin the key, keep trusting the portal.
func LoadOrCreateSelfSigned(dir string, hosts []string) (cert tls.Certificate, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := os.Stat(certFile); err == nil {
		c, err := Load(certFile, keyFile)
		if err == nil && c.Leaf != nil && time.Until(c.Leaf.NotAfter) < renewBefore {
			c, err = RenewSelfSigned(dir, hosts)
		}
		return c, false, err
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, false, fmt.Errorf("check %s: %w", certFile, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("generate TLS key: %w", err)
	}
	der, err := selfSigned(key, hosts)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("encode TLS key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("write %s: %w", keyFile, err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("write %s: %w", certFile, err)
	}
	c, err := Load(certFile, keyFile)
	return c, true, err
}

// RenewSelfSigned replaces the self-signed certificate in dir with a new
// one for the same key (and the hosts it named, plus hosts), valid for two
// years from now.
func RenewSelfSigned(dir string, hosts []string) (tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	old, err := Load(certFile, keyFile)
	if err != nil {
		return old, err
	}
	key, ok := old.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || old.Leaf == nil {
		return old, fmt.Errorf("renew %s: not a self-signed ECDSA certificate of the portal", certFile)
	}
	for _, ip := range old.Leaf.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	hosts = append(hosts, old.Leaf.DNSNames...)
	der, err := selfSigned(key, hosts)
	if err != nil {
		return old, err
	}
	tmp := certFile + ".new"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return old, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, certFile); err != nil {
		return old, fmt.Errorf("renew %s: %w", certFile, err)
	}
	return Load(certFile, keyFile)
}

// selfSigned makes a certificate for key, localhost, the loopback
// addresses and hosts.
func selfSigned(key *ecdsa.PrivateKey, hosts []string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Keyway portal (self-signed)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if !ip.Equal(net.IPv4(127, 0, 0, 1)) && !ip.Equal(net.IPv6loopback) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create TLS certificate: %w", err)
	}
	return der, nil
}

// KeySHA256File is KeySHA256 of the first certificate in the PEM file at
// path: one the operator will switch to, announced to gateways before.
func KeySHA256File(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read next certificate: %w", err)
	}
	for {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			return "", fmt.Errorf("next certificate %s: no PEM CERTIFICATE block", path)
		}
		if block.Type == "CERTIFICATE" {
			return KeySHA256(tls.Certificate{Certificate: [][]byte{block.Bytes}}), nil
		}
	}
}

// KeySHA256 is the hex SHA-256 of the public key (SubjectPublicKeyInfo) of
// the certificate's leaf: what gateways pin, since renewals keep it.
func KeySHA256(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// Fingerprint is the SHA-256 fingerprint of the certificate's leaf, in the
// colon-separated form browsers show.
func Fingerprint(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(c.Certificate[0])
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
