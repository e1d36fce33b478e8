package gateway

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
)

func sftpRequest(sshd *targets.SSHD) *wire.Request {
	req := sshRequest(sshd)
	req.Protocol, req.Terminal = wire.ProtocolSFTP, nil
	return req
}

// TestSFTPSession runs a pkg/sftp client over the gateway's stream to a
// real sshd's internal-sftp, as the portal does.
func TestSFTPSession(t *testing.T) {
	t.Parallel()
	for _, server := range targets.SSHServers() {
		t.Run(server.Name, func(t *testing.T) {
			t.Parallel()
			testSFTPSession(t, startGateway(t), server.Start(t))
		})
	}
}

func testSFTPSession(t *testing.T, g *testGateway, sshd *targets.SSHD) {

	t.Run("write, read back, session ends with the client", func(t *testing.T) {
		s, resp := g.open(t, sftpRequest(sshd))
		if !resp.OK || resp.HostKey != sshd.HostKey {
			t.Fatalf("refused or wrong host key: %+v", resp)
		}
		s.conn.SetDeadline(time.Time{})
		c, err := sftp.NewClientPipe(s.conn, s.conn)
		if err != nil {
			t.Fatalf("sftp client: %v", err)
		}
		home, err := c.Getwd()
		if err != nil || !strings.HasPrefix(home, "/") {
			t.Fatalf("home = %q, %v", home, err)
		}
		// The servers share the test user's home and run in parallel:
		// each writes its own file.
		name := fmt.Sprintf("%s/gateway test ü %d.txt", home, sshd.Port)
		f, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Repeat([]byte("keyway "), 10000)
		if _, err := f.Write(want); err != nil {
			t.Fatal(err)
		}
		f.Close()
		f, err = c.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		f.WriteTo(&got)
		f.Close()
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("read back %d bytes, want %d", got.Len(), len(want))
		}
		c.Remove(name)
		c.Close()
		waitIdle(t, g)
	})

	t.Run("wrong password is refused in words", func(t *testing.T) {
		req := sftpRequest(sshd)
		req.Credentials.Password = "wrong"
		_, resp := g.open(t, req)
		if resp.OK || resp.Code != wire.CodeAuthFailed {
			t.Fatalf("response = %+v, want auth_failed", resp)
		}
	})
}

// waitIdle waits until the gateway has no session running.
func waitIdle(t *testing.T, g *testGateway) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for g.ActiveSessions() != 0 {
		select {
		case <-deadline:
			t.Fatalf("%d sessions still running", g.ActiveSessions())
		case <-tick.C:
		}
	}
}
