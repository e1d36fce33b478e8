package sshgw

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keyway-dev/keyway/gateway/wire"
)

func authorizedKeyOf(t *testing.T, pub any) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return authorizedKey(k)
}

// TestHostKeyAlgorithms checks OpenSSH's order: the pinned key's type
// first, otherwise Ed25519 and ECDSA before RSA, which Dropbear advertises
// without having an RSA key.
func TestHostKeyAlgorithms(t *testing.T) {
	t.Parallel()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name   string
		pinned string
		first  []string
	}{
		{"nothing pinned", "", []string{ssh.CertAlgoED25519v01, ssh.KeyAlgoED25519, ssh.CertAlgoECDSA256v01}},
		{"unreadable pin", "not a key", []string{ssh.CertAlgoED25519v01, ssh.KeyAlgoED25519}},
		{"Ed25519 pinned", authorizedKeyOf(t, edPub), []string{ssh.KeyAlgoED25519, ssh.CertAlgoED25519v01}},
		{"ECDSA P-384 pinned", authorizedKeyOf(t, &ecKey.PublicKey), []string{ssh.KeyAlgoECDSA384, ssh.CertAlgoED25519v01}},
		{"RSA pinned", authorizedKeyOf(t, &rsaKey.PublicKey), []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA, ssh.CertAlgoED25519v01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := hostKeyAlgorithms(tc.pinned)
			if len(got) < len(tc.first) || strings.Join(got[:len(tc.first)], ",") != strings.Join(tc.first, ",") {
				t.Fatalf("algorithms %v, want them to start with %v", got, tc.first)
			}
			seen := map[string]bool{}
			for _, a := range got {
				if seen[a] {
					t.Fatalf("%s offered twice: %v", a, got)
				}
				seen[a] = true
			}
			// Every algorithm the library's default knows is still offered,
			// so no server that connects today stops connecting.
			for _, a := range []string{ssh.KeyAlgoRSA, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA521, ssh.CertAlgoRSAv01} {
				if !seen[a] {
					t.Errorf("%s no longer offered: %v", a, got)
				}
			}
			if tc.pinned == "" && indexOf(got, ssh.KeyAlgoECDSA256) > indexOf(got, ssh.KeyAlgoRSASHA256) {
				t.Errorf("RSA before ECDSA: %v", got)
			}
		})
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestHandshakeClosedMessage checks that a server that hangs up during the
// handshake is described by what it sent, not guessed to be something else.
func TestHandshakeClosedMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sends string
		want  string
	}{
		{"SSH server drops the connection", "SSH-2.0-dropbear_2022.83\r\n", "the SSH server 127.0.0.1:"},
		{"SSH server name is cleaned", "SSH-2.0-evil\x1b[31m\r\n", "(SSH-2.0-evil?[31m)"},
		{"not an SSH server", "HTTP/1.1 400 Bad Request\r\n\r\n", "without identifying itself as an SSH server"},
		{"nothing at all", "", "without identifying itself as an SSH server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(tc.sends))
				// Read the client's identification and key exchange
				// offer, then hang up, as Dropbear does when asked for
				// a host key it does not have.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				io.ReadAtLeast(c, make([]byte, 64), 1)
				c.Close()
			}()
			port := ln.Addr().(*net.TCPAddr).Port
			e := New(slog.New(slog.NewTextHandler(io.Discard, nil)), 5*time.Second)
			_, resp := e.Dial(context.Background(), &wire.Request{
				Target:      wire.Target{Host: "127.0.0.1", Port: port},
				Credentials: wire.Credentials{Username: "u", Password: "p"},
			})
			if resp == nil || resp.OK || !strings.Contains(resp.Message, tc.want) || strings.Contains(resp.Message, "is it an SSH server") {
				t.Fatalf("response %+v, want a message with %q", resp, tc.want)
			}
		})
	}
}

// TestPinnedKeyTypeFirst runs a server with Ed25519, ECDSA and RSA host
// keys: with nothing pinned the gateway takes Ed25519, and with a key
// pinned it asks for that key's type, so a key pinned by an older gateway
// (which preferred ECDSA, then RSA) keeps matching.
func TestPinnedKeyTypeFirst(t *testing.T) {
	t.Parallel()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	cfg := &ssh.ServerConfig{PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) { return nil, nil }}
	var signers []ssh.Signer
	for _, k := range []any{edKey, ecKey, rsaKey} {
		s, err := ssh.NewSignerFromKey(k)
		if err != nil {
			t.Fatal(err)
		}
		cfg.AddHostKey(s)
		signers = append(signers, s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				go func() {
					for ch := range chans {
						ch.Reject(ssh.Prohibited, "test server")
					}
				}()
				sc.Wait()
			})
		}
	})
	port := ln.Addr().(*net.TCPAddr).Port
	e := New(slog.New(slog.NewTextHandler(io.Discard, nil)), 5*time.Second)
	ed, ec, rs := authorizedKey(signers[0].PublicKey()), authorizedKey(signers[1].PublicKey()), authorizedKey(signers[2].PublicKey())
	for _, tc := range []struct {
		name, pinned, want string
	}{
		{"nothing pinned", "", ed},
		{"Ed25519 pinned", ed, ed},
		{"ECDSA pinned", ec, ec},
		{"RSA pinned", rs, rs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp := e.Dial(context.Background(), &wire.Request{
				Target:      wire.Target{Host: "127.0.0.1", Port: port},
				Credentials: wire.Credentials{Username: "u", Password: "p"},
				HostKey:     tc.pinned,
			})
			if resp != nil {
				t.Fatalf("refused: %+v", resp)
			}
			defer c.Close()
			if c.HostKey != tc.want {
				t.Fatalf("server showed %.30s…, want %.30s…", c.HostKey, tc.want)
			}
		})
	}
}
