// Package targets starts real servers on loopback for tests, benchmarks and
// the demo: OpenSSH's sshd and Dropbear, VNC and RDP servers. Servers are
// stopped by process id. A missing server binary is an error, never a skip.
package targets

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshdPath is where Debian's openssh-server installs sshd; sshd insists on
// being started by its absolute path.
const sshdPath = "/usr/sbin/sshd"

// Where Debian's dropbear-bin installs Dropbear and its key converter.
const (
	dropbearPath        = "/usr/sbin/dropbear"
	dropbearConvertPath = "/usr/bin/dropbearconvert"
)

// dropbearSFTPServer is where Dropbear (built into Debian with this path)
// looks for OpenSSH's sftp-server, from openssh-sftp-server.
const dropbearSFTPServer = "/usr/lib/sftp-server"

// TestUser is the system account the SSH target signs in as.
const TestUser = "keyway-test"

// SSHDOptions configure StartSSHD.
type SSHDOptions struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// Dropbear runs Dropbear instead of OpenSSH, with only an Ed25519 host
	// key: Dropbear 2022.83 then still advertises RSA host-key algorithms
	// and fails a client that picks one.
	Dropbear bool
}

// SSHD is a running SSH server on 127.0.0.1: OpenSSH's sshd, or Dropbear.
type SSHD struct {
	Host string
	Port int
	User string
	// Password is TestUser's password.
	Password string
	// PrivateKeyPEM is an OpenSSH private key authorised for TestUser.
	PrivateKeyPEM []byte
	// HostKey is the server's host key in authorized_keys form.
	HostKey string

	dir      string
	dropbear bool
	config   string
	cmd      *exec.Cmd
	done     <-chan struct{}
	stderr   *bytes.Buffer
}

// Addr returns host:port.
func (s *SSHD) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// StartSSHD starts sshd with its files in dir (created if needed). Keys
// already in dir are reused, so a restarted demo keeps its host key.
func StartSSHD(ctx context.Context, dir string, opts SSHDOptions) (*SSHD, error) {
	needed := map[string]string{sshdPath: "openssh-server"}
	if opts.Dropbear {
		needed = map[string]string{dropbearPath: "dropbear-bin", dropbearConvertPath: "dropbear-bin", dropbearSFTPServer: "openssh-sftp-server"}
	}
	for path, pkg := range needed {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install %s", path, pkg)
		}
	}
	dir, err := absDir(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("create /run/sshd (sshd's privilege separation directory): %w", err)
	}
	password, err := ensureTestUser(dir)
	if err != nil {
		return nil, err
	}
	hostKey, err := loadOrCreateKey(filepath.Join(dir, "host_key"))
	if err != nil {
		return nil, err
	}
	clientKey, err := loadOrCreateKey(filepath.Join(dir, "client_key"))
	if err != nil {
		return nil, err
	}
	hostSigner, _ := ssh.ParsePrivateKey(hostKey)
	clientSigner, _ := ssh.ParsePrivateKey(clientKey)
	if err := authorizeKey(clientSigner.PublicKey()); err != nil {
		return nil, err
	}
	s := &SSHD{
		Host: "127.0.0.1", User: TestUser, Password: password, PrivateKeyPEM: clientKey,
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))),
		dir:     dir, dropbear: opts.Dropbear,
	}
	// A port picked free may be taken before sshd binds it; try again then.
	for attempt := 0; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		s.Port = port
		err = s.start(ctx)
		if err == nil || opts.Port != 0 || attempt == 4 {
			return s, err
		}
	}
}

