package gateway

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// TestVNCPinnedCertificateDowngrade: a resource has a pinned VeNCrypt
// certificate and the server (or someone in the path) now offers only
// None and VNC Authentication. The session is refused with what was
// offered and where an administrator clears the pin, and the server gets
// neither a choice nor a DES response.
func TestVNCPinnedCertificateDowngrade(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sent := make(chan []byte, 1)
	go func() {
		defer close(sent)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		// Version, types None and VNC Authentication, then a challenge
		// and success for a client that would answer it.
		conn.Write([]byte("RFB 003.008\n\x02\x01\x02"))
		conn.Write(bytes.Repeat([]byte{7}, 16))
		conn.Write([]byte{0, 0, 0, 0})
		b, _ := io.ReadAll(conn)
		sent <- b
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	g := startGateway(t)
	pin := wire.CertPrefix + "SHA256:c29tZXRoaW5nIHBpbm5lZA"
	_, resp := g.open(t, &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolVNC, SessionID: "vnc-downgrade", User: "tester",
		Target: wire.Target{Host: "127.0.0.1", Port: port}, Credentials: wire.Credentials{Password: "vncpw123"}, HostKey: pin})
	if resp.OK || resp.Code != wire.CodeHostKeyMismatch {
		t.Fatalf("a downgraded server was not refused as a pin mismatch: %+v", resp)
	}
	for _, want := range []string{"offers only None, VNC Authentication", "SHA256:c29tZXRoaW5nIHBpbm5lZA", "no password was sent", `"Forget pinned TLS certificate"`, "/admin/resources"} {
		if !strings.Contains(resp.Message, want) {
			t.Errorf("message %q does not say %q", resp.Message, want)
		}
	}
	if resp.HostKey != "" {
		t.Errorf("the refusal offers %q as a new certificate to accept", resp.HostKey)
	}
	if b := <-sent; string(b) != "RFB 003.008\n" {
		t.Fatalf("the server got %q after the version: a security choice or a DES response", b[min(len(b), 12):])
	}
}
