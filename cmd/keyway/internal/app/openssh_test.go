//go:build linux

package app

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// TestOpenSSHThroughTunnel runs the keyway program's ssh on a resource
// that is only tunnelled: OpenSSH's ssh, with keyway tunnel --stdio as its
// ProxyCommand, logs in to a real sshd through the (fake) portal.
func TestOpenSSHThroughTunnel(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	tmp := t.TempDir()
	keyway := filepath.Join(tmp, "keyway")
	if out, err := exec.Command("go", "build", "-o", keyway, "github.com/keyway-dev/keyway/cmd/keyway").CombinedOutput(); err != nil {
		t.Fatalf("build keyway: %v\n%s", err, out)
	}
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Tunnel: true}, dial: sshd.Addr()})
	dir := signIn(t, f)
	key := filepath.Join(tmp, "id")
	known := filepath.Join(tmp, "known_hosts")
	if err := os.WriteFile(key, sshd.PrivateKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, []byte("box "+sshd.HostKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keyway, "ssh", "box", "--", "-F", "/dev/null", "-i", key, "-o", "UserKnownHostsFile="+known,
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-l", sshd.User, "echo through-keyway; exit 7")
	cmd.Env = append(os.Environ(), "KEYWAY_CONFIG_DIR="+dir)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("keyway ssh: %v, want exit status 7\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if stdout.String() != "through-keyway\n" {
		t.Errorf("stdout %q", stdout.String())
	}
	if n := f.connects.Load(); n != 1 {
		t.Errorf("%d streams, want 1", n)
	}
}
