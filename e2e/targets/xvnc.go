package targets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// XvncOptions configure StartXvnc.
type XvncOptions struct {
	// Password enables VNC Authentication (at most 8 characters count);
	// empty means security type None.
	Password string
	Width    int
	Height   int
	// Security, when set, replaces the security types, e.g. "X509Vnc" or
	// "X509Plain,TLSVnc". X509 types get a fresh self-signed certificate
	// (Xvnc.CertDER); Plain types accept TestUser with its system
	// password (TestUserPassword).
	Security string
	// NCache, for x11vnc only, turns on its client-side pixel cache
	// (-ncache NCache): below the screen, the framebuffer holds NCache
	// more screens and one for the root window's background (x11vnc makes
	// NCache even).
	NCache int
}

// Xvnc is a running TigerVNC server with its own X display.
type Xvnc struct {
	Host     string
	Port     int
	Display  int
	Password string
	// CertDER is the server's TLS certificate for X509 security types.
	CertDER []byte

	dir    string
	cmd    *exec.Cmd
	done   <-chan struct{}
	stderr *lockedBuffer
	procs  []child
	// xvfb is the X server x11vnc shares; nil for Xvnc, its own X server.
	xvfb     *exec.Cmd
	xvfbDone <-chan struct{}
}

// Addr returns host:port of the VNC listener.
func (x *Xvnc) Addr() string { return net.JoinHostPort(x.Host, strconv.Itoa(x.Port)) }

// StartXvnc starts Xvnc on a free display and port on loopback.
func StartXvnc(ctx context.Context, dir string, opts XvncOptions) (*Xvnc, error) {
	bin, err := exec.LookPath("Xvnc")
	if err != nil {
		return nil, errors.New("Xvnc not found: apt-get install tigervnc-standalone-server tigervnc-tools")
	}
	if opts.Width == 0 {
		opts.Width, opts.Height = 1024, 768
	}
	dir, err = absDir(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	x := &Xvnc{Host: "127.0.0.1", Password: opts.Password, dir: dir}
	args := []string{"-localhost", "-nolisten", "tcp", "-geometry", fmt.Sprintf("%dx%d", opts.Width, opts.Height), "-depth", "24", "-AlwaysShared"}
	if opts.Password != "" {
		pwFile := filepath.Join(dir, "passwd")
		cmd := exec.Command("vncpasswd", "-f")
		cmd.Stdin = strings.NewReader(opts.Password + "\n")
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("vncpasswd (apt-get install tigervnc-tools): %w", err)
		}
		if err := os.WriteFile(pwFile, out, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-PasswordFile", pwFile)
	}
	switch {
	case opts.Security != "":
		args = append(args, "-SecurityTypes", opts.Security)
	case opts.Password != "":
		args = append(args, "-SecurityTypes", "VncAuth")
	default:
		args = append(args, "-SecurityTypes", "None")
	}
	if strings.Contains(opts.Security, "X509") {
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		der, err := selfSignedCert(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		x.CertDER = der
		args = append(args, "-X509Cert", certFile, "-X509Key", keyFile)
	}
	if strings.Contains(opts.Security, "Plain") {
		if _, err := ensureTestUser(""); err != nil {
			return nil, err
		}
		args = append(args, "-PlainUsers", TestUser)
	}
	// Displays and ports may be taken by parallel tests: try others.
	for attempt := range 20 {
		display := 40 + int(time.Now().UnixNano()%400) + attempt
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", display)); err == nil {
			continue
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		x.Display, x.Port = display, port
		x.stderr = &lockedBuffer{}
		x.cmd = exec.Command(bin, append([]string{":" + strconv.Itoa(display), "-rfbport", strconv.Itoa(port)}, args...)...)
		x.cmd.Stderr = x.stderr
		x.cmd.WaitDelay = time.Second
		if x.done, err = startChild(x.cmd); err != nil {
			return nil, fmt.Errorf("start Xvnc: %w", err)
		}
		// Ready once both the VNC port and the X display take clients:
		// tests start X clients at once. The port is ours only once Xvnc
		// says it bound it: another test may have taken it since freePort,
		// and then Xvnc exits while a probe of the port still succeeds.
		if err := waitLogged(ctx, x.stderr, fmt.Sprintf("Listening for VNC connections on local interface(s), port %d\n", port), x.done, 10*time.Second); err == nil {
			if err := waitX(ctx, display, x.done); err == nil {
				return x, nil
			}
		}
		x.Stop()
	}
	return nil, fmt.Errorf("Xvnc did not start: %s", strings.TrimSpace(x.stderr.String()))
}

// Start runs an X client (xterm, xsetroot…) on the server's display; it is
// stopped with the server.
// The command is the target's to wait for: callers must not Wait on it.
func (x *Xvnc) Start(name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY=:"+strconv.Itoa(x.Display))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	x.procs = append(x.procs, child{cmd, done})
	return cmd, nil
}

// Run runs an X client on the display to completion.
func (x *Xvnc) Run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY=:"+strconv.Itoa(x.Display))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}

// Viewable counts the windows of the X class (e.g. "XTerm") that are
// mapped and viewable: one that merely exists may not take input yet.
func (x *Xvnc) Viewable(class string) int {
	xwininfo := func(args ...string) string {
		cmd := exec.Command("xwininfo", args...)
		cmd.Env = append(os.Environ(), "DISPLAY=:"+strconv.Itoa(x.Display))
		out, _ := cmd.Output()
		return string(out)
	}
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^\s*(0x[0-9a-f]+) .*\("[^"]*" "`+regexp.QuoteMeta(class)+`"\)`).FindAllStringSubmatch(xwininfo("-root", "-tree"), -1) {
		if strings.Contains(xwininfo("-id", m[1]), "IsViewable") {
			n++
		}
	}
	return n
}

// Stop ends the X clients and the server.
func (x *Xvnc) Stop() error {
	stopChildren(x.procs)
	x.procs = nil
	if x.cmd == nil || x.cmd.Process == nil {
		if x.xvfb != nil {
			stopProcess(x.xvfb, x.xvfbDone)
		}
		return nil
	}
	stopProcess(x.cmd, x.done)
	if x.xvfb != nil {
		stopProcess(x.xvfb, x.xvfbDone)
	}
	return nil
}

// stopProcess ends a server with SIGTERM, or SIGKILL if it lingers.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	signalAndWait(cmd, done, syscall.SIGTERM, 5*time.Second)
}

