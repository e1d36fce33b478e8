package app

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyway-dev/keyway/cmd/keyway/internal/client"
	"github.com/keyway-dev/keyway/cmd/keyway/internal/config"
)

// Bounds on what the portal asks of a sign-in.
const (
	maxHostName     = 64
	minPollInterval = 100 * time.Millisecond
	maxPollInterval = time.Minute
	maxLoginWait    = 30 * time.Minute
	slowDownStep    = 5 * time.Second
	browserTimeout  = 10 * time.Second
)

type loginStart struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	Interval                int    `json:"interval"`
	ExpiresIn               int    `json:"expires_in"`
}

type loginToken struct {
	Credential string    `json:"credential"`
	ExpiresAt  time.Time `json:"expires_at"`
	User       string    `json:"user"`
	Device     struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"device"`
}

// tokenMessage is what the device signs to collect its credential.
func tokenMessage(deviceCode string) []byte {
	return []byte("keyway-device-token\n" + deviceCode)
}

func (a *app) login(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	ca := fs.String("ca", "", "a CA certificate file for the portal's certificate")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser; only print the address and code")
	http1 := fs.Bool("http1", false, "use HTTP/1.1")
	pos, _, err := parse(fs, args)
	if err != nil {
		return err
	}
	dir, err := config.Dir(a.env.Getenv)
	if err != nil {
		return err
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	portal := a.env.Getenv("KEYWAY_URL")
	switch {
	case len(pos) == 1:
		portal = pos[0]
	case len(pos) > 1:
		return errors.New("usage: keyway login URL [--ca FILE] [--no-browser]")
	case portal == "":
		portal = cfg.URL
	}
	if portal == "" {
		return errors.New("usage: keyway login URL [--ca FILE] [--no-browser]")
	}
	portal = strings.TrimRight(portal, "/")
	caFile := *ca
	if caFile == "" {
		caFile = a.env.Getenv("KEYWAY_CA")
	}
	if caFile == "" && portal == cfg.URL {
		caFile = cfg.CA
	}
	conf, err := tlsConfig(caFile)
	if err != nil {
		return err
	}
	c, err := client.New(client.Options{URL: portal, TLS: conf, UserAgent: a.userAgent(), HTTP1: *http1, Dial: a.env.Dial})
	if err != nil {
		return err
	}
	defer c.Close()
	key, err := config.NewKey()
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	if len(host) > maxHostName {
		host = host[:maxHostName]
	}
	var start loginStart
	err = c.Do(ctx, http.MethodPost, "/api/v1/client/login", map[string]string{
		"public_key": base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		"name":       host,
		"os":         runtime.GOOS,
		"arch":       runtime.GOARCH,
		"version":    a.env.Version,
	}, &start)
	if err != nil {
		return fmt.Errorf("start signing in at %s: %w", portal, err)
	}
	if start.DeviceCode == "" || start.UserCode == "" || start.VerificationURI == "" {
		return fmt.Errorf("the portal at %s did not answer like a Keyway portal", portal)
	}
	fmt.Fprintf(a.env.Stdout, "Open %s and enter code %s\n", oneLine(start.VerificationURI), oneLine(start.UserCode))
	open := start.VerificationURIComplete
	if open == "" {
		open = start.VerificationURI
	}
	if !*noBrowser && a.hasDisplay() {
		if err := a.openBrowser(ctx, open); err != nil {
			a.stderr.line("keyway: could not open a browser (" + oneLine(err.Error()) + "); open the address above yourself")
		}
	}
	interval := boundDuration(time.Duration(start.Interval)*time.Second, minPollInterval, maxPollInterval)
	wait := boundDuration(time.Duration(start.ExpiresIn)*time.Second, time.Minute, maxLoginWait)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	sig := base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, tokenMessage(start.DeviceCode)))
	for {
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-deadline.C:
			t.Stop()
			return errors.New("the code expired before the device was approved; run keyway login again")
		case <-t.C:
		}
		var tok loginToken
		err := c.Do(ctx, http.MethodPost, "/api/v1/client/token", map[string]string{
			"device_code": start.DeviceCode, "signature": sig,
		}, &tok)
		var ref *client.Refusal
		if errors.As(err, &ref) {
			switch ref.Code {
			case "authorization_pending":
				continue
			case "slow_down":
				interval = min(interval+slowDownStep, maxPollInterval)
				continue
			case "access_denied":
				return errors.New("the sign-in was denied in the portal")
			case "expired_token":
				return errors.New("the code expired before the device was approved; run keyway login again")
			}
			return fmt.Errorf("sign in: %w", err)
		}
		if err != nil {
			// The portal may be restarting; the code stays good.
			a.stderr.line("keyway: " + oneLine(err.Error()) + "; trying again")
			continue
		}
		if !strings.HasPrefix(tok.Credential, "kwd_") {
			return errors.New("the portal answered without a device credential")
		}
		old := cfg
		oldKey, _ := config.Key(dir)
		if err := config.SaveKey(dir, key); err != nil {
			return err
		}
		cfg = config.Config{
			URL: portal, CA: caFile, DeviceID: tok.Device.ID, DeviceName: tok.Device.Name,
			Credential: config.Credential(tok.Credential), ExpiresAt: tok.ExpiresAt,
		}
		if err := config.Save(dir, cfg); err != nil {
			return err
		}
		// The device this one replaces is revoked, so the portal does not
		// list it until its sign-in expires; best effort.
		a.revokePrevious(ctx, old, oldKey, portal, conf, *http1)
		fmt.Fprintf(a.env.Stdout, "Signed in to %s as %s on device %q until %s.\n",
			portal, oneLine(tok.User), oneLine(tok.Device.Name), tok.ExpiresAt.Local().Format("2006-01-02 15:04 MST"))
		return nil
	}
}

// revokePrevious signs out the device the configuration held, when it was
// signed in to the same portal and still is.
func (a *app) revokePrevious(ctx context.Context, old config.Config, key ed25519.PrivateKey, portal string, conf *tls.Config, http1 bool) {
	if old.Credential == "" || key == nil || old.URL != portal || (!old.ExpiresAt.IsZero() && time.Now().After(old.ExpiresAt)) {
		return
	}
	c, err := client.New(client.Options{URL: portal, TLS: conf, UserAgent: a.userAgent(), HTTP1: http1, Dial: a.env.Dial,
		Auth: client.Auth{Bearer: old.Credential, Key: key}})
	if err != nil {
		return
	}
	defer c.Close()
	if err := c.Do(ctx, http.MethodPost, "/api/v1/client/logout", nil, nil); err == nil {
		fmt.Fprintf(a.env.Stdout, "Signed out the device this one replaces (%s).\n", oneLine(old.DeviceName))
	}
}

func boundDuration(d, lo, hi time.Duration) time.Duration {
	return min(max(d, lo), hi)
}

// hasDisplay reports whether a browser could show: on Linux and the BSDs
// only under X11 or Wayland.
func (a *app) hasDisplay() bool {
	switch runtime.GOOS {
	case "darwin", "windows":
		return true
	}
	return a.env.Getenv("DISPLAY") != "" || a.env.Getenv("WAYLAND_DISPLAY") != ""
}

func (a *app) openBrowser(ctx context.Context, url string) error {
	if a.env.OpenBrowser != nil {
		return a.env.OpenBrowser(ctx, url)
	}
	ctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.CommandContext(ctx, "open", url)
	case "windows":
		cmd = exec.CommandContext(ctx, "rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.CommandContext(ctx, "xdg-open", url)
	}
	return cmd.Run()
}

func (a *app) logout(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("logout", flag.ContinueOnError)
	pos, _, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errors.New("usage: keyway logout")
	}
	s, err := a.signedIn(false)
	if err != nil {
		return err
	}
	defer s.client.Close()
	if s.token {
		return errors.New("keyway logout signs a device out; an API token in KEYWAY_TOKEN is revoked in the portal's Account page")
	}
	err = s.client.Do(ctx, http.MethodPost, "/api/v1/client/logout", nil, nil)
	var ref *client.Refusal
	if err != nil && !(errors.As(err, &ref) && ref.SignInExpired()) {
		return fmt.Errorf("sign out at %s: %w", s.cfg.URL, err)
	}
	cfg := config.Config{URL: s.cfg.URL, CA: s.cfg.CA}
	if err := config.Save(s.dir, cfg); err != nil {
		return err
	}
	if err := config.RemoveKey(s.dir); err != nil {
		return err
	}
	fmt.Fprintf(a.env.Stdout, "Signed out of %s; this device's credential is revoked.\n", s.cfg.URL)
	return nil
}

// Status is the portal's GET /api/v1/client/status.
type Status struct {
	User   string `json:"user"`
	Device *struct {
		ID        int64     `json:"id"`
		Name      string    `json:"name"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"device"`
	Resources []StatusResource `json:"resources"`
	Networks  []StatusNetwork  `json:"networks"`
	Limits    struct {
		StreamsPerDevice int `json:"streams_per_device"`
		StreamsPerUser   int `json:"streams_per_user"`
	} `json:"limits"`
}

// StatusResource is a resource in Status.
type StatusResource struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Tunnel   bool   `json:"tunnel"`
	Terminal bool   `json:"terminal"`
}

// StatusNetwork is a network resource in Status.
type StatusNetwork struct {
	Name    string `json:"name"`
	Segment string `json:"segment"`
	Rules   string `json:"rules"`
}

func (r StatusResource) target() string {
	if r.Host == "" {
		return r.Name
	}
	return fmt.Sprintf("%s:%d", r.Host, r.Port)
}

func (a *app) fetchStatus(ctx context.Context, s *session) (*Status, error) {
	var st Status
	if err := s.client.Do(ctx, http.MethodGet, "/api/v1/client/status", nil, &st); err != nil {
		return nil, a.explain(s, err)
	}
	return &st, nil
}

func (a *app) status(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	pos, _, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errors.New("usage: keyway status")
	}
	s, err := a.signedIn(false)
	if err != nil {
		return err
	}
	defer s.client.Close()
	st, err := a.fetchStatus(ctx, s)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Portal:\t%s\n", s.cfg.URL)
	fmt.Fprintf(w, "User:\t%s\n", oneLine(st.User))
	if st.Device != nil {
		fmt.Fprintf(w, "Device:\t%s (id %d)\n", oneLine(st.Device.Name), st.Device.ID)
		// The sign-in's own expiry stands in when the portal leaves it out.
		expires := st.Device.ExpiresAt
		if expires.IsZero() {
			expires = s.cfg.ExpiresAt
		}
		if !expires.IsZero() {
			fmt.Fprintf(w, "Sign-in expires:\t%s\n", expires.Local().Format("2006-01-02 15:04 MST"))
		}
	} else {
		fmt.Fprintf(w, "Device:\tnone (API token)\n")
	}
	fmt.Fprintf(w, "Limits:\t%d streams at once from this device, %d in all\n", st.Limits.StreamsPerDevice, st.Limits.StreamsPerUser)
	w.Flush()
	fmt.Fprintln(a.env.Stdout)
	if len(st.Resources) == 0 {
		fmt.Fprintln(a.env.Stdout, "Resources: none granted for native clients.")
	} else {
		fmt.Fprintln(a.env.Stdout, "Resources:")
		w = tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  NAME\tPROTOCOL\tTARGET\tYOU MAY")
		for _, r := range st.Resources {
			var may []string
			if r.Terminal {
				may = append(may, "keyway ssh (recorded terminal)")
			}
			if r.Tunnel {
				may = append(may, "keyway tunnel")
			}
			if len(may) == 0 {
				may = append(may, "nothing from this client")
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", oneLine(r.Name), oneLine(r.Protocol), oneLine(r.target()), strings.Join(may, ", "))
		}
		w.Flush()
	}
	fmt.Fprintln(a.env.Stdout)
	if len(st.Networks) == 0 {
		fmt.Fprintln(a.env.Stdout, "Networks: none granted (keyway proxy reaches nothing).")
		return nil
	}
	fmt.Fprintln(a.env.Stdout, "Networks (through keyway proxy --socks):")
	w = tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  NAME\tSEGMENT\tRULES")
	for _, n := range st.Networks {
		rules := strings.Split(strings.TrimSpace(n.Rules), "\n")
		for i, r := range rules {
			if i == 0 {
				fmt.Fprintf(w, "  %s\t%s\t%s\n", oneLine(n.Name), oneLine(n.Segment), oneLine(r))
			} else {
				fmt.Fprintf(w, "  \t\t%s\n", oneLine(r))
			}
		}
	}
	return w.Flush()
}
