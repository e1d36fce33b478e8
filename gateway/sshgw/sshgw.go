// Package sshgw is the gateway's SSH engine: it dials a target, checks its
// host key against the pinned one, signs in with the injected credentials
// and runs a terminal session relayed as wire frames.
package sshgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	gwtarget "github.com/keyway-dev/keyway/gateway/target"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// Engine opens SSH sessions to targets.
type Engine struct {
	logger      *slog.Logger
	dialTimeout time.Duration
}

// New returns an Engine; dialTimeout bounds the TCP dial and the SSH
// handshake with sign-in.
func New(logger *slog.Logger, dialTimeout time.Duration) *Engine {
	return &Engine{logger: logger, dialTimeout: dialTimeout}
}

// Client is a signed-in SSH connection to a target.
type Client struct {
	*ssh.Client
	// HostKey is the key the target presented, in authorized_keys form.
	HostKey     string
	Fingerprint string
}

// Dial connects to the request's target and signs in. A failure comes back
// as a refusing Response with a sentence for the user, and the host key the
// target presented if it got that far.
func (e *Engine) Dial(ctx context.Context, req *wire.Request) (*Client, *wire.Response) {
	target := req.Target.String()
	ctx, cancel := context.WithTimeout(ctx, e.dialTimeout)
	defer cancel()
	conn, werr := gwtarget.Dial(ctx, req.Target, e.dialTimeout)
	if werr != nil {
		return nil, refusal(werr, nil)
	}
	// The handshake has no context of its own: the deadline bounds it.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	var seen ssh.PublicKey
	banner := &bannerConn{Conn: conn}
	cfg := &ssh.ClientConfig{
		User:              req.Credentials.Username,
		Auth:              authMethods(req.Credentials),
		Timeout:           e.dialTimeout,
		HostKeyAlgorithms: hostKeyAlgorithms(req.HostKey),
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			if req.HostKey == "" {
				return nil // first use: the portal pins what we report
			}
			pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.HostKey))
			if err != nil {
				return fmt.Errorf("pinned host key unreadable: %w", err)
			}
			if string(pinned.Marshal()) != string(key.Marshal()) {
				return errHostKeyMismatch{expected: ssh.FingerprintSHA256(pinned), got: ssh.FingerprintSHA256(key)}
			}
			return nil
		},
	}
	c, chans, reqs, err := ssh.NewClientConn(banner, target, cfg)
	if err != nil {
		conn.Close()
		return nil, refusal(handshakeError(target, req.Credentials.Username, banner.version(), err, ctx.Err() != nil, e.dialTimeout), seen)
	}
	conn.SetDeadline(time.Time{})
	return &Client{
		Client:      ssh.NewClient(c, chans, reqs),
		HostKey:     authorizedKey(seen),
		Fingerprint: ssh.FingerprintSHA256(seen),
	}, nil
}

