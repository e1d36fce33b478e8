package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
)

// demoInfo is what `portal demo` prints and writes to DATA/demo.json, so a
// newcomer (or the end-to-end tests) can sign in and connect at once.
type demoInfo struct {
	URL     string     `json:"url"`
	Admin   demoLogin  `json:"admin"`
	Auditor demoLogin  `json:"auditor"`
	User    demoLogin  `json:"user"`
	Targets demoTarget `json:"ssh_target"`
	VNC     demoTarget `json:"vnc_target"`
	RDP     demoTarget `json:"rdp_target"`
}

type demoLogin struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

type demoTarget struct {
	Resource string `json:"resource"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Login    string `json:"login"`
	Password string `json:"password"`
	// Display is the X display of a desktop target.
	Display int `json:"display,omitempty"`
}

// demo runs the portal with real demo targets on loopback: an OpenSSH sshd
// now, and a demo admin, a demo user, resources and grants. It never runs
// unless asked for, and keeps its own data directory.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("portal demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs, demoDataDir, demoListen)
	size := fs.String("desktop-size", "1024x768", "screen size of the demo's RDP desktop (WIDTHxHEIGHT; the VNC desktop follows the browser)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var width, height int
	if _, err := fmt.Sscanf(*size, "%dx%d", &width, &height); err != nil || width < 200 || height < 200 || width > 8192 || height > 8192 {
		fmt.Fprintf(stderr, "portal demo: --desktop-size %q: give WIDTHxHEIGHT, each from 200 to 8192\n", *size)
		return errUsage
	}
	if err := cfg.resolvePaths(); err != nil {
		return err
	}
	// The demo's sessions are throwaway: it stops at once unless a drain
	// timeout is asked for.
	drainSet := os.Getenv("KEYWAY_DRAIN_TIMEOUT") != ""
	fs.Visit(func(f *flag.Flag) { drainSet = drainSet || f.Name == "drain-timeout" })
	if !drainSet {
		cfg.DrainTimeout = "0"
	}
	// The targets outlive the first signal: sessions on them go on while
	// the portal drains. They stop when the portal has.
	targetsCtx, stopTargets := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTargets()
	sshd, err := targets.StartSSHD(targetsCtx, filepath.Join(cfg.DataDir, "targets", "sshd"), targets.SSHDOptions{})
	if err != nil {
		return fmt.Errorf("start demo sshd: %w", err)
	}
	defer sshd.Stop()
	xvnc, err := startDemoDesktop(targetsCtx, filepath.Join(cfg.DataDir, "targets", "xvnc"))
	if err != nil {
		return err
	}
	defer xvnc.Stop()
	rdp, err := startDemoRDP(targetsCtx, filepath.Join(cfg.DataDir, "targets", "rdp"), width, height)
	if err != nil {
		return err
	}
	defer rdp.Stop()

	return serveWith(ctx, cfg, stderr, func(ctx context.Context, p *portal) error {
		info, err := seedDemo(ctx, p.Store, sshd, xvnc, rdp)
		if err != nil {
			return fmt.Errorf("create demo data: %w", err)
		}
		info.URL = p.URL
		for _, a := range p.Addresses {
			if ap, err := netip.ParseAddrPort(a); err != nil || !ap.Addr().IsLoopback() {
				p.Logger.Warn("the demo is reachable from other machines, and anyone who reaches it can sign in with the passwords it prints; leave out --listen to keep it on this machine",
					"addresses", strings.Join(p.Addresses, " "))
				break
			}
		}
		b, _ := json.MarshalIndent(info, "", "  ")
		// Written whole, then renamed: whoever waits for the file must
		// never read half of it.
		tmp := filepath.Join(cfg.DataDir, "demo.json.tmp")
		if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
			return fmt.Errorf("write demo.json: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(cfg.DataDir, "demo.json")); err != nil {
			return fmt.Errorf("write demo.json: %w", err)
		}
		fmt.Fprintf(stdout, `
Keyway demo is running at %s
  (self-signed certificate: your browser will ask you to accept it;
  listening on %s)

  admin:   %-12s password %s
  auditor: %-12s password %s
  user:    %-12s password %s

Sign in as the user and click Connect (or Files) on %q for a terminal (or files) on the demo sshd
(%s:%d), on %q for a desktop with an xterm (Xvnc on %s:%d), or on %q for
an RDP desktop (freerdp-shadow-cli with NLA on %s:%d).
Sign in as the admin to manage users, resources, grants and gateways, and
as the auditor to search and replay the recorded sessions (Recordings).
Press Ctrl+C to stop.
`, info.URL, strings.Join(p.Addresses, " "), info.Admin.Name, info.Admin.Password, info.Auditor.Name, info.Auditor.Password, info.User.Name, info.User.Password,
			info.Targets.Resource, info.Targets.Host, info.Targets.Port, info.VNC.Resource, info.VNC.Host, info.VNC.Port,
			info.RDP.Resource, info.RDP.Host, info.RDP.Port)
		return nil
	})
}

// demoVNCPassword is the demo desktop's VNC password (VNC uses 8 characters).
const demoVNCPassword = "kwdemo12"

// startDemoDesktop starts Xvnc with a coloured background and an xterm.
func startDemoDesktop(ctx context.Context, dir string) (*targets.Xvnc, error) {
	x, err := targets.StartXvnc(ctx, dir, targets.XvncOptions{Password: demoVNCPassword})
	if err != nil {
		return nil, fmt.Errorf("start demo VNC desktop: %w", err)
	}
	if err := x.Run("xsetroot", "-solid", "#336699"); err != nil {
		x.Stop()
		return nil, fmt.Errorf("demo desktop background: %w", err)
	}
	// The shell runs as the unprivileged test user, never as the portal's
	// own user.
	if _, err := x.Start("xterm", "-geometry", "100x30+20+20", "-fa", "DejaVu Sans Mono", "-fs", "11",
		"-e", "runuser", "-u", targets.TestUser, "--", "bash", "-l"); err != nil {
		x.Stop()
		return nil, fmt.Errorf("demo desktop xterm: %w", err)
	}
	return x, nil
}

// startDemoRDP starts an RDP server (freerdp-shadow-cli with NLA) sharing
// an X display with a purple background and an xterm. Its sign-in
// password is new at every start.
func startDemoRDP(ctx context.Context, dir string, width, height int) (*targets.ShadowRDP, error) {
	s, err := targets.StartShadowRDP(ctx, dir, targets.ShadowOptions{User: "rdpdemo", Password: "rdp-" + rand.Text()[:12], Width: width, Height: height})
	if err != nil {
		return nil, fmt.Errorf("start demo RDP desktop: %w", err)
	}
	if _, err := s.Run("xsetroot", "-solid", "#553388"); err != nil {
		s.Stop()
		return nil, fmt.Errorf("demo RDP background: %w", err)
	}
	if _, err := s.Start("xterm", "-geometry", "100x30+20+20", "-fa", "DejaVu Sans Mono", "-fs", "11",
		"-e", "runuser", "-u", targets.TestUser, "--", "bash", "-l"); err != nil {
		s.Stop()
		return nil, fmt.Errorf("demo RDP xterm: %w", err)
	}
	return s, nil
}

// seedDemo creates or refreshes the demo accounts and resources. Passwords
// are new at every start and the resources follow the servers' ports.
func seedDemo(ctx context.Context, st *store.Store, sshd *targets.SSHD, xvnc *targets.Xvnc, rdp *targets.ShadowRDP) (demoInfo, error) {
	info := demoInfo{
		Admin:   demoLogin{Name: "demo-admin", Password: "admin-" + rand.Text()[:12]},
		Auditor: demoLogin{Name: "demo-auditor", Password: "auditor-" + rand.Text()[:12]},
		User:    demoLogin{Name: "demo-user", Password: "user-" + rand.Text()[:12]},
		Targets: demoTarget{Resource: "demo-ssh", Host: sshd.Host, Port: sshd.Port,
			Login: sshd.User, Password: sshd.Password},
		VNC: demoTarget{Resource: "demo-vnc", Host: xvnc.Host, Port: xvnc.Port, Password: demoVNCPassword, Display: xvnc.Display},
		RDP: demoTarget{Resource: "demo-rdp", Host: rdp.Host, Port: rdp.Port, Login: rdp.User, Password: rdp.Password, Display: rdp.Number},
	}
	var userID int64
	for _, l := range []struct {
		login demoLogin
		role  store.Role
		name  string
	}{{info.Admin, store.RoleAdmin, "Demo Admin"}, {info.Auditor, store.RoleAuditor, "Demo Auditor"}, {info.User, store.RoleUser, "Demo User"}} {
		hash, err := auth.HashPassword(l.login.Password)
		if err != nil {
			return info, err
		}
		u, err := st.UserByName(ctx, l.login.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			u, err = st.CreateUser(ctx, store.User{Name: l.login.Name, DisplayName: l.name, Role: l.role}, hash)
		case err == nil:
			err = st.SetPasswordHash(ctx, u.ID, hash)
		}
		if err != nil {
			return info, fmt.Errorf("demo user %s: %w", l.login.Name, err)
		}
		if l.role == store.RoleUser {
			userID = u.ID
		}
	}

	res, err := upsertDemoResource(ctx, st, store.Resource{
		Name: info.Targets.Resource, Description: "OpenSSH server started by portal demo on loopback",
		Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User, Tags: []string{"demo"},
	}, &store.Secrets{Password: sshd.Password}, userID, store.GrantBoth)
	if err != nil {
		return info, err
	}
	// The demo knows the sshd's host key, so it pins it up front.
	if err := st.ReplaceHostKey(ctx, res.ID, sshd.HostKey); err != nil {
		return info, fmt.Errorf("pin demo host key: %w", err)
	}
	if _, err := upsertDemoResource(ctx, st, store.Resource{
		Name: info.VNC.Resource, Description: "Xvnc desktop with an xterm, started by portal demo on loopback",
		Protocol: "vnc", Host: xvnc.Host, Port: xvnc.Port, Tags: []string{"demo"},
	}, &store.Secrets{Password: demoVNCPassword}, userID, store.GrantTerminal); err != nil {
		return info, err
	}
	if _, err := upsertDemoResource(ctx, st, store.Resource{
		Name: info.RDP.Resource, Description: "RDP desktop (freerdp-shadow-cli with NLA) with an xterm, started by portal demo on loopback",
		Protocol: "rdp", Host: rdp.Host, Port: rdp.Port, Login: rdp.User, Tags: []string{"demo"},
		Options: store.Options{Security: "nla"},
	}, &store.Secrets{Password: rdp.Password}, userID, store.GrantTerminal); err != nil {
		return info, err
	}
	return info, nil
}

// upsertDemoResource creates or updates a demo resource and grants it to
// the demo user for what mode allows.
func upsertDemoResource(ctx context.Context, st *store.Store, res store.Resource, secrets *store.Secrets, userID int64, mode store.GrantMode) (store.Resource, error) {
	existing, err := findResource(ctx, st, res.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		res, err = st.CreateResource(ctx, res, secrets)
	case err == nil:
		res.ID = existing.ID
		err = st.UpdateResource(ctx, res, secrets)
	}
	if err != nil {
		return res, fmt.Errorf("demo resource %s: %w", res.Name, err)
	}
	ok, err := st.CanUse(ctx, userID, res.ID)
	if err != nil {
		return res, err
	}
	if !ok {
		if _, err := st.CreateGrantMode(ctx, res.ID, "user", userID, mode); err != nil {
			return res, fmt.Errorf("demo grant: %w", err)
		}
	}
	return res, nil
}

func findResource(ctx context.Context, st *store.Store, name string) (store.Resource, error) {
	rs, err := st.ListResources(ctx)
	if err != nil {
		return store.Resource{}, err
	}
	for _, r := range rs {
		if r.Name == name {
			return r, nil
		}
	}
	return store.Resource{}, store.ErrNotFound
}
