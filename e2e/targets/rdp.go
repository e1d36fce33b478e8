package targets

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Display is an X display the RDP servers show, with helpers to run X
// clients on it and read its clipboard.
type Display struct {
	Number int
	// env is added to X clients' environment (XAUTHORITY for xrdp).
	env   []string
	procs []child
}

func (d *Display) environ() []string {
	return append(append(os.Environ(), "DISPLAY=:"+strconv.Itoa(d.Number)), d.env...)
}

// Env is what X clients on the display need in their environment beyond
// DISPLAY (XAUTHORITY for xrdp's sessions), as NAME=value.
func (d *Display) Env() []string { return append([]string(nil), d.env...) }

// Start runs an X client (xterm, xsetroot…) on the display; it is stopped
// with the server.
func (d *Display) Start(name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = d.environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, child{cmd, done})
	return cmd, nil
}

// Run runs an X client on the display to completion and returns its
// output.
func (d *Display) Run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = d.environ()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Viewable counts the mapped, viewable windows of an X class ("XTerm").
func (d *Display) Viewable(class string) int {
	tree, _ := d.Run("xwininfo", "-root", "-tree")
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^\s*(0x[0-9a-f]+) .*\("[^"]*" "`+regexp.QuoteMeta(class)+`"\)`).FindAllStringSubmatch(string(tree), -1) {
		if info, _ := d.Run("xwininfo", "-id", m[1]); bytes.Contains(info, []byte("IsViewable")) {
			n++
		}
	}
	return n
}

// Clipboard reads the CLIPBOARD selection's text (empty if none).
func (d *Display) Clipboard() (string, error) {
	if _, err := exec.LookPath("xclip"); err != nil {
		return "", errors.New("xclip not found: apt-get install xclip")
	}
	cmd := exec.Command("xclip", "-o", "-selection", "clipboard")
	cmd.Env = d.environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out) // no owner yet
	}
	return string(out), nil
}

// SetClipboard makes an X client own the CLIPBOARD selection with text; it
// serves it until the display stops or another client takes it.
func (d *Display) SetClipboard(text string) error {
	if _, err := exec.LookPath("xclip"); err != nil {
		return errors.New("xclip not found: apt-get install xclip")
	}
	// -loops 0 and no fork: the process stays ours to stop.
	cmd := exec.Command("xclip", "-i", "-selection", "clipboard", "-quiet")
	cmd.Env = d.environ()
	cmd.Stdin = strings.NewReader(text)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done, err := startChild(cmd)
	if err != nil {
		return err
	}
	d.procs = append(d.procs, child{cmd, done})
	return nil
}

// stopClients ends the X clients started on the display.
func (d *Display) stopClients() {
	stopChildren(d.procs)
	d.procs = nil
}

// startXvfb starts Xvfb on a free display.
func startXvfb(ctx context.Context, width, height int) (*exec.Cmd, <-chan struct{}, int, error) {
	if _, err := exec.LookPath("Xvfb"); err != nil {
		return nil, nil, 0, errors.New("Xvfb not found: apt-get install xvfb")
	}
	for attempt := range 20 {
		display := 40 + int(time.Now().UnixNano()%400) + attempt
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", display)); err == nil {
			continue
		}
		cmd := exec.Command("Xvfb", ":"+strconv.Itoa(display), "-screen", "0", fmt.Sprintf("%dx%dx24", width, height), "-nolisten", "tcp", "-noreset")
		cmd.Stderr = &bytes.Buffer{}
		done, err := startChild(cmd)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("start Xvfb: %w", err)
		}
		if err := waitX(ctx, display, done); err != nil {
			stopProcess(cmd, done)
			continue // the display was taken
		}
		return cmd, done, display, nil
	}
	return nil, nil, 0, errors.New("Xvfb did not start on any free display")
}

// listening reports whether something listens on TCP port on loopback
// (127.0.0.1, ::1 or any address), read from /proc/net/tcp{,6} without
// connecting: RDP servers log every probe connection as an error, and
// xrdp's listen backlog is 2.
func listening(port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ...; st 0A is LISTEN.
			if len(fields) > 3 && fields[3] == "0A" && strings.HasSuffix(fields[1], want) {
				file.Close()
				return true
			}
		}
		file.Close()
	}
	return false
}

// waitPort waits until port is listening, the process exits, or the
// timeout passes.
func waitPort(ctx context.Context, port int, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if listening(port) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("server exited before listening")
		case <-ctx.Done():
			return fmt.Errorf("port %d not listening after %s", port, timeout)
		case <-tick.C:
		}
	}
}

