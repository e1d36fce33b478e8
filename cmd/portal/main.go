// Command portal runs the Keyway access portal: the web UI, the JSON API and
// an embedded gateway, so one process on one machine is a complete system.
//
//	portal serve            run the portal
//	portal demo             run the portal with loopback demo targets
//	portal users add NAME   create a user (password from stdin)
//	portal audit verify     check the audit log's hash chain
//	portal backup --to FILE back up the database while the portal runs
//	portal restore --from FILE  restore a backup into a data directory
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	// Time zones for the audit filters, also on hosts without tzdata.
	_ "time/tzdata"

	"github.com/keyway-dev/keyway/gateway/logctx"
	"github.com/keyway-dev/keyway/gateway/shutdown"
)

func main() {
	// The first SIGTERM or SIGINT drains `portal serve`, the second ends
	// it at once; other commands stop at the first.
	ctx, stop := shutdown.Signals()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "portal:", err)
		}
		os.Exit(2)
	}
}

var errUsage = errors.New("usage")

// version is reported by the embedded gateway; set by the build.
var version = "dev"

const usage = `Usage:
  portal serve [flags]                 run the portal (portal serve -h for flags)
  portal demo [flags]                  run the portal with demo targets on loopback
  portal users add NAME --role ROLE --password-stdin [--data DIR]
                                       create a user; ROLE is admin, auditor or user
  portal audit verify [--data DIR]     check that no audit event was altered or removed
  portal backup --to FILE [--data DIR] back up the database (while the portal runs)
  portal restore --from FILE --data DIR [--force]
                                       restore a backup; the secrets key must be in place
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr, nil)
	case "demo":
		return demo(ctx, args[1:], stdout, stderr)
	case "users":
		if len(args) < 2 || args[1] != "add" {
			fmt.Fprint(stderr, usage)
			return errUsage
		}
		return usersAdd(ctx, args[2:], stdin, stdout, stderr)
	case "audit":
		if len(args) < 2 || args[1] != "verify" {
			fmt.Fprint(stderr, usage)
			return errUsage
		}
		return auditVerify(ctx, args[2:], stdout, stderr)
	case "backup":
		return backupCmd(ctx, args[1:], stdout, stderr)
	case "restore":
		return restoreCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
		return errUsage
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	// logctx adds the request and session ids a context carries.
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(logctx.Handler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(logctx.Handler(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("log format %q: use text or json", format)
}
