// Package app is the keyway command: argument parsing, sign-in, and the
// tunnel, proxy and ssh commands on top of package client.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/cmd/keyway/internal/client"
	"github.com/keyway-dev/keyway/cmd/keyway/internal/config"
)

// Env is what the command works with: the process's streams and
// environment in main, fakes in tests.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Version is the client's version.
	Version string
	// Dial makes TCP connections to the portal; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OpenBrowser opens a URL for the user; nil starts the system's
	// opener.
	OpenBrowser func(ctx context.Context, url string) error
	// WaitForPortal is how long a connection waits for the portal; 0 is
	// client.WaitForPortal (10 s).
	WaitForPortal time.Duration
	// Listening is called with the address keyway tunnel and keyway proxy
	// listen on, once they do; tests wait on it.
	Listening func(addr net.Addr)
}

// errSilent is an error already told to the user.
var errSilent = errors.New("already reported")

// exitError carries an exit status other than 1 (the remote status of
// keyway ssh).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

const usage = `keyway: native access through a Keyway portal

  keyway login URL [--ca FILE] [--no-browser]   sign this device in
  keyway logout                                  sign out and revoke this device
  keyway status                                  who you are and what you may reach
  keyway tunnel RESOURCE [--listen 127.0.0.1:PORT] [--stdio] [--http1] [--no-browser]
  keyway ssh RESOURCE [--http1] [--no-browser] [-- ssh arguments]
  keyway proxy --socks 127.0.0.1:1080 [--http1] [--no-browser]
  keyway version

--no-browser: do not open the page of an MFA check a resource asks for; only
print its address.

Environment: KEYWAY_URL (the portal), KEYWAY_TOKEN (an API token instead of a
device sign-in), KEYWAY_CA (a CA certificate file), KEYWAY_CONFIG_DIR.
`

// Run runs the command line args (without the program name) and returns
// the exit status.
func Run(ctx context.Context, env Env, args []string) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	a := &app{env: env, stderr: &lineWriter{w: env.Stderr}}
	err := a.run(ctx, args)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errSilent):
		return 1
	case errors.Is(err, flag.ErrHelp):
		return 2
	default:
		a.stderr.line("keyway: " + oneLine(err.Error()))
		return 1
	}
}

type app struct {
	env    Env
	stderr *lineWriter
	// noBrowser keeps the MFA check's page from opening (--no-browser);
	// stepUpOnce opens it at most once a run, however many streams a
	// forwarder sees refused.
	noBrowser  bool
	stepUpOnce sync.Once
}

func (a *app) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		io.WriteString(a.env.Stderr, usage)
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "login":
		return a.login(ctx, rest)
	case "logout":
		return a.logout(ctx, rest)
	case "status":
		return a.status(ctx, rest)
	case "tunnel":
		return a.tunnel(ctx, rest)
	case "ssh":
		return a.ssh(ctx, rest)
	case "proxy":
		return a.proxy(ctx, rest)
	case "version", "--version", "-version":
		fmt.Fprintf(a.env.Stdout, "keyway %s (%s/%s)\n", a.env.Version, runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "--help", "-help":
		io.WriteString(a.env.Stdout, usage)
		return nil
	default:
		io.WriteString(a.env.Stderr, usage)
		return fmt.Errorf("there is no command %q", cmd)
	}
}

// parse parses flags given before and after the positional arguments
// (keyway tunnel --stdio pg and keyway tunnel pg --stdio alike); what
// follows "--" is returned as after.
func parse(fs *flag.FlagSet, args []string) (pos, after []string, err error) {
	fs.SetOutput(io.Discard)
	for i, arg := range args {
		if arg == "--" {
			args, after = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, after, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (a *app) userAgent() string {
	return fmt.Sprintf("keyway/%s (%s/%s)", a.env.Version, runtime.GOOS, runtime.GOARCH)
}

// session is what a command needs to talk to the portal as someone.
type session struct {
	dir    string
	cfg    config.Config
	token  bool // KEYWAY_TOKEN is used
	client *client.Client
}

// maxCAFile bounds a CA file read.
const maxCAFile = 1 << 20

func tlsConfig(caFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return conf, nil
	}
	f, err := os.Open(caFile)
	if err != nil {
		return nil, fmt.Errorf("read the CA file: %w", err)
	}
	defer f.Close()
	pemBytes, err := io.ReadAll(io.LimitReader(f, maxCAFile))
	if err != nil {
		return nil, fmt.Errorf("read the CA file %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", caFile)
	}
	conf.RootCAs = pool
	return conf, nil
}

// signedIn opens a client with the device credential, or KEYWAY_TOKEN.
func (a *app) signedIn(http1 bool) (*session, error) {
	dir, err := config.Dir(a.env.Getenv)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, err
	}
	s := &session{dir: dir, cfg: cfg}
	if u := a.env.Getenv("KEYWAY_URL"); u != "" {
		s.cfg.URL = u
	}
	if ca := a.env.Getenv("KEYWAY_CA"); ca != "" {
		s.cfg.CA = ca
	}
	var auth client.Auth
	if tok := a.env.Getenv("KEYWAY_TOKEN"); tok != "" {
		s.token = true
		auth.Bearer = config.Credential(tok)
		if s.cfg.URL == "" {
			return nil, errors.New("KEYWAY_TOKEN is set but not KEYWAY_URL, the portal to use it with")
		}
	} else {
		if cfg.Credential == "" || s.cfg.URL == "" {
			return nil, errors.New("this device is not signed in; run: keyway login https://PORTAL")
		}
		if !cfg.ExpiresAt.IsZero() && time.Now().After(cfg.ExpiresAt) {
			return nil, a.expired(s)
		}
		key, err := config.Key(dir)
		if err != nil {
			return nil, fmt.Errorf("%w; run: keyway login %s", err, s.cfg.URL)
		}
		auth = client.Auth{Bearer: cfg.Credential, Key: key}
	}
	conf, err := tlsConfig(s.cfg.CA)
	if err != nil {
		return nil, err
	}
	s.client, err = client.New(client.Options{
		URL: s.cfg.URL, TLS: conf, Auth: auth, UserAgent: a.userAgent(), HTTP1: http1, Dial: a.env.Dial, Wait: a.env.WaitForPortal,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// expired is the error for a credential the portal no longer takes.
func (a *app) expired(s *session) error {
	if s.token {
		return errors.New("the portal does not take the API token in KEYWAY_TOKEN")
	}
	return fmt.Errorf("your sign-in has expired; run: keyway login %s", s.cfg.URL)
}

// explain turns an error from the portal into words for the user.
func (a *app) explain(s *session, err error) error {
	var ref *client.Refusal
	if errors.As(err, &ref) && ref.SignInExpired() {
		return a.expired(s)
	}
	return err
}

// lineWriter writes whole lines from many goroutines without mixing them.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, s+"\n")
}

// oneLine keeps a message on one line: a message from the portal must
// not forge more lines.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r < 0x20 && r != '\t' {
			return ' '
		}
		return r
	}, s)
}