// ShadowOptions configure StartShadowRDP.
type ShadowOptions struct {
	// Security is "nla" (the default: NLA against a SAM file holding
	// User and Password), "tls" (TLS, no authentication) or "rdp"
	// (standard RDP security only, no authentication: a server that
	// cannot prove who it is).
	Security string
	// User and Password default to rdptest and R0p-secret.
	User, Password string
	Width, Height  int
}

// ShadowRDP is freerdp-shadow-cli sharing its own Xvfb screen on
// loopback.
type ShadowRDP struct {
	Display
	Host           string
	Port           int
	User, Password string

	dir      string
	opts     ShadowOptions
	cmd      *exec.Cmd
	done     <-chan struct{}
	stderr   *bytes.Buffer
	xvfb     *exec.Cmd
	xvfbDone <-chan struct{}
}

// Addr returns host:port.
func (s *ShadowRDP) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// StartShadowRDP starts Xvfb and freerdp-shadow-cli on a free port.
func StartShadowRDP(ctx context.Context, dir string, opts ShadowOptions) (*ShadowRDP, error) {
	if _, err := exec.LookPath("freerdp-shadow-cli"); err != nil {
		return nil, errors.New("freerdp-shadow-cli not found: apt-get install freerdp2-shadow-x11 winpr-utils")
	}
	if opts.Security == "" {
		opts.Security = "nla"
	}
	if opts.Security != "nla" && opts.Security != "tls" && opts.Security != "rdp" {
		return nil, fmt.Errorf("shadow security %q: choose nla, tls or rdp", opts.Security)
	}
	if opts.User == "" {
		opts.User, opts.Password = "rdptest", "R0p-secret"
	}
	if opts.Width == 0 {
		opts.Width, opts.Height = 1024, 768
	}
	dir, err := absDir(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &ShadowRDP{Host: "127.0.0.1", User: opts.User, Password: opts.Password, dir: dir, opts: opts}
	if opts.Security == "nla" {
		if _, err := exec.LookPath("winpr-hash"); err != nil {
			return nil, errors.New("winpr-hash not found: apt-get install winpr-utils")
		}
		out, err := exec.Command("winpr-hash", "-u", opts.User, "-p", opts.Password, "-f", "sam").Output()
		if err != nil {
			return nil, fmt.Errorf("winpr-hash: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sam"), out, 0o600); err != nil {
			return nil, err
		}
	}
	s.xvfb, s.xvfbDone, s.Number, err = startXvfb(ctx, opts.Width, opts.Height)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if s.Port, err = freePort(); err != nil {
			s.Stop()
			return nil, err
		}
		if err = s.start(ctx); err == nil || attempt == 4 {
			break
		}
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *ShadowRDP) start(ctx context.Context) error {
	args := []string{"/bind-address:127.0.0.1", "/port:" + strconv.Itoa(s.Port)}
	switch s.opts.Security {
	case "nla":
		args = append(args, "/sec:nla", "/sam-file:"+filepath.Join(s.dir, "sam"))
	case "tls":
		args = append(args, "/sec:tls", "-auth")
	case "rdp":
		args = append(args, "/sec:rdp", "-auth")
	}
	s.stderr = &bytes.Buffer{}
	s.cmd = exec.Command("freerdp-shadow-cli", args...)
	// The server keeps its certificate under $XDG_CONFIG_HOME/freerdp/shadow.
	s.cmd.Env = append(os.Environ(), "DISPLAY=:"+strconv.Itoa(s.Number),
		"XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"), "HOME="+s.dir, "WLOG_LEVEL=ERROR")
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	s.cmd.WaitDelay = time.Second
	var err error
	if s.done, err = startChild(s.cmd); err != nil {
		return fmt.Errorf("start freerdp-shadow-cli: %w", err)
	}
	if err := waitPort(ctx, s.Port, s.done, 15*time.Second); err != nil {
		stopProcess(s.cmd, s.done)
		s.cmd = nil
		return fmt.Errorf("freerdp-shadow-cli: %w: %s", err, strings.TrimSpace(s.stderr.String()))
	}
	return nil
}

// RegenerateCertificate gives the server a new certificate and restarts it
// on the same port, as a reinstalled server would present.
func (s *ShadowRDP) RegenerateCertificate(ctx context.Context) error {
	if s.cmd != nil {
		stopProcess(s.cmd, s.done)
		s.cmd = nil
	}
	if err := os.RemoveAll(filepath.Join(s.dir, "config", "freerdp", "shadow")); err != nil {
		return err
	}
	return s.start(ctx)
}

