package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
)

// usersAdd creates a user from the command line, for scripts and for the
// first admin when nobody can open the setup link.
func usersAdd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("portal users add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs, serveDataDir, serveListen)
	role := fs.String("role", "user", "admin, auditor or user")
	display := fs.String("display-name", "", "display name")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input (required)")
	// Accept the name before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if name == "" {
		return errors.New("name the user: portal users add NAME --role ROLE --password-stdin")
	}
	// The same rule as the Users page and single sign-on: a name the
	// pages refuse must not be made here either.
	if err := store.ValidUserName(name); err != nil {
		return fmt.Errorf("user name %q: %w", name, err)
	}
	if !*fromStdin {
		return errors.New("pass --password-stdin and give the password on standard input, so it stays out of the process list and shell history")
	}
	r, err := store.ParseRole(*role)
	if err != nil {
		return fmt.Errorf("role %q: use admin, auditor or user", *role)
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if err := auth.ValidatePassword(password); err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	u, err := st.CreateUser(ctx, store.User{Name: name, DisplayName: *display, Role: r}, hash)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	logger, _ := newLogger(io.Discard, "info", "text")
	auditLog, err := newAuditLog(cfg, st, logger)
	if err != nil {
		return err
	}
	if err := auditLog.Record(ctx, audit.Event{
		Actor: "cli", Action: audit.ActionUserCreate, Target: u.Name, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"role": string(u.Role)},
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s user %s\n", u.Role, u.Name)
	return nil
}