// StartX11vnc starts Xvfb and x11vnc sharing its screen on loopback: a
// VNC server that is not TigerVNC (LibVNCServer's encoders), with VNC
// Authentication when opts.Password is set and its pixel cache when
// opts.NCache is. opts.Security is not used.
func StartX11vnc(ctx context.Context, dir string, opts XvncOptions) (*Xvnc, error) {
	for _, bin := range []string{"Xvfb", "x11vnc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install xvfb x11vnc", bin)
		}
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
	x := &Xvnc{Host: "127.0.0.1", Password: opts.Password, dir: dir}
	vncArgs := []string{"-localhost", "-forever", "-shared", "-noxdamage", "-quiet", "-nopw"}
	if opts.Password != "" {
		pwFile := filepath.Join(dir, "x11vnc.pass")
		if out, err := exec.Command("x11vnc", "-storepasswd", opts.Password, pwFile).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("x11vnc -storepasswd: %v: %s", err, out)
		}
		vncArgs = append(vncArgs[:len(vncArgs)-1], "-rfbauth", pwFile)
	}
	if opts.NCache > 0 {
		vncArgs = append(vncArgs, "-ncache", strconv.Itoa(opts.NCache))
	}
	for attempt := range 20 {
		display := 40 + int(time.Now().UnixNano()%400) + attempt
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", display)); err == nil {
			continue
		}
		x.Display = display
		// Each process gets its own buffer: they write concurrently.
		x.stderr = &lockedBuffer{}
		x.xvfb = exec.Command("Xvfb", ":"+strconv.Itoa(display), "-screen", "0", fmt.Sprintf("%dx%dx24", opts.Width, opts.Height), "-nolisten", "tcp")
		x.xvfb.Stderr = &bytes.Buffer{}
		var err error
		if x.xvfbDone, err = startChild(x.xvfb); err != nil {
			return nil, fmt.Errorf("start Xvfb: %w", err)
		}
		if err := waitX(ctx, display, x.xvfbDone); err != nil {
			stopProcess(x.xvfb, x.xvfbDone)
			x.xvfb = nil
			continue // the display was taken
		}
		port, err := freePort()
		if err != nil {
			x.Stop()
			return nil, err
		}
		x.Port = port
		x.cmd = exec.Command("x11vnc", append([]string{"-display", ":" + strconv.Itoa(display), "-rfbport", strconv.Itoa(port)}, vncArgs...)...)
		x.cmd.Stderr = x.stderr
		if x.done, err = startChild(x.cmd); err != nil {
			x.Stop()
			return nil, fmt.Errorf("start x11vnc: %w", err)
		}
		if err := waitListening(ctx, x.Addr(), x.done, 10*time.Second); err != nil {
			x.Stop()
			return nil, fmt.Errorf("x11vnc: %w: %s", err, strings.TrimSpace(x.stderr.String()))
		}
		return x, nil
	}
	return nil, errors.New("Xvfb did not start on any free display")
}

// waitX waits until the X server on display accepts clients.
func waitX(ctx context.Context, display int, exited <-chan struct{}) error {
	sock := fmt.Sprintf("/tmp/.X11-unix/X%d", display)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("the X server exited")
		case <-ctx.Done():
			return errors.New("the X server did not start")
		case <-tick.C:
		}
	}
}

// NewX11vnc starts x11vnc on Xvfb for a test and stops both when it ends.
func NewX11vnc(t testing.TB, opts XvncOptions) *Xvnc {
	t.Helper()
	x, err := StartX11vnc(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start x11vnc: %v", err)
	}
	t.Cleanup(func() { x.Stop() })
	return x
}

// NewXvnc starts Xvnc for a test and stops it when the test ends.
func NewXvnc(t testing.TB, opts XvncOptions) *Xvnc {
	t.Helper()
	x, err := StartXvnc(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start Xvnc: %v", err)
	}
	t.Cleanup(func() { x.Stop() })
	return x
}