func (s *SSHD) start(ctx context.Context) error {
	s.stderr = &bytes.Buffer{}
	if s.dropbear {
		cmd, err := s.dropbearCommand(ctx)
		if err != nil {
			return err
		}
		s.cmd = cmd
	} else {
		if err := s.writeConfig(); err != nil {
			return err
		}
		s.cmd = exec.Command(sshdPath, "-D", "-e", "-f", s.config)
	}
	s.cmd.Stderr = s.stderr
	// Session processes forked by the server keep its stderr open; do not
	// wait for them once the server itself has exited.
	s.cmd.WaitDelay = time.Second
	var err error
	if s.done, err = startChild(s.cmd); err != nil {
		return fmt.Errorf("start %s: %w", s.cmd.Path, err)
	}
	if err := waitListening(ctx, s.Addr(), s.done, 10*time.Second); err != nil {
		s.Stop()
		return fmt.Errorf("%s on %s: %w: %s", filepath.Base(s.cmd.Path), s.Addr(), err, strings.TrimSpace(s.stderr.String()))
	}
	return nil
}

// dropbearCommand converts the (OpenSSH format) host key to Dropbear's
// format and returns the command that serves with it alone.
func (s *SSHD) dropbearCommand(ctx context.Context) (*exec.Cmd, error) {
	key := filepath.Join(s.dir, "host_key.dropbear")
	os.Remove(key) // a regenerated key must replace the converted one
	if out, err := exec.CommandContext(ctx, dropbearConvertPath, "openssh", "dropbear", filepath.Join(s.dir, "host_key"), key).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("convert the host key for Dropbear: %v: %s", err, out)
	}
	return exec.Command(dropbearPath,
		"-F", "-E", // foreground, log to stderr
		"-m",      // no motd
		"-w",      // no root logins
		"-r", key, // this key only: no RSA key, as the issue describes
		"-p", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		"-P", filepath.Join(s.dir, "dropbear.pid"),
	), nil
}

func (s *SSHD) writeConfig() error {
	s.config = filepath.Join(s.dir, "sshd_config")
	cfg := strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"Port " + strconv.Itoa(s.Port),
		"HostKey " + filepath.Join(s.dir, "host_key"),
		"PidFile " + filepath.Join(s.dir, "sshd.pid"),
		"UsePAM no",
		"PasswordAuthentication yes",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin no",
		"AllowUsers " + TestUser,
		"Subsystem sftp internal-sftp",
		"AcceptEnv LANG LC_*",
		"LogLevel ERROR",
		"MaxStartups 100:30:200",
		"",
	}, "\n")
	return os.WriteFile(s.config, []byte(cfg), 0o600)
}

// Stop terminates sshd and waits for it. Sessions it started end with it.
func (s *SSHD) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// RegenerateHostKey gives the server a new host key and restarts it on the
// same port, as a reinstalled server would present.
func (s *SSHD) RegenerateHostKey(ctx context.Context) error {
	s.Stop()
	path := filepath.Join(s.dir, "host_key")
	os.Remove(path)
	key, err := loadOrCreateKey(path)
	if err != nil {
		return err
	}
	signer, _ := ssh.ParsePrivateKey(key)
	s.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return s.start(ctx)
}

// NewSSHD starts sshd for a test and stops it when the test ends.
func NewSSHD(t testing.TB) *SSHD {
	t.Helper()
	return newSSHD(t, SSHDOptions{})
}

// NewDropbear starts Dropbear, with only an Ed25519 host key, for a test
// and stops it when the test ends. It serves the same user, password and
// client key as NewSSHD, and SFTP through OpenSSH's sftp-server.
func NewDropbear(t testing.TB) *SSHD {
	t.Helper()
	return newSSHD(t, SSHDOptions{Dropbear: true})
}

// SSHServer names a kind of SSH server and starts one for a test.
type SSHServer struct {
	Name  string
	Start func(testing.TB) *SSHD
}

// SSHServers returns the SSH servers every SSH feature is tested against.
func SSHServers() []SSHServer {
	return []SSHServer{{"openssh", NewSSHD}, {"dropbear", NewDropbear}}
}

func newSSHD(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	s, err := StartSSHD(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start SSH server: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

func loadOrCreateKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(block)
	return b, os.WriteFile(path, b, 0o600)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts connections, the process exits, or
// the timeout passes.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("server exited before listening")
		case <-ctx.Done():
			return fmt.Errorf("not listening after %s", timeout)
		case <-tick.C:
		}
	}
}
