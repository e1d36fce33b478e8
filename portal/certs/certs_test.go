package certs

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSelfSignedRenewalKeepsKey: the portal's self-signed certificate is
// renewed before it expires with the same key, which gateways pin.
func TestSelfSignedRenewalKeepsKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, created, err := LoadOrCreateSelfSigned(dir, []string{"portal.example", "192.0.2.4"})
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	again, created, err := LoadOrCreateSelfSigned(dir, nil)
	if err != nil || created || Fingerprint(again) != Fingerprint(first) {
		t.Fatalf("a certificate far from expiry was replaced: %v %v", created, err)
	}
	// Make it expire in a day, as two years later.
	key := first.PrivateKey.(*ecdsa.PrivateKey)
	tmpl := *first.Leaf
	tmpl.SerialNumber, tmpl.NotAfter = big.NewInt(7), time.Now().Add(24*time.Hour)
	tmpl.Subject = pkix.Name{CommonName: "Keyway portal (self-signed)"}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)

	renewed, created, err := LoadOrCreateSelfSigned(dir, nil)
	if err != nil || created {
		t.Fatalf("renew: %v %v", created, err)
	}
	if Fingerprint(renewed) == Fingerprint(first) || KeySHA256(renewed) != KeySHA256(first) || KeySHA256(first) == "" {
		t.Fatalf("renewal: fingerprint %s → %s, key %s → %s; want a new certificate with the same key",
			Fingerprint(first), Fingerprint(renewed), KeySHA256(first), KeySHA256(renewed))
	}
	if time.Until(renewed.Leaf.NotAfter) < 365*24*time.Hour {
		t.Fatalf("renewed certificate expires %s", renewed.Leaf.NotAfter)
	}
	if err := renewed.Leaf.VerifyHostname("portal.example"); err != nil {
		t.Fatalf("renewed certificate lost a host name: %v", err)
	}
	if err := renewed.Leaf.VerifyHostname("192.0.2.4"); err != nil {
		t.Fatalf("renewed certificate lost an address: %v", err)
	}
	if k, err := KeySHA256File(filepath.Join(dir, "tls.crt")); err != nil || k != KeySHA256(first) {
		t.Fatalf("key of the certificate file: %s %v", k, err)
	}
	if _, err := KeySHA256File(filepath.Join(dir, "tls.key")); err == nil {
		t.Fatal("a key file passed for a certificate")
	}
}