// Stop ends the X clients, the server and Xvfb.
func (s *ShadowRDP) Stop() error {
	s.stopClients()
	if s.cmd != nil {
		stopProcess(s.cmd, s.done)
		s.cmd = nil
	}
	if s.xvfb != nil {
		stopProcess(s.xvfb, s.xvfbDone)
		s.xvfb = nil
	}
	return nil
}

// NewShadowRDP starts freerdp-shadow-cli for a test and stops it when the
// test ends.
func NewShadowRDP(t testing.TB, opts ShadowOptions) *ShadowRDP {
	t.Helper()
	s, err := StartShadowRDP(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start freerdp-shadow-cli: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// xrdpLock serialises xrdp servers between tests and test processes:
// xrdp finds sesman on the port in /etc/xrdp/sesman.ini, so only one
// sesman can serve at a time.
const xrdpLock = "/var/lib/keyway-test/xrdp.lock"

// XRDPOptions configure StartXRDP.
type XRDPOptions struct {
	// WindowManager is the session's program; xterm by default.
	WindowManager string
}

// XRDP is xrdp and xrdp-sesman on loopback, signing TestUser in to an
// Xorg session.
type XRDP struct {
	Host           string
	Port           int
	User, Password string
	// CertDER is the server's TLS certificate.
	CertDER []byte

	dir   string
	pub   string // readable by TestUser
	lock  *os.File
	xrdp  *exec.Cmd
	xDone <-chan struct{}
	ses   *exec.Cmd
	sDone <-chan struct{}
	disp  *Display
}

// Addr returns host:port.
func (x *XRDP) Addr() string { return net.JoinHostPort(x.Host, strconv.Itoa(x.Port)) }

// StartXRDP starts xrdp-sesman and xrdp with configuration copies in dir.
// It holds a lock until Stop, as only one sesman can run.
func StartXRDP(ctx context.Context, dir string, opts XRDPOptions) (*XRDP, error) {
	for _, bin := range []string{"xrdp", "xrdp-sesman"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install xrdp xorgxrdp", bin)
		}
	}
	if _, err := os.Stat("/usr/lib/xorg/modules/drivers/xrdpdev_drv.so"); err != nil {
		return nil, errors.New("xorgxrdp not found: apt-get install --no-install-recommends xorgxrdp")
	}
	if opts.WindowManager == "" {
		opts.WindowManager = "xterm"
	}
	password, err := ensureTestUser("")
	if err != nil {
		return nil, err
	}
	dir, err = absDir(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// The session's Xorg, running as TestUser, makes its socket here;
	// Debian's package creates it at boot with these modes.
	if err := os.MkdirAll("/run/xrdp/sockdir", 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod("/run/xrdp/sockdir", 0o777|os.ModeSticky|os.ModeSetgid); err != nil {
		return nil, err
	}
	x := &XRDP{Host: "127.0.0.1", User: TestUser, Password: password, dir: dir}
	if x.lock, err = os.OpenFile(xrdpLock, os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		return nil, err
	}
	if err := flockContext(ctx, x.lock); err != nil {
		x.lock.Close()
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if x.CertDER, err = selfSignedRSA(certFile, keyFile); err != nil {
		x.Stop()
		return nil, err
	}
	// The session runs as TestUser, who cannot enter a test's temp dir:
	// its program goes in a directory of its own.
	if x.pub, err = os.MkdirTemp("", "keyway-xrdp-"); err != nil {
		x.Stop()
		return nil, err
	}
	os.Chmod(x.pub, 0o755)
	wm := filepath.Join(x.pub, "wm.sh")
	if err := os.WriteFile(wm, []byte("#!/bin/sh\nexec "+opts.WindowManager+"\n"), 0o755); err != nil {
		x.Stop()
		return nil, err
	}
	if x.Port, err = freePort(); err != nil {
		x.Stop()
		return nil, err
	}
	if err := editINI("/etc/xrdp/xrdp.ini", filepath.Join(dir, "xrdp.ini"), map[string]string{
		"port": "tcp://127.0.0.1:" + strconv.Itoa(x.Port), "certificate": certFile, "key_file": keyFile,
		"LogFile": filepath.Join(dir, "xrdp.log"),
	}, "Globals", "Logging"); err != nil {
		x.Stop()
		return nil, err
	}
	if err := editINI("/etc/xrdp/sesman.ini", filepath.Join(dir, "sesman.ini"), map[string]string{
		"LogFile": filepath.Join(dir, "sesman.log"), "DefaultWindowManager": wm, "EnableUserWindowManager": "false",
	}); err != nil {
		x.Stop()
		return nil, err
	}
	x.ses, x.sDone, err = startGroup("xrdp-sesman", "--nodaemon", "--config", filepath.Join(dir, "sesman.ini"))
	if err != nil {
		x.Stop()
		return nil, err
	}
	if err := waitPort(ctx, 3350, x.sDone, 10*time.Second); err != nil {
		x.Stop()
		return nil, fmt.Errorf("xrdp-sesman: %w", err)
	}
	x.xrdp, x.xDone, err = startGroup("xrdp", "--nodaemon", "--config", filepath.Join(dir, "xrdp.ini"))
	if err != nil {
		x.Stop()
		return nil, err
	}
	if err := waitPort(ctx, x.Port, x.xDone, 10*time.Second); err != nil {
		x.Stop()
		return nil, fmt.Errorf("xrdp: %w", err)
	}
	return x, nil
}

// startGroup starts a server in its own process group, so that stopping
// it stops what it started (Xorg, chansrv, the session's clients).
func startGroup(name string, args ...string) (*exec.Cmd, <-chan struct{}, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	done, err := startChild(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	return cmd, done, nil
}

// stopGroup ends a process group with SIGTERM, or SIGKILL if its leader
// lingers.
func stopGroup(cmd *exec.Cmd, done <-chan struct{}) {
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
}

// Session returns the X display of TestUser's xrdp session, once it runs
// (after a client signed in), to start clients on or read the clipboard.
func (x *XRDP) Session(ctx context.Context) (*Display, error) {
	if x.disp != nil {
		return x.disp, nil
	}
	u, err := user.Lookup(TestUser)
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile(`display[^0-9]*:?([0-9]+)`)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// sesman logs the session's display when it starts one.
		if b, err := os.ReadFile(filepath.Join(x.dir, "sesman.log")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if !strings.Contains(line, "session") {
					continue
				}
				if m := re.FindStringSubmatch(line); m != nil {
					n, _ := strconv.Atoi(m[1])
					if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
						x.disp = &Display{Number: n, env: []string{"XAUTHORITY=" + filepath.Join(u.HomeDir, ".Xauthority")}}
						return x.disp, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("no xrdp session display: " + x.Logs())
		case <-tick.C:
		}
	}
}

// Logs returns the xrdp and sesman logs, for failure messages.
func (x *XRDP) Logs() string {
	a, _ := os.ReadFile(filepath.Join(x.dir, "xrdp.log"))
	b, _ := os.ReadFile(filepath.Join(x.dir, "sesman.log"))
	return string(a) + string(b)
}

// Stop ends xrdp, sesman and the session, and releases the lock.
func (x *XRDP) Stop() error {
	if x.disp != nil {
		x.disp.stopClients()
	}
	if x.xrdp != nil {
		stopGroup(x.xrdp, x.xDone)
		x.xrdp = nil
	}
	if x.ses != nil {
		stopGroup(x.ses, x.sDone)
		x.ses = nil
	}
	if x.pub != "" {
		os.RemoveAll(x.pub)
		x.pub = ""
	}
	if x.lock != nil {
		syscall.Flock(int(x.lock.Fd()), syscall.LOCK_UN)
		x.lock.Close()
		x.lock = nil
	}
	return nil
}

// NewXRDP starts xrdp for a test and stops it when the test ends.
func NewXRDP(t testing.TB, opts XRDPOptions) *XRDP {
	t.Helper()
	x, err := StartXRDP(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start xrdp: %v", err)
	}
	t.Cleanup(func() { x.Stop() })
	return x
}

// flockContext takes an exclusive lock on f, giving up when ctx ends.
func flockContext(ctx context.Context, f *os.File) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", f.Name(), ctx.Err())
		case <-tick.C:
		}
	}
}

// editINI copies an INI file, setting keys in the named sections (all
// sections when none are named).
func editINI(src, dst string, set map[string]string, sections ...string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s (apt-get install xrdp): %w", src, err)
	}
	var out strings.Builder
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			section = t[1 : len(t)-1]
		}
		if k, _, ok := strings.Cut(line, "="); ok && (len(sections) == 0 || contains(sections, section)) {
			if v, ok := set[strings.TrimSpace(k)]; ok {
				line = k + "=" + v
			}
		}
		out.WriteString(line + "\n")
	}
	return os.WriteFile(dst, []byte(strings.TrimSuffix(out.String(), "\n")), 0o644)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// selfSignedRSA writes a self-signed RSA certificate for localhost and its
// key, as xrdp wants, and returns the certificate's DER bytes.
func selfSignedRSA(certFile, keyFile string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return der, os.WriteFile(keyFile, keyPEM, 0o600)
}
