// Command hookexample is a small connection authorization hook for
// Keyway: it allows listed users from listed networks and reports a
// posture status. See docs/hooks.md.
//
//	go run ./e2e/hookexample -listen 127.0.0.1:8443 -secret "$SECRET" \
//	    -allow-users alice,bob -allow-networks 127.0.0.0/8 -posture managed-device
//
// Without -cert and -key it makes a self-signed certificate for the
// listen address and prints it, for the portal's CA bundle.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyway-dev/keyway/e2e/hookexample/examplehook"
)

// minSecret matches the portal's shortest shared secret.
const minSecret = 16

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := func(addr string, selfSigned []byte) {
		if selfSigned != nil {
			fmt.Printf("Self-signed certificate (paste into the portal's CA bundle):\n%s", selfSigned)
		}
		log.Info("hook listening", "url", "https://"+addr+"/")
	}
	if err := run(ctx, log, os.Args[1:], ready); err != nil {
		log.Error("hookexample", "err", err)
		os.Exit(1)
	}
}

// run serves the hook until ctx ends; ready is told the address it
// listens on and, when it made one, its self-signed certificate (PEM).
func run(ctx context.Context, log *slog.Logger, args []string, ready func(addr string, selfSigned []byte)) error {
	fs := flag.NewFlagSet("hookexample", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8443", "address to listen on (HTTPS)")
	certFile := fs.String("cert", "", "PEM certificate file (with -key); none: a self-signed one is made and printed")
	keyFile := fs.String("key", "", "PEM private key file")
	secret := fs.String("secret", os.Getenv("KEYWAY_HOOK_SECRET"), "shared secret set in the portal (default $KEYWAY_HOOK_SECRET)")
	users := fs.String("allow-users", "", "comma-separated users allowed (empty: every user)")
	networks := fs.String("allow-networks", "", "comma-separated client networks allowed, CIDR (empty: any)")
	posture := fs.String("posture", "", "posture status reported for every connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(*secret) < minSecret {
		return fmt.Errorf("-secret must be at least %d bytes (the secret set on the portal's Settings page)", minSecret)
	}
	nets, err := examplehook.ParseNetworks(*networks)
	if err != nil {
		return fmt.Errorf("-allow-networks: %w", err)
	}
	var (
		cert    tls.Certificate
		pemCert []byte
	)
	switch {
	case *certFile != "" || *keyFile != "":
		if cert, err = tls.LoadX509KeyPair(*certFile, *keyFile); err != nil {
			return fmt.Errorf("load certificate: %w", err)
		}
	default:
		if cert, pemCert, err = selfSigned(*listen); err != nil {
			return fmt.Errorf("make certificate: %w", err)
		}
	}

	h := examplehook.New(examplehook.Config{
		Secret: *secret, Users: examplehook.ParseUsers(*users), Networks: nets, Posture: *posture, Log: log,
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	ready(ln.Addr().String(), pemCert)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// selfSigned makes a certificate for the listen address's host.
func selfSigned(listen string) (tls.Certificate, []byte, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "keyway example hook"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else if host != "" {
		tmpl.DNSNames = []string{host}
	} else {
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemCert, nil
}