// hostKeyAlgorithms is the host-key algorithms to offer, in OpenSSH's
// order: the pinned key's own algorithms first (so a server with several
// keys shows the pinned one), then Ed25519, ECDSA and RSA. The library's
// default puts RSA before Ed25519, and Dropbear 2022.83 advertises RSA even
// with no RSA key and then drops the connection when a client picks it.
func hostKeyAlgorithms(pinned string) []string {
	ed25519 := []string{ssh.CertAlgoED25519v01, ssh.KeyAlgoED25519}
	ecdsa := []string{
		ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	}
	// ssh-rsa (SHA-1) stays last, as the library's default has it, so old
	// servers that know nothing newer still connect.
	rsa := []string{
		ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01,
		ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA,
	}
	groups := [][]string{ed25519, ecdsa, rsa}
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned)); err == nil {
		var first []string
		switch k.Type() {
		case ssh.KeyAlgoED25519:
			first = []string{ssh.KeyAlgoED25519}
		case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
			first = []string{k.Type()}
		case ssh.KeyAlgoRSA:
			first = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		groups = append([][]string{first}, groups...)
	}
	var algos []string
	for _, g := range groups {
		for _, a := range g {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// maxBanner bounds how much of the server's first line is kept for an
// error message.
const maxBanner = 64

// bannerConn keeps the start of what the server sent, so that a handshake
// that fails can say whether an SSH server was there at all.
type bannerConn struct {
	net.Conn
	full atomic.Bool // head is complete: later reads skip the lock
	mu   sync.Mutex
	head []byte
}

func (c *bannerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.full.Load() {
		c.mu.Lock()
		c.head = append(c.head, p[:min(n, maxBanner-len(c.head))]...)
		c.full.Store(len(c.head) == maxBanner)
		c.mu.Unlock()
	}
	return n, err
}

// version is the server's SSH identification ("SSH-2.0-dropbear_2022.83"),
// or "" if it sent none.
func (c *bannerConn) version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	line, _, _ := strings.Cut(string(c.head), "\n")
	line = strings.TrimRight(line, "\r")
	if !strings.HasPrefix(line, "SSH-") {
		return ""
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, line)
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// refusal is the Response for a failed dial; it names the host key seen so
// the portal can offer a changed key to an admin.
func refusal(err *wire.Error, seen ssh.PublicKey) *wire.Response {
	r := &wire.Response{Code: err.Code, Message: err.Message}
	if seen != nil {
		r.HostKey, r.HostKeyFingerprint = authorizedKey(seen), ssh.FingerprintSHA256(seen)
	}
	return r
}

type errHostKeyMismatch struct {
	expected, got string
}

func (e errHostKeyMismatch) Error() string {
	return "host key mismatch: expected " + e.expected + ", got " + e.got
}

func authMethods(c wire.Credentials) []ssh.AuthMethod {
	var m []ssh.AuthMethod
	if c.PrivateKey != "" {
		if signer, err := ssh.ParsePrivateKey([]byte(c.PrivateKey)); err == nil {
			m = append(m, ssh.PublicKeys(signer))
		}
	}
	if c.Password != "" {
		pw := string(c.Password)
		m = append(m, ssh.Password(pw))
		// Many servers only offer keyboard-interactive for passwords (PAM).
		m = append(m, ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range questions {
				answers[i] = pw
			}
			return answers, nil
		}))
	}
	return m
}

func handshakeError(target, user, version string, err error, timedOut bool, timeout time.Duration) *wire.Error {
	var m errHostKeyMismatch
	// A server that exits mid-handshake (as Dropbear does on an assertion)
	// may leave our data unread, which resets the connection, or close it
	// while we write.
	closed := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	switch {
	case errors.As(err, &m):
		return wire.Errorf(wire.CodeHostKeyMismatch,
			"the host key of %s has changed: expected %s, got %s. This can mean the server was reinstalled, or that someone is intercepting the connection; an administrator must check and accept the new key on the resource's page", target, m.expected, m.got)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return wire.Errorf(wire.CodeAuthFailed, "the target %s rejected the login for user %q: wrong password or key", target, user)
	case timedOut:
		return wire.Errorf(wire.CodeTimeout, "target %s did not complete the SSH handshake within %s", target, timeout)
	case closed && version != "":
		return wire.Errorf(wire.CodeUnreachable, "the SSH server %s (%s) closed the connection during the handshake; its log says why", target, version)
	case closed:
		return wire.Errorf(wire.CodeUnreachable, "target %s closed the connection without identifying itself as an SSH server", target)
	}
	return wire.Errorf(wire.CodeUnreachable, "SSH handshake with %s failed: %v", target, err)
}

// Terminal is a shell with a pty on a target.
type Terminal struct {
	client  *Client
	session *ssh.Session
	stdin   io.WriteCloser
	stdout  io.Reader
	stderr  io.Reader
}

// OpenTerminal dials the target and starts a login shell in a pty. The
// Response is what the gateway answers the portal: ok with the host key, or
// the refusal.
func (e *Engine) OpenTerminal(ctx context.Context, req *wire.Request) (*Terminal, *wire.Response) {
	if req.Terminal == nil {
		return nil, refusal(wire.Errorf(wire.CodeBadRequest, "a terminal session needs a terminal size"), nil)
	}
	c, resp := e.Dial(ctx, req)
	if resp != nil {
		return nil, resp
	}
	t, err := startShell(c, req.Terminal)
	if err != nil {
		c.Close()
		return nil, &wire.Response{Code: wire.CodeInternal, Message: fmt.Sprintf("the target %s accepted the login but did not start a shell: %v", req.Target, err),
			HostKey: c.HostKey, HostKeyFingerprint: c.Fingerprint}
	}
	return t, &wire.Response{OK: true, HostKey: c.HostKey, HostKeyFingerprint: c.Fingerprint}
}

func startShell(c *Client, term *wire.Terminal) (*Terminal, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	tt := term.Term
	if tt == "" {
		tt = "xterm-256color"
	}
	// Like OpenSSH's client (SendEnv LANG), ask for a UTF-8 locale so the
	// remote shell reads and shows what the browser sends; servers that do
	// not accept the variable simply ignore the request.
	s.Setenv("LANG", "C.UTF-8")
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400, ssh.IUTF8: 1}
	if err := s.RequestPty(tt, term.Rows, term.Cols, modes); err != nil {
		s.Close()
		return nil, fmt.Errorf("request pty: %w", err)
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	// Reading the channel directly (no pipe in between) saves a copy and a
	// goroutine hand-off per chunk; with a pty the server merges stderr into
	// it, and anything still sent apart is drained in Relay.
	stdout, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	stderr, err := s.StderrPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Shell(); err != nil {
		s.Close()
		return nil, fmt.Errorf("start shell: %w", err)
	}
	return &Terminal{client: c, session: s, stdin: stdin, stdout: stdout, stderr: stderr}, nil
}

// HostKey returns the target's host key in authorized_keys form.
func (t *Terminal) HostKey() string { return t.client.HostKey }

// Fingerprint returns the SHA256 fingerprint of the target's host key.
func (t *Terminal) Fingerprint() string { return t.client.Fingerprint }

// Close ends the session and the connection.
func (t *Terminal) Close() error {
	t.session.Close()
	return t.client.Close()
}

// Recorder sees a terminal session's traffic as it is relayed: what the
// terminal printed, what the user typed and each new size. An error from it
// ends the session with the error as its reason: it is only returned for a
// session that must not go on unrecorded.
type Recorder interface {
	Output(p []byte) error
	Input(p []byte) error
	Resize(cols, rows int) error
}

// Relay copies between the portal's stream and the shell until the shell
// exits (a FrameExit is sent) or the stream ends. It closes the terminal.
// rec, if not nil, records the session; output is recorded before it is
// sent, so a recording holds everything the user saw.
func (t *Terminal) Relay(stream io.ReadWriter, rec Recorder) wire.Exit {
	var wg sync.WaitGroup
	defer wg.Wait()
	var writeMu sync.Mutex
	fw := wire.NewFrameWriter(stream)
	var recErr error // the first recording failure; under writeMu
	write := func(ft wire.FrameType, p []byte) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		if recErr != nil {
			return recErr
		}
		if rec != nil && ft == wire.FrameData {
			if err := rec.Output(p); err != nil {
				recErr = err
				return err
			}
		}
		return fw.Write(ft, p)
	}
	// recordFailed ends the session because it could no longer be recorded.
	recordFailed := func(err error) {
		writeMu.Lock()
		defer writeMu.Unlock()
		if recErr == nil {
			recErr = err
		}
	}

	wg.Add(2)
	go func() { // portal → shell; ends when the stream or the terminal closes
		defer wg.Done()
		fr := wire.NewFrameReader(stream)
		for {
			ft, p, err := fr.Next()
			if err != nil {
				t.Close() // the portal left: end the remote session
				return
			}
			switch ft {
			case wire.FrameData:
				if rec != nil {
					if err := rec.Input(p); err != nil {
						recordFailed(err)
						t.Close()
						return
					}
				}
				if _, err := t.stdin.Write(p); err != nil {
					return
				}
			case wire.FrameResize:
				if cols, rows, err := wire.ParseResize(p); err == nil {
					if rec != nil {
						if err := rec.Resize(int(cols), int(rows)); err != nil {
							recordFailed(err)
							t.Close()
							return
						}
					}
					t.session.WindowChange(int(rows), int(cols))
				}
			}
		}
	}()
	go func() { // stderr sent apart from the pty, rare; ends with the session
		defer wg.Done()
		buf := make([]byte, 4<<10)
		for {
			n, err := t.stderr.Read(buf)
			if n > 0 && write(wire.FrameData, buf[:n]) != nil {
				return
			}
			if err != nil {
				return
			}
		}
	}()

	buf := make([]byte, 32<<10)
	var ex wire.Exit
	portalGone := false
	for {
		n, err := t.stdout.Read(buf)
		if n > 0 {
			if werr := write(wire.FrameData, buf[:n]); werr != nil {
				ex, portalGone = wire.Exit{Status: -1, Message: "the portal connection closed"}, true
				break
			}
		}
		if err != nil {
			ex = exitOf(t.session.Wait())
			break
		}
	}
	writeMu.Lock()
	if recErr != nil {
		ex, portalGone = wire.Exit{Status: -1, Message: "the session could not be recorded any more, and this resource requires recording: " + recErr.Error()}, false
	}
	if !portalGone {
		fw.Write(wire.FrameExit, ex.Payload())
	}
	writeMu.Unlock()
	// Unblock both goroutines before waiting for them: closing the stream
	// ends the portal reader, closing the session ends the stderr reader.
	if c, ok := stream.(io.Closer); ok {
		c.Close()
	}
	t.Close()
	return ex
}

// exitOf describes how a session ended from its Wait error.
func exitOf(err error) wire.Exit {
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return wire.Exit{Status: 0}
	case errors.As(err, &exit):
		if exit.Signal() != "" {
			return wire.Exit{Status: exit.ExitStatus(), Signal: exit.Signal()}
		}
		return wire.Exit{Status: exit.ExitStatus()}
	case errors.As(err, &missing):
		return wire.Exit{Status: -1, Message: "the target closed the session without an exit status"}
	}
	return wire.Exit{Status: -1, Message: "the connection to the target was lost: " + err.Error()}
}
